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
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// The webhook's wiring against a real API server: replicas of it, as the chart runs them.
var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

const ns = "pullpass"

// replica is one running webhook process (Run), with its own ports.
type replica struct {
	webhook, metrics string
	stop             context.CancelFunc
	done             chan error
}

func startReplica(t *testing.T, env *testenv.Env, ecrEndpoint string, options ...func(*Options)) *replica {
	t.Helper()
	o := DefaultOptions()
	o.Kubeconfig = env.KubeconfigFile(t)
	o.Namespace = ns
	o.ListenAddress, o.MetricsAddress = testenv.FreeAddress(t), testenv.FreeAddress(t)
	o.WebhookConfigName, o.ServiceName = "", ""
	o.TLSIPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	o.ECREndpoint = ecrEndpoint
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

// admittedAhead is the replica's count of pods admitted ahead of their pull secret (whose writes
// go on after their review), from its /metrics.
func (r *replica) admittedAhead(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	families, err := testenv.ParseMetrics(string(body))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := testenv.MetricValue(families, "pullpass_webhook_pods_admitted_ahead_of_secret_total", nil)
	return n
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

// Two replicas whose ECR clients hold different tokens serve admissions in turn: after the pull
// secret is made, no admission on either replica writes a Secret (they used to overwrite each
// other's token at every pod). No replica keeps pull secrets: that is the controller's.
func TestTwoReplicasAdmitWithoutWritingSecrets(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, ns)
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
	shop := env.OptedIn(t, nil)
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
	before := env.SecretWrites(t)
	for i := range 20 {
		r := a
		if i%2 == 1 {
			r = b
		}
		if got := r.admit(t, shop, image); len(got) != 1 {
			t.Fatalf("pull secrets %v", got)
		}
	}
	// Nothing writes after the reviews: a write the webhook makes outlives its review only for a
	// pod admitted ahead of its pull secret, and none was (no sleep stands in for this).
	for _, r := range []*replica{a, b} {
		if n := r.admittedAhead(t); n != 0 {
			t.Fatalf("%v pods admitted ahead of their pull secret: a write may still be under way", n)
		}
	}
	if w := env.SecretWrites(t) - before; w != 0 {
		t.Fatalf("%v Secret writes for 20 admissions on two replicas at steady state, want 0", w)
	}
}
