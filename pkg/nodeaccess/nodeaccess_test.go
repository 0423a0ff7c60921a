package nodeaccess_test

import (
	"context"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodeaccess"
)

type regs []*v1alpha1.Registry

func (r regs) List() []*v1alpha1.Registry { return r }

func registry(name string, scope v1alpha1.Scope, auth v1alpha1.RegistryAuth) *v1alpha1.Registry {
	return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{Hosts: []string{name + ".io"}, Scope: scope, Auth: auth}}
}

func ref(ns, name string) *v1alpha1.SecretReference {
	return &v1alpha1.SecretReference{Namespace: ns, Name: name}
}

var table = regs{
	registry("a", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{SecretRef: ref("pullpass", "src-a")}),
	registry("b", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: *ref("pullpass", "hub")}}),
	registry("c", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: ref("pullpass", "aws-keys")}}),
	registry("d", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{SecretRef: ref("pullpass", "src-a")}), // shared source
	registry("e", v1alpha1.ScopeNamespaced, v1alpha1.RegistryAuth{SecretRef: ref("pullpass", "namespaced-only")}),
	registry("f", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{SecretRef: ref("elsewhere", "not-ours")}),
	registry("g", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{}}), // default chain: no Secret
	nodeDelivered(registry("h", v1alpha1.ScopeNamespaced, v1alpha1.RegistryAuth{SecretRef: ref("pullpass", "per-namespace")})),
}

// nodeDelivered is a Namespaced registry the node serves to the namespaces it selects.
func nodeDelivered(r *v1alpha1.Registry) *v1alpha1.Registry {
	r.Spec.Delivery = v1alpha1.DeliveryNode
	return r
}

func TestSourceSecretsAreExactlyWhatNodesServe(t *testing.T) {
	got := nodeaccess.SourceSecrets(table, "pullpass")
	want := []string{"aws-keys", "hub", "per-namespace", "src-a"}
	if !slices.Equal(got, want) {
		t.Fatalf("SourceSecrets = %v, want %v", got, want)
	}
	if r := nodeaccess.Rules(nil); r != nil {
		t.Fatalf("Rules(nil) = %v: a rule without resourceNames grants every Secret", r)
	}
}

func TestRoleKeeperWritesOnlyOnChange(t *testing.T) {
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "pullpass", Name: "agent-sources"}}
	client := fake.NewClientset(role)
	k, err := nodeaccess.NewRoleKeeper(nodeaccess.RoleKeeperConfig{Client: client, Namespace: "pullpass", RoleName: "agent-sources", Registries: table})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		if err := k.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	updates := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" {
			updates++
		}
	}
	if updates != 1 {
		t.Fatalf("%d updates, want 1 (the second sync has nothing to change)", updates)
	}
	got, _ := client.RbacV1().Roles("pullpass").Get(ctx, "agent-sources", metav1.GetOptions{})
	if len(got.Rules) != 1 || !slices.Equal(got.Rules[0].ResourceNames, []string{"aws-keys", "hub", "per-namespace", "src-a"}) ||
		!slices.Equal(got.Rules[0].Verbs, []string{"get", "list", "watch"}) {
		t.Fatalf("rules %+v", got.Rules)
	}

	// Every node-served registry goes: the rule goes with it, not left naming nothing.
	k2, _ := nodeaccess.NewRoleKeeper(nodeaccess.RoleKeeperConfig{Client: client, Namespace: "pullpass", RoleName: "agent-sources", Registries: regs{}})
	if err := k2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = client.RbacV1().Roles("pullpass").Get(ctx, "agent-sources", metav1.GetOptions{})
	if len(got.Rules) != 0 {
		t.Fatalf("rules %+v with no node-served registry", got.Rules)
	}
}

// A node-served Registry naming one of pullpass's own Secrets never gets it into the agents'
// Role: the webhook's TLS Secret holds the CA key that would let a node serve as the webhook,
// and pull secrets hold other registries' credentials.
func TestRoleNeverGrantsPullpassOwnSecrets(t *testing.T) {
	own := regs{
		registry("a", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{SecretRef: ref("pullpass", "src-a")}),
		registry("tls", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{SecretRef: ref("pullpass", "pullpass-webhook-tls")}),
		registry("hub", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: *ref("pullpass", "pullpass-webhook-tls")}}),
		nodeDelivered(registry("keys", v1alpha1.ScopeNamespaced, v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: ref("pullpass", "pullpass-webhook-tls")}})),
		registry("pull", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{SecretRef: ref("pullpass", "pullpass-a")}),
		registry("renamed", v1alpha1.ScopeCluster, v1alpha1.RegistryAuth{SecretRef: ref("pullpass", "webhook-cert")}),
	}
	if got := nodeaccess.SourceSecrets(own, "pullpass"); !slices.Equal(got, []string{"src-a", "webhook-cert"}) {
		t.Fatalf("SourceSecrets = %v, want [src-a webhook-cert]: no pullpass- name", got)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "pullpass", Name: "agent-sources"}}
	client := fake.NewClientset(role)
	// The webhook's TLS Secret under another name (--tls-secret-name) is left out by name.
	k, err := nodeaccess.NewRoleKeeper(nodeaccess.RoleKeeperConfig{Client: client, Namespace: "pullpass", RoleName: "agent-sources",
		Registries: own, Reserved: []string{"webhook-cert"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := client.RbacV1().Roles("pullpass").Get(context.Background(), "agent-sources", metav1.GetOptions{})
	if len(got.Rules) != 1 || !slices.Equal(got.Rules[0].ResourceNames, []string{"src-a"}) {
		t.Fatalf("rules %+v, want only src-a", got.Rules)
	}
}
