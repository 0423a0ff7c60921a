//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// Users who do not cooperate (issue #24), each against the deployed chart: names pullpass could
// not use, pullpass's own Secrets taken for the CLI's, and Secrets that carry pullpass's labels.

// A Registry name longer than a label value (63) is refused by the API server, saying why:
// before, it was accepted, its pull secrets could never be written and it reported Ready.
func TestRegistryNameLongerThanALabelIsRefusedSayingWhy(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	ctx := framework.Context(t, time.Minute)
	name := "e2e-long-" + strings.Repeat("x", 64-len("e2e-long-"))
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"long-name.example.com"},
		Auth:  v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "e2e-long-source", Namespace: framework.PullpassNamespace}},
	}}
	_, err := e.Registries.Create(ctx, reg, metav1.CreateOptions{})
	if err == nil {
		_ = e.Registries.Delete(context.Background(), name, metav1.DeleteOptions{})
		t.Fatalf("a Registry named with %d characters was accepted", len(name))
	}
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "63") {
		t.Fatalf("refused, but not saying why: %v", err)
	}
	// 63 is a label value: accepted.
	reg.Name = name[:63]
	if _, err := e.Registries.Create(ctx, reg, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a Registry named with 63 characters: %v", err)
	}
	_ = e.Registries.Delete(context.Background(), reg.Name, metav1.DeleteOptions{})
}

// The CLI writes and deletes only the source Secrets it made for that Registry: `registries add
// --name pullpass-webhook-tls` leaves the webhook's TLS Secret as it was (before, it was replaced
// by a docker config and no new webhook pod became Ready), and `registries remove` keeps a source
// that another Registry names.
func TestCLIChangesOnlyTheSourcesItMade(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	pp := framework.PullpassNamespace
	ctx := framework.Context(t, 3*time.Minute)
	secretsAPI := e.Kube.CoreV1().Secrets(pp)

	tlsBefore, err := secretsAPI.Get(ctx, "pullpass-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, e, "any-password\n", "-N", pp, "registries", "add", "own-tls.example.com", "--name", "pullpass-webhook-tls",
		"--username", "u", "--password-stdin", "--no-wait")
	if r.code == 0 {
		_ = e.Registries.Delete(context.Background(), "pullpass-webhook-tls", metav1.DeleteOptions{})
		t.Fatalf("add --name pullpass-webhook-tls succeeded: %q", r.out)
	}
	tlsAfter, err := secretsAPI.Get(ctx, "pullpass-webhook-tls", metav1.GetOptions{})
	if err != nil || tlsAfter.UID != tlsBefore.UID || tlsAfter.ResourceVersion != tlsBefore.ResourceVersion || tlsAfter.Type != corev1.SecretTypeTLS {
		t.Fatalf("the webhook's TLS Secret changed: %v (type %s, uid %s -> %s, version %s -> %s)",
			err, tlsAfter.Type, tlsBefore.UID, tlsAfter.UID, tlsBefore.ResourceVersion, tlsAfter.ResourceVersion)
	}
	t.Logf("add --name pullpass-webhook-tls: exit %d: %s", r.code, strings.TrimSpace(r.errOut))

	// A source the CLI made, named by a second Registry too.
	first := "e2e-shared-" + rand.String(5)
	t.Cleanup(func() {
		_ = e.Registries.Delete(context.Background(), first, metav1.DeleteOptions{})
		_ = secretsAPI.Delete(context.Background(), first, metav1.DeleteOptions{})
	})
	r = runCLI(t, e, "shared-password\n", "-N", pp, "registries", "add", first+".example.com", "--name", first,
		"--username", "u", "--password-stdin", "--no-wait")
	if r.code != 0 {
		t.Fatalf("add %s: exit %d, %q %q", first, r.code, r.out, r.errOut)
	}
	reg, err := e.Registries.Get(ctx, first, metav1.GetOptions{})
	if err != nil || reg.Spec.Auth.SecretRef == nil {
		t.Fatalf("registry %s: %v", first, err)
	}
	source := *reg.Spec.Auth.SecretRef
	second := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: first + "-too"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{first + "-too.example.com"}, Auth: v1alpha1.RegistryAuth{SecretRef: &source}}}
	if _, err := e.Registries.Create(ctx, second, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(context.Background(), second.Name, metav1.DeleteOptions{}) })
	if r = runCLI(t, e, "", "-N", pp, "registries", "remove", first); r.code != 0 {
		t.Fatalf("remove %s: exit %d, %q %q", first, r.code, r.out, r.errOut)
	}
	if _, err := secretsAPI.Get(ctx, source.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("remove %s deleted source %s/%s that registry %s names: %v", first, source.Namespace, source.Name, second.Name, err)
	}
	if !strings.Contains(r.errOut, "registry "+second.Name+" uses it too") {
		t.Errorf("remove did not say why it kept the source: %q", r.errOut)
	}
}

