// Package bench measures the webhook end to end: AdmissionReviews over HTTPS on loopback,
// against pullpass's mutator and, as the baseline in the same run, a no-op kubewebhook mutator
// served the same way. Run: go run ./webhook/bench/cmd/webhookbench (see docs/benchmarks.md).
package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhmutating "github.com/slok/kubewebhook/v2/pkg/webhook/mutating"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/registrytable"
	"github.com/pullpass/pullpass/webhook/app"
	"github.com/pullpass/pullpass/webhook/cluster"
	"github.com/pullpass/pullpass/webhook/inject"
)

// Config sets the load.
type Config struct {
	Registries  int           // size of the registry table (default 1000)
	Containers  int           // containers per pod (default 10)
	Concurrency int           // clients sending at once (default 8)
	Round       time.Duration // length of one measured round (default 5s)
	Rounds      int           // rounds per server, interleaved (default 6)
	// PullThrough adds a pull-through cache of Docker Hub to the table, and makes the pod's
	// unserved half Docker Hub images, which the review then rewrites to the cache.
	PullThrough bool
}

// Result is one server's figures over all its rounds, and each round's.
type Result struct {
	Name          string
	Requests      int
	P50, P99      time.Duration
	ReviewsPerSec float64
	Rounds        []Round
}

// Round is one round's figures.
type Round struct {
	P50, P99      time.Duration
	ReviewsPerSec float64
}

const namespace = "bench"

func (cfg *Config) defaults() {
	if cfg.Registries == 0 {
		cfg.Registries = 1000
	}
	if cfg.Containers == 0 {
		cfg.Containers = 10
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	if cfg.Round == 0 {
		cfg.Round = 5 * time.Second
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 6
	}
}

// Run measures both servers and returns pullpass's result and the baseline's.
func Run(ctx context.Context, cfg Config) (Result, Result, error) {
	cfg.defaults()
	cert, pool, err := selfSigned()
	if err != nil {
		return Result{}, Result{}, err
	}
	mutator, err := pullpassMutator(cfg.Registries, cfg.PullThrough)
	if err != nil {
		return Result{}, Result{}, err
	}
	noop := kwhmutating.MutatorFunc(func(context.Context, *model.AdmissionReview, metav1.Object) (*kwhmutating.MutatorResult, error) {
		return &kwhmutating.MutatorResult{}, nil
	})
	servers := map[string]string{}
	pullpassHandler, err := app.NewHandler(mutator, prometheus.NewRegistry(), nil)
	if err != nil {
		return Result{}, Result{}, err
	}
	noopHandler, err := app.NewMutatorHandler(noop, prometheus.NewRegistry())
	if err != nil {
		return Result{}, Result{}, err
	}
	for name, h := range map[string]http.Handler{"pullpass": pullpassHandler, "no-op": noopHandler} {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return Result{}, Result{}, err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() { _ = srv.Close() }()
		servers[name] = "https://" + ln.Addr().String() + "/mutate"
	}
	body, err := review(cfg.Containers, cfg.PullThrough)
	if err != nil {
		return Result{}, Result{}, err
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConnsPerHost: cfg.Concurrency,
		ForceAttemptHTTP2:   true,
	}}
	// Check both answer correctly before measuring.
	for name, url := range servers {
		if err := checkAnswer(client, url, body, name == "pullpass", cfg.PullThrough && name == "pullpass"); err != nil {
			return Result{}, Result{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	lat := map[string][]time.Duration{}
	elapsed := map[string]time.Duration{}
	rounds := map[string][]Round{}
	for r := 0; r < cfg.Rounds; r++ {
		for _, name := range []string{"no-op", "pullpass"} {
			l, d, err := round(ctx, client, servers[name], body, cfg.Concurrency, cfg.Round)
			if err != nil {
				return Result{}, Result{}, err
			}
			slices.Sort(l)
			rounds[name] = append(rounds[name], Round{P50: l[len(l)/2], P99: l[len(l)*99/100], ReviewsPerSec: float64(len(l)) / d.Seconds()})
			lat[name] = append(lat[name], l...)
			elapsed[name] += d
		}
	}
	res := func(name string) Result {
		l := lat[name]
		slices.Sort(l)
		return Result{Name: name, Requests: len(l), P50: l[len(l)/2], P99: l[len(l)*99/100], ReviewsPerSec: float64(len(l)) / elapsed[name].Seconds(), Rounds: rounds[name]}
	}
	return res("pullpass"), res("no-op"), nil
}

// Ratios are pullpass's figures over the baseline's: over all rounds, and the lowest and
// highest of the rounds' own ratios.
type Ratios struct {
	P50, P99, Throughput [3]float64 // all, low, high
}

// Compare returns pullpass's figures over the baseline's.
func Compare(pp, base Result) Ratios {
	var r Ratios
	r.P50[0], r.P99[0] = float64(pp.P50)/float64(base.P50), float64(pp.P99)/float64(base.P99)
	r.Throughput[0] = pp.ReviewsPerSec / base.ReviewsPerSec
	for _, x := range []*[3]float64{&r.P50, &r.P99, &r.Throughput} {
		x[1], x[2] = 1e9, 0
	}
	for i := range pp.Rounds {
		a, b := pp.Rounds[i], base.Rounds[i]
		for x, v := range map[*[3]float64]float64{&r.P50: float64(a.P50) / float64(b.P50), &r.P99: float64(a.P99) / float64(b.P99), &r.Throughput: a.ReviewsPerSec / b.ReviewsPerSec} {
			x[1], x[2] = min(x[1], v), max(x[2], v)
		}
	}
	return r
}

func round(ctx context.Context, c *http.Client, url string, body []byte, workers int, d time.Duration) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := c.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					break
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, time.Since(start), firstErr
}

func checkAnswer(c *http.Client, url string, body []byte, wantPatch, wantRewrites bool) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return err
	}
	if out.Response == nil || !out.Response.Allowed {
		return fmt.Errorf("review not allowed: %+v", out.Response)
	}
	// kubewebhook may patch cosmetic fields for either; only pullpass adds pull secrets.
	if adds := bytes.Contains(out.Response.Patch, []byte("imagePullSecrets")); adds != wantPatch {
		return fmt.Errorf("patch adds pull secrets=%t, want %t: %s", adds, wantPatch, out.Response.Patch)
	}
	if rewrites := bytes.Count(out.Response.Patch, []byte(cacheHost+"/docker-hub/library/tool-")); wantRewrites && rewrites == 0 || !wantRewrites && rewrites > 0 {
		return fmt.Errorf("patch rewrites %d images, want them rewritten=%t: %s", rewrites, wantRewrites, out.Response.Patch)
	}
	return nil
}

