package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// The webhook's wiring against a real API server: replicas of it, as the chart runs them.
var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) {
	// Terms of leadership in seconds, not the production 15 s.
	leaderTimings.lease, leaderTimings.renew, leaderTimings.retry = 3*time.Second, 2*time.Second, 500*time.Millisecond
	os.Exit(controlPlane.Run(m))
}

const ns = "pullpass"

// replica is one running webhook process (Run), with its own ports.
type replica struct {
	webhook, metrics string
	stop             context.CancelFunc
	done             chan error
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

func startReplica(t *testing.T, env *testenv.Env, ecrEndpoint string, options ...func(*Options)) *replica {
	t.Helper()
	o := DefaultOptions()
	o.Kubeconfig = env.KubeconfigFile(t)
	o.Namespace = ns
	o.ListenAddress, o.MetricsAddress = freePort(t), freePort(t)
	o.WebhookConfigName, o.ServiceName = "", ""
	o.TLSIPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	o.ECREndpoint = ecrEndpoint
	o.WatchPulls = false
	o.ShutdownDelay = 0
	for _, f := range options {
		f(o)
	}
	r := &replica{webhook: o.ListenAddress, metrics: o.MetricsAddress, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- Run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("replica: %v", err)
		}
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + r.metrics + "/readyz")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return r
}

// admit sends a pod's AdmissionReview, as the API server would, and returns the pull secrets the
// webhook's patch adds.
func (r *replica) admit(t *testing.T, namespace, image string) []string {
	t.Helper()
	names, _ := r.admitPod(t, namespace, image)
	return names
}

