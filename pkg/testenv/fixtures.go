package testenv

import (
	"net"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/pullsecret"
)

// EnsureNamespace creates a namespace by name unless it is there.
func (e *Env) EnsureNamespace(t testing.TB, name string) {
	t.Helper()
	_, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// SourceSecret creates, or updates, a dockerconfigjson Secret with user's password for host.
func (e *Env) SourceSecret(t testing.TB, namespace, name, host, password string) {
	t.Helper()
	data, err := dockerconfig.ForHost(host, "user", password).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
	api := e.Kube.CoreV1().Secrets(namespace)
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

// SecretWrites counts the API server's create/update/patch requests on Secrets.
func (e *Env) SecretWrites(t testing.TB) float64 {
	t.Helper()
	body, err := e.Kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	families, err := ParseMetrics(string(body))
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, verb := range []string{"POST", "PUT", "PATCH", "APPLY"} {
		v, _ := MetricValue(families, "apiserver_request_total", map[string]string{"verb": verb, "resource": "secrets", "subresource": "", "dry_run": ""})
		n += v
	}
	return n
}

// PullSecretPassword is the password for host in registry's pull secret in namespace ("" when
// there is none).
func (e *Env) PullSecretPassword(t testing.TB, namespace, registry, host string) string {
	t.Helper()
	s, err := e.Kube.CoreV1().Secrets(namespace).Get(t.Context(), pullsecret.Name(registry), metav1.GetOptions{})
	if err != nil {
		return ""
	}
	cfg, err := dockerconfig.Parse(s.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Auths[host].Password
}

// OptedIn creates a namespace annotated pullpass.io/inject=enabled, with labels, and returns its
// generated name.
func (e *Env) OptedIn(t testing.TB, labels map[string]string) string {
	t.Helper()
	n, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "shop-", Labels: labels, Annotations: map[string]string{"pullpass.io/inject": "enabled"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Name
}

// FreeAddress is a loopback address with a port free a moment ago, for a server under test.
func FreeAddress(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