// cacheHost holds the benchmark's pull-through cache of Docker Hub, under docker-hub.
const cacheHost = "cache.example.com"

// pullpassMutator is the real mutator over real listers, filled as informers would fill them:
// the pull secrets are already in the namespace and fresh (the steady state).
func pullpassMutator(n int, pullThrough bool) (*inject.Mutator, error) {
	var regs []*v1alpha1.Registry
	srcIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	managedIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	creds := userpass.Credentials{Username: "bench", Password: "bench-password"}
	for i := 0; i < n; i++ {
		r := &v1alpha1.Registry{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("reg-%04d", i), ResourceVersion: "1"},
			Spec: v1alpha1.RegistrySpec{
				Hosts: []string{fmt.Sprintf("registry-%d.example.com", i)},
				Auth:  v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: fmt.Sprintf("src-%d", i), Namespace: "pullpass"}},
			},
		}
		if pullThrough && i == n-1 {
			// The last registry is the cache instead.
			r.Name = "hub-cache"
			r.Spec.Hosts = []string{cacheHost}
			r.Spec.PullThrough = &v1alpha1.PullThrough{Upstream: "docker.io", Prefix: "docker-hub"}
		}
		regs = append(regs, r)
		data, err := dockerconfig.ForHost(r.Spec.Hosts[0], creds.Username, creds.Password).Marshal()
		if err != nil {
			return nil, err
		}
		_ = srcIdx.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: r.Spec.Auth.SecretRef.Name, Namespace: "pullpass", ResourceVersion: "1"}, Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}})
		ps, err := pullsecret.Build(namespace, r, creds)
		if err != nil {
			return nil, err
		}
		_ = managedIdx.Add(ps)
	}
	nsIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = nsIdx.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Annotations: map[string]string{inject.Annotation: inject.Enabled}}})
	client := fake.NewClientset() // never reached: nothing is missing or stale
	return inject.New(inject.Config{
		Namespaces: &cluster.Namespaces{Lister: corelisters.NewNamespaceLister(nsIdx), Client: client},
		Registries: staticTable{registrytable.Build(regs)},
		Secrets: &pullsecret.Ensurer{
			Managed: corelisters.NewSecretLister(managedIdx), Sources: pullsecret.SourceListers{"pullpass": corelisters.NewSecretLister(srcIdx)},
			Client: client, Log: slog.New(slog.DiscardHandler),
		},
	})
}

type staticTable struct{ t *registrytable.Table }

func (s staticTable) Table() *registrytable.Table { return s.t }

// review is an AdmissionReview for a pod of n containers: half served by the table, half not
// (with pullThrough, that half is Docker Hub images that go through the cache).
func review(n int, pullThrough bool) ([]byte, error) {
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: namespace}}
	for i := 0; i < n; i++ {
		img := fmt.Sprintf("registry-%d.example.com/team/app-%d:v1", i*97%1000, i)
		switch {
		case i%2 == 1 && pullThrough:
			img = fmt.Sprintf("tool-%d:v1", i)
		case i%2 == 1:
			img = fmt.Sprintf("quay.io/public/tool-%d:v1", i)
		}
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("00000000-0000-0000-0000-000000000001"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: namespace,
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	}
	return json.Marshal(ar)
}

func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
