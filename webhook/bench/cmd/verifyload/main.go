// Command verifyload measures the verifier's load on registries: the requests one verification
// sends, against go-containerregistry's in-memory registry behind Basic auth, behind a Bearer token
// service, and as Docker Hub (Bearer plus the rate-limit HEAD), with the real Verifier and login
// client on a short interval; and, as the baseline in the same run, the requests of one pull of a
// one-layer image by the same client library. The steady-state load per registry per hour is the
// requests per verification at the default interval (1h).
//
//	go run ./webhook/verify/cmd/verifyload
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/registrylogin"
	"github.com/pullpass/pullpass/webhook/verify"
)

const user, pass = "bench", "bench-password"

// fake is an in-memory registry behind Basic or Bearer auth, counting requests.
type fake struct {
	bearer   bool
	limits   bool // answer Docker Hub's rate-limit HEAD
	requests atomic.Int64
	srv      *httptest.Server
	reg      http.Handler
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	u, p, basic := r.BasicAuth()
	if f.bearer && r.URL.Path == "/token" {
		if basic && (u != user || p != pass) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "t", "expires_in": 300})
		return
	}
	ok := basic && u == user && p == pass
	if f.bearer {
		ok = r.Header.Get("Authorization") == "Bearer t"
	}
	if !ok {
		if f.bearer {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+f.srv.URL+`/token",service="bench"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Basic realm="bench"`)
		}
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if f.limits && r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/manifests/latest") && strings.Contains(r.URL.Path, "ratelimitpreview") {
		w.Header().Set("ratelimit-limit", "200;w=21600")
		w.Header().Set("ratelimit-remaining", "199;w=21600")
		w.WriteHeader(http.StatusOK)
		return
	}
	f.reg.ServeHTTP(w, r)
}

func start(bearer, limits bool) *fake {
	f := &fake{bearer: bearer, limits: limits, reg: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	f.srv = httptest.NewTLSServer(f)
	return f
}

func (f *fake) host() string { return strings.TrimPrefix(f.srv.URL, "https://") }

type regs map[string]*v1alpha1.Registry

func (r regs) Get(n string) (*v1alpha1.Registry, bool) { x, ok := r[n]; return x, ok }
func (r regs) List() []*v1alpha1.Registry {
	var out []*v1alpha1.Registry
	for _, x := range r {
		out = append(out, x)
	}
	return out
}

type creds struct{}

func (creds) Credentials(context.Context, *v1alpha1.Registry) (userpass.Credentials, error) {
	return userpass.Credentials{Username: user, Password: pass, Version: "secret/1"}, nil
}

// status accepts every write (the API server's side is not what is measured).
type status struct{}

func (status) Get(_ context.Context, n string, _ metav1.GetOptions) (*v1alpha1.Registry, error) {
	return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: n}}, nil
}
func (status) UpdateStatus(_ context.Context, r *v1alpha1.Registry, _ metav1.UpdateOptions) (*v1alpha1.Registry, error) {
	return r, nil
}

func main() {
	runFor := flag.Duration("run", 20*time.Second, "how long the verifier runs")
	interval := flag.Duration("interval", time.Second, "the verifier's interval during the run")
	flag.Parse()
	if err := measure(*runFor, *interval); err != nil {
		log.Fatal(err)
	}
}

// measure runs the verifier against the fakes and prints the figures; main exits after its
// deferred closes ran.
func measure(runFor, interval time.Duration) error {
	basic, bearer, hub := start(false, false), start(true, false), start(true, true)
	pool := x509.NewCertPool()
	for _, f := range []*fake{basic, bearer, hub} {
		pool.AddCert(f.srv.Certificate())
		defer f.srv.Close()
	}
	tr := &http.Transport{TLSClientConfig: nil}
	tr.TLSClientConfig = basic.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tr.TLSClientConfig.RootCAs = pool

	// Baseline: one pull of a one-layer image (manifest, config, layer) by go-containerregistry.
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})
	for _, f := range []*fake{basic, bearer} {
		ref, err := name.ParseReference(f.host() + "/team/app:1")
		if err != nil {
			return err
		}
		img, err := random.Image(1024, 1)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, remote.WithAuth(auth), remote.WithTransport(tr)); err != nil {
			return err
		}
		before := f.requests.Load()
		pulled, err := remote.Image(ref, remote.WithAuth(auth), remote.WithTransport(tr))
		if err != nil {
			return err
		}
		if _, err := pulled.ConfigFile(); err != nil {
			return err
		}
		layers, _ := pulled.Layers()
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, rc)
			_ = rc.Close()
		}
		kind := "Basic"
		if f.bearer {
			kind = "Bearer"
		}
		fmt.Printf("baseline: one pull of a one-layer image, %s: %d requests\n", kind, f.requests.Load()-before)
	}

	promReg := prometheus.NewRegistry()
	m, err := verify.NewPrometheusMetrics(promReg)
	if err != nil {
		return err
	}
	mk := func(n string, hosts ...string) *v1alpha1.Registry {
		return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: v1alpha1.RegistrySpec{Hosts: hosts}}
	}
	table := regs{"basic": mk("basic", basic.host()+"/team/"), "bearer": mk("bearer", bearer.host()+"/team/"), "hub": mk("hub", "docker.io")}
	counts := map[string]*fake{"basic": basic, "bearer": bearer, "hub": hub}
	start := map[string]int64{}
	for n, f := range counts {
		start[n] = f.requests.Load()
	}
	v, err := verify.New(verify.Config{Registries: table, Credentials: creds{}, Status: status{},
		Login: registrylogin.New(registrylogin.Config{Transport: tr}), Interval: interval, DockerHubHost: hub.host(),
		Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	v.Run(ctx)

	mfs, _ := promReg.Gather()
	verifications := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "pullpass_registry_verifications_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			verifications[label(s, "registry")] += s.GetCounter().GetValue()
		}
	}
	fmt.Printf("verifier: %s at a %s interval\n", runFor, interval)
	for _, n := range []string{"basic", "bearer", "hub"} {
		req := counts[n].requests.Load() - start[n]
		per := float64(req) / verifications[n]
		fmt.Printf("  %-6s %3.0f verifications, %4d requests: %.1f per verification -> %.1f requests/hour at the default 1h interval\n",
			n, verifications[n], req, per, per)
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
