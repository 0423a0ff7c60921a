//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodesecret"
)

// canI is one row of what a ServiceAccount may do: `kubectl auth can-i VERB RESOURCE [-n NS]`
// (RESOURCE#status asks for the status subresource).
type canI struct {
	verb, resource, namespace string
	want                      bool
}

// Every ServiceAccount the chart makes may do what it needs and nothing more, as the API server
// decides it (`kubectl auth can-i --as`). The agent reads one kind of Secret whatever Registries
// exist: the node Secret(s) the controller writes what nodes serve into; never a registry's source,
// never the webhook's TLS Secret; and no role of the chart rewrites a Role any more.
func TestServiceAccountsMayDoOnlyWhatTheyNeed(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	kubectl := filepath.Join(framework.RepoRoot(), "_output/e2e/bin/kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		kubectl = "kubectl"
	}
	// A node-served registry: its source stays unreadable by the agents, like any other.
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "rbac-node", Scope: v1alpha1.ScopeCluster, Hosts: []string{"rbac-node.example.com"}})
	nsOnly := e.CreateRegistry(t, framework.RegistryOptions{Name: "rbac-namespaced", Hosts: []string{"rbac-namespaced.example.com"}})
	nodeSource, namespacedSource := reg.Spec.Auth.SecretRef.Name, nsOnly.Spec.Auth.SecretRef.Name
	pp := framework.PullpassNamespace

	ask := func(sa string, q canI) bool {
		args := []string{"--kubeconfig", e.Kubeconfig, "auth", "can-i", q.verb, q.resource, "--as", "system:serviceaccount:" + pp + ":" + sa}
		if r, ok := strings.CutSuffix(q.resource, "#status"); ok {
			args[5] = r
			args = append(args, "--subresource=status")
		}
		if q.namespace != "" {
			args = append(args, "-n", q.namespace)
		}
		out, _ := exec.Command(kubectl, args...).Output() // exit 1 means "no"; warnings go to stderr
		return strings.TrimSpace(string(out)) == "yes"
	}
	table := map[string][]canI{
		"pullpass-agent": {
			// The node Secret carries the registries' specs: no Registry reaches the nodes.
			{"list", "registries.pullpass.io", "", false},
			{"watch", "registries.pullpass.io", "", false},
			{"get", "registries.pullpass.io", "", false},
			{"update", "registries.pullpass.io", "", false},
			{"update", "registries.pullpass.io#status", "", false},
			{"get", "secrets/" + nodesecret.Name, pp, true},
			{"watch", "secrets/" + nodesecret.Name, pp, true},
			{"get", "secrets/" + nodesecret.ShardName(nodesecret.MaxShards-1), pp, true},
			{"get", "secrets/" + nodesecret.ShardName(nodesecret.MaxShards), pp, false},
			{"update", "secrets/" + nodesecret.Name, pp, false},
			{"get", "secrets/" + nodeSource, pp, false},
			{"watch", "secrets/" + nodeSource, pp, false},
			{"get", "secrets/" + namespacedSource, pp, false},
			{"get", "secrets/pullpass-webhook-tls", pp, false},
			{"list", "secrets", pp, false},
			{"get", "secrets", "default", false},
			{"update", "secrets/" + nodeSource, pp, false},
			{"update", "roles.rbac.authorization.k8s.io/pullpass-agent-node-credentials", pp, false},
			{"watch", "daemonsets.apps/pullpass-agent", pp, true},
			{"get", "daemonsets.apps/other", pp, false},
			{"create", "pods", pp, false},
			{"get", "nodes", "", false},
			// Token mode (on in the harness): namespace labels and the issuer's keys.
			{"watch", "namespaces", "", true},
			{"update", "namespaces", "", false},
			{"get", "/openid/v1/jwks", "", true},
			{"create", "serviceaccounts/token", "default", false},
		},
		// Admission only: it reads, and writes pull secrets; no status, no pods, no Lease.
		"pullpass-webhook": {
			{"list", "registries.pullpass.io", "", true},
			{"update", "registries.pullpass.io#status", "", false},
			{"update", "registries.pullpass.io", "", false},
			{"delete", "registries.pullpass.io", "", false},
			{"create", "secrets", "default", true}, // pull secrets, in any served namespace
			{"update", "secrets", "default", true},
			{"delete", "secrets", "default", false},
			{"delete", "secrets/pullpass-webhook-tls", pp, true}, // one of the wrong type is replaced
			{"list", "namespaces", "", true},
			{"update", "namespaces", "", false},
			{"list", "pods", "", false},
			{"list", "events", "", false},
			{"create", "pods", "default", false},
			{"update", "leases.coordination.k8s.io/pullpass-keeper", pp, false},
			{"update", "roles.rbac.authorization.k8s.io/pullpass-agent-node-credentials", pp, false},
			{"create", "roles.rbac.authorization.k8s.io", pp, false},
			{"create", "rolebindings.rbac.authorization.k8s.io", pp, false},
			{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io/pullpass", "", true},
			{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io/other", "", false},
			{"create", "clusterrolebindings.rbac.authorization.k8s.io", "", false},
		},
		// The leader-elected controllers: status, pull secrets kept and deleted (and the node
		// Secret written), the pull watcher, stuck pods, the Lease; no Role, never the webhook's
		// configuration.
		"pullpass-controller": {
			{"list", "registries.pullpass.io", "", true},
			{"update", "registries.pullpass.io#status", "", true},
			{"update", "registries.pullpass.io", "", false},
			{"delete", "registries.pullpass.io", "", false},
			{"update", "secrets", "default", true},
			{"delete", "secrets", "default", true}, // pull secrets no registry serves any more
			{"list", "namespaces", "", true},
			{"update", "namespaces", "", false},
			{"list", "pods", "", true},          // the pull failure watcher
			{"delete", "pods", "default", true}, // stuck pods, where asked for
			{"create", "pods", "default", false},
			{"create", "events", "default", true},
			{"update", "leases.coordination.k8s.io/pullpass-keeper", pp, true},
			{"update", "leases.coordination.k8s.io", "kube-system", false},
			{"update", "secrets/" + nodesecret.Name, pp, true},
			{"update", "roles.rbac.authorization.k8s.io/pullpass-agent-node-credentials", pp, false},
			// The agents' DaemonSet alone: its ready pods count the nodes serving (Served).
			{"watch", "daemonsets.apps/pullpass-agent", pp, true},
			{"update", "daemonsets.apps/pullpass-agent", pp, false},
			{"get", "daemonsets.apps/other", pp, false},
			{"update", "roles.rbac.authorization.k8s.io/pullpass-agent", pp, false},
			{"create", "roles.rbac.authorization.k8s.io", pp, false},
			{"create", "rolebindings.rbac.authorization.k8s.io", pp, false},
			{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io/pullpass", "", false},
			{"create", "clusterrolebindings.rbac.authorization.k8s.io", "", false},
		},
	}
	// What a Registry names is never granted, however long after it appears: were a Role still
	// rewritten per source, its source would be readable within seconds.
	time.Sleep(5 * time.Second)
	for sa, rows := range table {
		for _, q := range rows {
			if got := ask(sa, q); got != q.want {
				t.Errorf("%s: can-i %s %s -n %q = %v, want %v", sa, q.verb, q.resource, q.namespace, got, q.want)
			}
		}
	}
}

// Nodes may ask for pods' service account tokens of pullpass's audience and of no other
// (ServiceAccountNodeAudienceRestriction, enforced by NodeRestriction): the chart grants the
// audience to system:nodes, as the API server checks it (SubjectAccessReview).
func TestNodesMayRequestPullpassTokenAudienceOnly(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	ask := func(audience string) bool {
		r, err := e.Kube.AuthorizationV1().SubjectAccessReviews().Create(framework.Context(t, time.Minute), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User: "system:node:" + e.NodeName, Groups: []string{"system:nodes", "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "request-serviceaccounts-token-audience", Resource: audience, Namespace: "default", Name: "default"},
			}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	if !ask("pullpass.io") {
		t.Error("nodes may not ask for tokens of pullpass.io: the kubelet cannot hand the plugin a token")
	}
	for _, other := range []string{"vault", "sts.amazonaws.com", "https://kubernetes.default.svc.cluster.local"} {
		if ask(other) {
			t.Errorf("nodes may ask for tokens of audience %q", other)
		}
	}
}

// Writing a Registry is an administrator's of the whole cluster: a Cluster-scope pull-through
// cache rewrites the images of every served namespace, and a Registry chooses which credentials go
// to which hosts. No ServiceAccount of the chart may write one, nor a namespace's admin or editor
// (the built-in roles, with whatever the chart aggregates into them); and no Registry may make
// pullpass's own Secrets a source (issue #24).
func TestOnlyClusterAdminsWriteRegistries(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	kubectl := filepath.Join(framework.RepoRoot(), "_output/e2e/bin/kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		kubectl = "kubectl"
	}
	ctx := framework.Context(t, time.Minute)
	ns := e.Namespace(t, "tenant-admin", nil)
	for _, role := range []string{"admin", "edit"} {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-tenant-" + role, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "e2e-tenant-" + role}},
		}
		if _, err := e.Kube.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ask := func(as, verb, resource, namespace string) string {
		args := []string{"--kubeconfig", e.Kubeconfig, "auth", "can-i", verb, resource, "--as", as}
		if namespace != "" {
			args = append(args, "-n", namespace)
		}
		out, _ := exec.Command(kubectl, args...).Output()
		return strings.TrimSpace(string(out))
	}
	pp := framework.PullpassNamespace
	subjects := []string{"e2e-tenant-admin", "e2e-tenant-edit",
		"system:serviceaccount:" + pp + ":pullpass-webhook", "system:serviceaccount:" + pp + ":pullpass-controller",
		"system:serviceaccount:" + pp + ":pullpass-agent"}
	for _, as := range subjects {
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			for _, namespace := range []string{"", ns} {
				if got := ask(as, verb, "registries.pullpass.io", namespace); got != "no" {
					t.Errorf("%s: can-i %s registries.pullpass.io (-n %q) = %q, want no", as, verb, namespace, got)
				}
			}
		}
	}
	// The tenant's admin can do what a namespace admin does: the question above was asked right.
	if got := ask("e2e-tenant-admin", "create", "secrets", ns); got != "yes" {
		t.Fatalf("the tenant admin cannot create secrets in its namespace (%q): the RoleBinding did not take", got)
	}

	// pullpass's own Secrets are never a source: the API server refuses such a Registry (and the
	// controller would write nothing of one into the node Secret).
	for _, source := range []string{"pullpass-webhook-tls", "pullpass-images"} {
		reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "e2e-own-source"}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{"own-source.example.com"}, Scope: v1alpha1.ScopeCluster,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: source, Namespace: pp}},
		}}
		if _, err := e.Registries.Create(ctx, reg, metav1.CreateOptions{}); err == nil {
			_ = e.Registries.Delete(ctx, reg.Name, metav1.DeleteOptions{})
			t.Errorf("a Registry whose source is pullpass's own Secret %s was accepted", source)
		}
	}
	if got := ask("system:serviceaccount:"+pp+":pullpass-agent", "get", "secrets/pullpass-webhook-tls", pp); got != "no" {
		t.Errorf("the agents can read the webhook's TLS Secret: %q", got)
	}
}
