package app

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// Token mode against a real API server: the agent, as its ServiceAccount with the chart's RBAC,
// writes the issuer's keys, with which a real TokenRequest token of pullpass's audience verifies
// (and proves its namespace), and a grant whose namespaces follow the namespaces' labels.
func TestTokenModeKeysAndGrantsFollowTheCluster(t *testing.T) {
	env := controlPlane.Env(t)
	if _, err := env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rb := env.Kube.RbacV1()
	// What the chart adds in token mode: namespaces, read.
	create(t, rb.ClusterRoles().Create, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "agent-namespaces"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}}}})
	create(t, rb.ClusterRoleBindings().Create, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent-namespaces"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "agent-namespaces"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: agentUser}}})
	t.Cleanup(func() {
		_ = rb.ClusterRoleBindings().Delete(context.Background(), "agent-namespaces", metav1.DeleteOptions{})
		_ = rb.ClusterRoles().Delete(context.Background(), "agent-namespaces", metav1.DeleteOptions{})
	})
	src := "team-src"
	data, _ := dockerconfig.ForHost("team.example.com", "u", "p").Marshal()
	create(t, env.Kube.CoreV1().Secrets(ns).Create, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: src},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}})
	t.Cleanup(func() { _ = env.Kube.CoreV1().Secrets(ns).Delete(context.Background(), src, metav1.DeleteOptions{}) })
	agentRBAC(t, env)
	startWriter(t, env)

	a := startAgent(t, env, func(o *Options) { o.ServiceAccountTokens, o.NodeName = true, "node-1" })
	allowed := env.Namespace(t, map[string]string{"pullpass.io/team": "yes"})
	other := env.Namespace(t, nil)
	env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "team"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"team.example.com"}, Scope: v1alpha1.ScopeNamespaced, Delivery: v1alpha1.DeliveryNode,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pullpass.io/team": "yes"}},
		Auth:              v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: src}}}})

	grantOf := func() (nodegrant.Grant, error) {
		f, err := nodegrant.Read(nodegrant.Path(a.opts.CachePath))
		if err != nil {
			return nodegrant.Grant{}, err
		}
		for _, g := range f.Grants {
			if g.Registry == "team" {
				return g, nil
			}
		}
		return nodegrant.Grant{}, fmt.Errorf("no grant for team in %v", f.Grants)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		g, err := grantOf()
		if err != nil {
			return err
		}
		if !slices.Contains(g.Namespaces, allowed) || slices.Contains(g.Namespaces, other) || g.Password != "p" {
			return fmt.Errorf("grant namespaces %v", g.Namespaces)
		}
		return nil
	})
	if err := a.serves("team"); err == nil {
		t.Fatal("a Namespaced registry is in the Cluster cache, served to every pod")
	}

	// A real token of the API server, for a service account of the allowed namespace.
	create(t, env.Kube.CoreV1().ServiceAccounts(allowed).Create, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}})
	tr, err := env.Kube.CoreV1().ServiceAccounts(allowed).CreateToken(t.Context(), "builder",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"pullpass.io"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	var keys satoken.Keys
	testenv.Eventually(t, 30*time.Second, func() error {
		keys, err = satoken.ReadKeys(satoken.KeysPath(a.opts.CachePath))
		return err
	})
	if keys.Issuer != env.Config.Host || keys.Node != "node-1" {
		t.Fatalf("keys of issuer %q node %q, want the API server's (%s) and node-1", keys.Issuer, keys.Node, env.Config.Host)
	}
	v, err := satoken.NewVerifier(keys, "pullpass.io")
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tr.Status.Token, time.Now())
	if err != nil || c.Namespace != allowed || c.ServiceAccount != "builder" {
		t.Fatalf("the API server's token: %+v, %v", c, err)
	}
	other2, err := env.Kube.CoreV1().ServiceAccounts(allowed).CreateToken(t.Context(), "builder",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(other2.Status.Token, time.Now()); err == nil {
		t.Fatal("a token for another audience verified")
	}

	// The namespace loses its label: the grant loses the namespace within seconds.
	nsObj, err := env.Kube.CoreV1().Namespaces().Get(t.Context(), allowed, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(nsObj.Labels, "pullpass.io/team")
	if _, err := env.Kube.CoreV1().Namespaces().Update(t.Context(), nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		g, err := grantOf()
		if err != nil {
			return err
		}
		if slices.Contains(g.Namespaces, allowed) {
			return fmt.Errorf("still granted to %s", allowed)
		}
		return nil
	})
}