// admitPod is admit that also returns the container's image after the patch.
func (r *replica) admitPod(t *testing.T, namespace, image string) (secrets []string, patchedImage string) {
	t.Helper()
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
	}
	raw, _ := json.Marshal(pod)
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("u-" + strconv.FormatInt(time.Now().UnixNano(), 36)), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: namespace, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, _ := json.Marshal(review)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the serving certificate is not under test
	resp, err := client.Post("https://"+r.webhook+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("admission: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
		t.Fatalf("admission response: %v", err)
	}
	var ops []struct {
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	_ = json.Unmarshal(out.Response.Patch, &ops)
	var names []string
	patchedImage = image
	for _, op := range ops {
		if op.Path == "/spec/containers/0/image" {
			_ = json.Unmarshal(op.Value, &patchedImage)
		}
		if !strings.HasPrefix(op.Path, "/spec/imagePullSecrets") {
			continue
		}
		var refs []corev1.LocalObjectReference
		var ref corev1.LocalObjectReference
		if json.Unmarshal(op.Value, &refs) == nil {
			for _, r := range refs {
				names = append(names, r.Name)
			}
		} else if json.Unmarshal(op.Value, &ref) == nil {
			names = append(names, ref.Name)
		}
	}
	return names, patchedImage
}

func optedIn(t *testing.T, env *testenv.Env) string {
	t.Helper()
	n, err := env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "shop-", Annotations: map[string]string{"pullpass.io/inject": "enabled"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Name
}

func ensureNamespace(t *testing.T, env *testenv.Env, name string) {
	t.Helper()
	_, err := env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
}

func sourceSecret(t *testing.T, env *testenv.Env, name, host, password string) {
	t.Helper()
	data, err := dockerconfig.ForHost(host, "user", password).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
	api := env.Kube.CoreV1().Secrets(ns)
	if cur, err := api.Get(t.Context(), name, metav1.GetOptions{}); err == nil {
		cur.Data = s.Data
		if _, err := api.Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := api.Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// secretWrites counts the API server's create/update/patch requests on Secrets.
func secretWrites(t *testing.T, env *testenv.Env) float64 {
	t.Helper()
	body, err := env.Kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "apiserver_request_total{") || !strings.Contains(l, `resource="secrets"`) ||
			!strings.Contains(l, `subresource=""`) || !strings.Contains(l, `dry_run=""`) {
			continue
		}
		if !strings.Contains(l, `verb="POST"`) && !strings.Contains(l, `verb="PUT"`) && !strings.Contains(l, `verb="PATCH"`) && !strings.Contains(l, `verb="APPLY"`) {
			continue
		}
		v, _ := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
		n += v
	}
	return n
}

func pullSecretPassword(t *testing.T, env *testenv.Env, namespace, registry, host string) string {
	s, err := env.Kube.CoreV1().Secrets(namespace).Get(t.Context(), pullsecret.Name(registry), metav1.GetOptions{})
	if err != nil {
		return ""
	}
	cfg, err := dockerconfig.Parse(s.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Auths[host].Password
}

// Two replicas whose ECR clients hold different tokens serve admissions in turn: after the pull
// secret is made, no admission on either replica writes a Secret (they used to overwrite each
// other's token at every pod, and the keeper wrote its own back).
func TestTwoReplicasAdmitWithoutWritingSecrets(t *testing.T) {
	env := controlPlane.Env(t)
	ensureNamespace(t, env, ns)
	const host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
	srv := ecrtest.New(
		ecrtest.Reply{Username: "AWS", Password: "token-one", ExpiresAt: time.Now().Add(time.Hour)},
		ecrtest.Reply{Username: "AWS", Password: "token-two", ExpiresAt: time.Now().Add(time.Hour)},
	)
	t.Cleanup(srv.Close)
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "aws-keys"},
		StringData: map[string]string{"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "secret"}}
	if _, err := env.Kube.CoreV1().Secrets(ns).Create(t.Context(), keys, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ecr-two-replicas"},
		Spec: v1alpha1.RegistrySpec{Hosts: []string{host}, Auth: v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{
			AccessKeySecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "aws-keys"}}}}})
	a, b := startReplica(t, env, srv.URL), startReplica(t, env, srv.URL)
	shop := optedIn(t, env)
	image := host + "/app:v1"

	testenv.Eventually(t, 20*time.Second, func() error {
		if got := a.admit(t, shop, image); len(got) != 1 {
			return fmt.Errorf("pull secrets %v", got)
		}
		return nil
	})
	for _, r := range []*replica{b, a} { // b resolves its own token now
		if got := r.admit(t, shop, image); len(got) != 1 || got[0] != pullsecret.Name("ecr-two-replicas") {
			t.Fatalf("pull secrets %v", got)
		}
	}
	time.Sleep(3 * time.Second) // the leader's keeper settles on its token, if it differs
	before := secretWrites(t, env)
	for i := range 20 {
		r := a
		if i%2 == 1 {
			r = b
		}
		if got := r.admit(t, shop, image); len(got) != 1 {
			t.Fatalf("pull secrets %v", got)
		}
	}
	time.Sleep(2 * time.Second)
	if w := secretWrites(t, env) - before; w != 0 {
		t.Fatalf("%v Secret writes for 20 admissions on two replicas at steady state, want 0", w)
	}
}

// A replica that loses the keeper's Lease and wins it back still keeps pull secrets fresh: the
// keeper of its second term works (the first term's shut-down queue used to be reused).
func TestLeadershipLostAndRegainedStillRotates(t *testing.T) {
	env := controlPlane.Env(t)
	ensureNamespace(t, env, ns)
	const host = "regain.example.com"
	sourceSecret(t, env, "regain-src", host, "first")
	env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "regain"},
		Spec: v1alpha1.RegistrySpec{Hosts: []string{host}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "regain-src"}}}})
	r := startReplica(t, env, "")
	shop := optedIn(t, env)
	testenv.Eventually(t, 20*time.Second, func() error {
		if got := r.admit(t, shop, host+"/app:v1"); len(got) != 1 {
			return fmt.Errorf("pull secrets %v", got)
		}
		return nil
	})
	leases := env.Kube.CoordinationV1().Leases(ns)
	var holder string
	testenv.Eventually(t, 20*time.Second, func() error {
		l, err := leases.Get(t.Context(), "pullpass-keeper", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("no leader yet (%v)", err)
		}
		holder = *l.Spec.HolderIdentity
		return nil
	})
	// Hold the Lease as someone else for a while, then let it go.
	thief := "thief"
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		l, err := leases.Get(t.Context(), "pullpass-keeper", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.NewMicroTime(time.Now())
		l.Spec.HolderIdentity, l.Spec.RenewTime = &thief, &now
		_, _ = leases.Update(t.Context(), l, metav1.UpdateOptions{})
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		l, err := leases.Get(t.Context(), "pullpass-keeper", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != holder {
			return fmt.Errorf("the replica does not lead again (%v)", err)
		}
		return nil
	})
	sourceSecret(t, env, "regain-src", host, "second")
	testenv.Eventually(t, 20*time.Second, func() error {
		if pw := pullSecretPassword(t, env, shop, "regain", host); pw != "second" {
			return fmt.Errorf("pull secret password %q", pw)
		}
		return nil
	})
}