// The webhook's TLS Secret replaced by something it cannot use (another type, no key, as a
// mistaken `kubectl apply` or the CLI bug above left it): every webhook pod started after that
// makes it usable again by itself, becomes Ready, and pods are injected again; nobody deletes
// anything by hand.
func TestWebhookRecoversFromAnUnusableTLSSecret(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	pp := framework.PullpassNamespace
	ctx := framework.Context(t, 5*time.Minute)
	secretsAPI := e.Kube.CoreV1().Secrets(pp)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "e2e-tls-" + rand.String(5)})

	cur, err := secretsAPI.Get(ctx, "pullpass-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	broken := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cur.Name, Namespace: pp, Labels: cur.Labels, Annotations: cur.Annotations},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}
	if err := secretsAPI.Delete(ctx, cur.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := secretsAPI.Create(ctx, broken, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Every webhook pod starts again, on the broken Secret.
	pods, err := e.Kube.CoreV1().Pods(pp).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if err := e.Kube.CoreV1().Pods(pp).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Minute, "every webhook replica Ready again on a usable TLS Secret", func() bool {
		s, err := secretsAPI.Get(ctx, "pullpass-webhook-tls", metav1.GetOptions{})
		if err != nil || s.Type != corev1.SecretTypeTLS || len(s.Data[corev1.TLSPrivateKeyKey]) == 0 {
			return false
		}
		list, err := e.Kube.CoreV1().Pods(pp).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
		if err != nil || len(list.Items) < len(pods.Items) {
			return false
		}
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil || !podReady(&p) {
				return false
			}
		}
		return true
	})
	// Injection works again, through the API server's call to the new certificate.
	ns := e.Namespace(t, "tls-again", optIn)
	secret := "pullpass-" + reg.Name
	waitFor(t, time.Minute, "a pod injected with "+secret, func() bool {
		return slices.Contains(e.DryRunSecrets(t, ns, e.Pod(ns, framework.PodOptions{})), secret)
	})
}

// Secrets of tenants that carry pullpass's labels are not what pullpass caches: 300 of 1 MiB
// each, labelled as pullpass labels its pull secrets, in an opted-in namespace, are more than a
// webhook replica's memory limit (the chart's 256 MiB). Before, every replica cached them whole
// and was killed for it (the webhook then fails open); now each keeps a digest of them, no
// webhook or controller replica restarts, and pods are injected as before.
func TestTenantSecretsWithPullpassLabelsCostReplicasLittle(t *testing.T) {
	framework.ProvedOn(t, framework.Kind, "it measures replicas at the chart's default memory limits, which kind runs")
	e := framework.Load(t)
	ep := e.Deployed(t)
	pp := framework.PullpassNamespace
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "e2e-labelled-" + rand.String(5)})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "labelled-secrets", optIn)
	e.WaitServed(t, ns, secret)
	ctx := framework.Context(t, 5*time.Minute)
	// The first pod's admission writes the pull secret (a dry run writes nothing).
	e.WaitRunning(t, ns, e.CreatePod(t, e.Pod(ns, framework.PodOptions{})).Name)
	// The webhook's replicas and the controller's both cache pullpass's labelled Secrets.
	restarts := func() map[string]int32 {
		list, err := e.Kube.CoreV1().Pods(pp).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component in (webhook,controller)"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int32{}
		for _, p := range list.Items {
			for _, c := range p.Status.ContainerStatuses {
				out[p.Name] += c.RestartCount
			}
		}
		return out
	}
	heap := func() float64 { return e.WebhookMetric(t, ep, "go_memstats_heap_inuse_bytes", nil) }
	before, heapBefore := restarts(), heap()

	const n, size = 300, 1 << 20
	blob := []byte(strings.Repeat("x", size-1024))
	for i := range n {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pullpass-looks-like-%d", i), Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "pullpass", "pullpass.io/registry": reg.Name, "pullpass.io/role": "pull-secret"}},
			Data: map[string][]byte{"blob": blob}}
		if _, err := e.Kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The pullpass pull secret deleted after them is made again: the keeper's informer has had
	// every event before it, the tenant's 300 MiB included.
	if err := e.Kube.CoreV1().Secrets(ns).Delete(ctx, secret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the keeper making "+secret+" again", func() bool { return !e.SecretGone(t, ns, secret) })
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	if !slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == secret }) {
		t.Fatalf("a pod admitted after the tenant's Secrets has no %s: %v", secret, pod.Spec.ImagePullSecrets)
	}
	e.WaitRunning(t, ns, pod.Name)
	after := restarts()
	for name, r := range after {
		if b, ok := before[name]; !ok || r != b {
			t.Errorf("pod %s: restarts %d -> %d (all before: %v)", name, b, r, before)
		}
	}
	t.Logf("%d tenant Secrets of 1 MiB labelled as pull secrets: webhook replicas' heap in use %.1f MiB -> %.1f MiB, restarts %v",
		n, heapBefore/(1<<20), heap()/(1<<20), after)
}
