package testenv

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// Namespace creates a namespace with a generated name and labels, deleted when the test ends,
// and returns its name. Without a controller-manager a deleted namespace stays Terminating with
// its objects: tests tell their objects apart by namespace, not by an empty cluster.
func (e *Env) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ns, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	t.Cleanup(func() {
		err := e.Kube.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// CreateRegistry creates r, deleted when the test ends, and returns it as stored (defaults set).
// Registries are cluster-scoped: give each test its own names.
func (e *Env) CreateRegistry(t testing.TB, r *v1alpha1.Registry) *v1alpha1.Registry {
	t.Helper()
	created, err := e.Registries.Create(t.Context(), r, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating registry %s: %v", r.Name, err)
	}
	t.Cleanup(func() {
		err := e.Registries.Delete(context.Background(), r.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting registry %s: %v", r.Name, err)
		}
	})
	return created
}

// Eventually calls check every 50 ms until it returns nil, and fails the test with its last
// error if that takes longer than timeout.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	Poll(t, timeout, 50*time.Millisecond, check)
}

// Poll is Eventually at a pace of the caller's: the project's one "eventually" (e2e polls a real
// cluster every second; tests in a synctest bubble poll in the bubble's time, where it is free).
func Poll(t testing.TB, timeout, every time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not so after %s: %v", timeout, err)
		}
		// Not t.Context(): it is canceled before the test's Cleanup functions run, and they
		// wait with Poll too (an e2e test's clean-up waits for the node cache to empty).
		time.Sleep(every)
	}
}

// Until adapts a condition to Poll's check: nil once cond holds, else an error saying what is
// awaited.
func Until(what string, cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errors.New("not " + what)
	}
}

// KubeconfigFile writes a kubeconfig file for the admin config (or for cfg when given), for code
// under test that reads one, and returns its path; it is removed when the test ends.
func (e *Env) KubeconfigFile(t testing.TB, cfg ...*rest.Config) string {
	t.Helper()
	c := e.Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["testenv"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData, CertificateAuthority: c.CAFile}
	kc.AuthInfos["testenv"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, ClientCertificate: c.CertFile, ClientKey: c.KeyFile, Token: c.BearerToken,
	}
	kc.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "testenv"}
	kc.CurrentContext = "testenv"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("writing a kubeconfig: %v", err)
	}
	return path
}