// Two pull-through caches of Docker Hub with equally specific namespaceSelectors that both
// select a namespace: the webhook rewrites there to neither, and the leader's keeper says why in
// both Registries' status. A more specific selector on one settles it; a cache of a cache is
// refused with its own reason.
func TestPullThroughConflictStatus(t *testing.T) {
	env := controlPlane.Env(t)
	ensureNamespace(t, env, ns)
	const ecrHost, harborHost = "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "harbor.example.com"
	sourceSecret(t, env, "pt-ecr-src", ecrHost, "pw")
	sourceSecret(t, env, "pt-harbor-src", harborHost, "pw")
	cache := func(name, host, upstream, prefix, src string, sel map[string]string) *v1alpha1.Registry {
		return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{host}, NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel},
			Auth:        v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: src}},
			PullThrough: &v1alpha1.PullThrough{Upstream: upstream, Prefix: prefix},
		}}
	}
	env.CreateRegistry(t, cache("pt-ecr", ecrHost, "docker.io", "docker-hub", "pt-ecr-src", map[string]string{"team": "a"}))
	harbor := env.CreateRegistry(t, cache("pt-harbor", harborHost, "docker.io", "hub", "pt-harbor-src", map[string]string{"env": "prod"}))
	env.CreateRegistry(t, cache("pt-chained", harborHost+"/ecr", ecrHost, "ecr", "pt-harbor-src", nil))
	r := startReplica(t, env, "")
	shop, err := env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "shop-", Labels: map[string]string{"team": "a", "env": "prod"}, Annotations: map[string]string{"pullpass.io/inject": "enabled"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	condition := func(name string) (metav1.Condition, error) {
		reg, err := env.Registries.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return metav1.Condition{}, err
		}
		for _, c := range reg.Status.Conditions {
			if c.Type == v1alpha1.ConditionPullThrough {
				return c, nil
			}
		}
		return metav1.Condition{}, fmt.Errorf("registry %s has no PullThrough condition: %+v", name, reg.Status.Conditions)
	}
	want := func(name, reason, message string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			c, err := condition(name)
			if err != nil {
				return err
			}
			if c.Reason != reason || !strings.Contains(c.Message, message) {
				return fmt.Errorf("registry %s: PullThrough %s %s: %s; want %s, %q", name, c.Status, c.Reason, c.Message, reason, message)
			}
			return nil
		})
	}
	want("pt-ecr", "Conflict", "registry pt-harbor is a pull-through cache of docker.io too")
	want("pt-harbor", "Conflict", "both select namespace "+shop.Name)
	want("pt-chained", "Chained", "upstream "+ecrHost+" is the host of pull-through cache pt-ecr")
	if _, img := r.admitPod(t, shop.Name, "nginx:1.27"); img != "nginx:1.27" {
		t.Fatalf("a conflict rewrote nginx:1.27 to %s", img)
	}

	// One more requirement on one selector: it wins the namespace, the other steps back.
	harbor, err = env.Registries.Get(t.Context(), harbor.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	harbor.Spec.NamespaceSelector.MatchLabels["team"] = "a"
	if _, err := env.Registries.Update(t.Context(), harbor, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want("pt-harbor", "Active", "images of docker.io are rewritten to harbor.example.com/hub/... in 1 namespaces")
	want("pt-ecr", "Active", "in 0 namespaces")
	testenv.Eventually(t, 20*time.Second, func() error {
		secrets, img := r.admitPod(t, shop.Name, "nginx:1.27")
		if img != harborHost+"/hub/library/nginx:1.27" || len(secrets) != 1 || secrets[0] != pullsecret.Name("pt-harbor") {
			return fmt.Errorf("nginx:1.27 admitted as %s with %v", img, secrets)
		}
		return nil
	})
}
