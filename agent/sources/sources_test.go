package sources_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pullpass/pullpass/agent/sources"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/nodeaccess"
	"github.com/pullpass/pullpass/pkg/testenv"
)

var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

// As the agent: a Secret it may not read yet is "not readable", never "gone"; once the Role
// names it, it is read; deleted, it is gone; another namespace is refused outright.
func TestNotReadableIsNotGone(t *testing.T) {
	env := controlPlane.Env(t)
	ns := env.Namespace(t, nil)
	ctx := t.Context()
	if _, err := env.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "src"},
		StringData: map[string]string{"username": "u", "password": "p"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := env.ServiceAccountConfig(ns, "agent")
	if err != nil {
		t.Fatal(err)
	}
	agentClient := kubernetes.NewForConfigOrDie(cfg)
	w, err := sources.New(sources.Config{Client: agentClient, Namespace: ns, ReadRetry: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.Start(ctx)
	w.Set([]string{"src"})

	time.Sleep(500 * time.Millisecond)
	_, err = w.Secret(ctx, ns, "src")
	var notReadable *sources.NotReadableError
	if !errors.As(err, &notReadable) || apierrors.IsNotFound(err) {
		t.Fatalf("before the grant: %v, want not readable (and not NotFound)", err)
	}
	if !apierrors.IsForbidden(errors.Unwrap(err)) {
		t.Fatalf("the reason is not the API server's refusal: %v", err)
	}

	// The leader grants it, as nodeaccess.RoleKeeper writes the Role.
	rb := env.Kube.RbacV1()
	if _, err := rb.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "sources"}, Rules: nodeaccess.Rules([]string{"src"})}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "sources"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "sources"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "system:serviceaccount:" + ns + ":agent"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		s, err := w.Secret(ctx, ns, "src")
		if err != nil {
			return err
		}
		if string(s.Data["username"]) != "u" {
			return fmt.Errorf("data %v", s.Data)
		}
		return nil
	})

	if err := env.Kube.CoreV1().Secrets(ns).Delete(ctx, "src", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, err := w.Secret(ctx, ns, "src"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("after deletion: %w, want NotFound", err)
		}
		return nil
	})

	var other *credentials.NamespaceNotAllowedError
	if _, err := w.Secret(context.Background(), "kube-system", "src"); !errors.As(err, &other) {
		t.Fatalf("another namespace: %v", err)
	}
}
