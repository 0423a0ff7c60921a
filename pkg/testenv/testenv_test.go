package testenv_test

import (
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// One control plane for the package, started by the first test that asks for it.
var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

// The example of the package comment, run: a Registry, a namespace, a secret, all through the
// admin clients.
func TestControlPlane(t *testing.T) {
	env := controlPlane.Env(t)
	created := env.CreateRegistry(t, &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: "testenv-example"},
		Spec: v1alpha1.RegistrySpec{
			Hosts: []string{"ghcr.io"},
			Auth:  v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "ghcr", Namespace: "pullpass"}},
		},
	})
	if created.Spec.Scope != v1alpha1.ScopeNamespaced {
		t.Fatalf("the CRD's default did not apply: scope %q", created.Spec.Scope)
	}
	ns := env.Namespace(t, map[string]string{"pullpass.io/inject": "enabled"})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"k": "v"}}
	if _, err := env.Kube.CoreV1().Secrets(ns).Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pods are admitted (no service account needed) though none ever runs.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "ghcr.io/org/app:v1"}}},
	}
	if _, err := env.Kube.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// UserConfig is a user RBAC knows nothing about until a test grants it something.
func TestUserConfigIsSubjectToRBAC(t *testing.T) {
	env := controlPlane.Env(t)
	cfg, err := env.UserConfig("someone", "some-group")
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kube.CoreV1().Secrets("default").List(t.Context(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing secrets as an unknown user: %v, want forbidden", err)
	}
}

// A service account's config gets what a RoleBinding grants it, and nothing else.
func TestServiceAccountConfig(t *testing.T) {
	env := controlPlane.Env(t)
	ns := env.Namespace(t, nil)
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "read-secrets", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "read-secrets", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "reader"}},
	}
	if _, err := env.Kube.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Kube.RbacV1().RoleBindings(ns).Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := env.ServiceAccountConfig(ns, "reader")
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatalf("listing secrets as the bound service account: %v", err)
	}
	if _, err := kube.CoreV1().Secrets("default").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing secrets of another namespace: %v, want forbidden", err)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	testenv.Eventually(t, 5*time.Second, func() error {
		if n++; n < 3 {
			return os.ErrNotExist
		}
		return nil
	})
}

// A Start with no kube-apiserver fails and names the command that builds it.
func TestStartWithoutBinaries(t *testing.T) {
	_, err := testenv.Start(t.Context(), testenv.Config{AssetsDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "hack/build-kube.sh") {
		t.Fatalf("Start = %v, want an error naming build-kube.sh", err)
	}
}

// Poll returns as soon as the check holds, having called it until then, and Until says what
// was awaited while it does not hold.
func TestPollUntilTheCheckHolds(t *testing.T) {
	calls := 0
	testenv.Poll(t, time.Minute, time.Millisecond, testenv.Until("three calls", func() bool { calls++; return calls == 3 }))
	if calls != 3 {
		t.Fatalf("%d calls, want 3", calls)
	}
	if err := testenv.Until("ready", func() bool { return false })(); err == nil || err.Error() != "not ready" {
		t.Fatalf("Until's error %v, want \"not ready\"", err)
	}
}

// Clean-ups wait with Poll too: t.Context() is canceled by then, which must not end the wait.
func TestPollWaitsInACleanup(t *testing.T) {
	calls := 0
	t.Run("inner", func(t *testing.T) {
		t.Cleanup(func() {
			testenv.Poll(t, time.Minute, time.Millisecond, testenv.Until("three calls", func() bool { calls++; return calls == 3 }))
		})
	})
	if calls != 3 {
		t.Fatalf("%d calls in the clean-up, want 3", calls)
	}
}
