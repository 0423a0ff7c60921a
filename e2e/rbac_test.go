//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// canI is one row of what a ServiceAccount may do: `kubectl auth can-i VERB RESOURCE [-n NS]`
// (RESOURCE#status asks for the status subresource).
type canI struct {
	verb, resource, namespace string
	want                      bool
}

// Every ServiceAccount the chart makes may do what it needs and nothing more, as the API server
// decides it (`kubectl auth can-i --as`). The agent's access to Secrets follows the registries
// nodes serve: exactly their sources, never the webhook's TLS Secret.
func TestServiceAccountsMayDoOnlyWhatTheyNeed(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	kubectl := filepath.Join(framework.RepoRoot(), "_output/e2e/bin/kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		kubectl = "kubectl"
	}
	// A node-served registry: its source becomes readable by the agents, and only it.
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
			{"list", "registries.pullpass.io", "", true},
			{"watch", "registries.pullpass.io", "", true},
			{"update", "registries.pullpass.io", "", false},
			{"update", "registries.pullpass.io#status", "", false},
			{"get", "secrets/" + nodeSource, pp, true},
			{"watch", "secrets/" + nodeSource, pp, true},
			{"get", "secrets/" + namespacedSource, pp, false},
			{"get", "secrets/pullpass-webhook-tls", pp, false},
			{"list", "secrets", pp, false},
			{"get", "secrets", "default", false},
			{"update", "secrets/" + nodeSource, pp, false},
			{"watch", "daemonsets.apps/pullpass-agent", pp, true},
			{"get", "daemonsets.apps/other", pp, false},
			{"create", "pods", pp, false},
			{"get", "nodes", "", false},
		},
		"pullpass-webhook": {
			{"list", "registries.pullpass.io", "", true},
			{"update", "registries.pullpass.io#status", "", true},
			{"update", "registries.pullpass.io", "", false},
			{"delete", "registries.pullpass.io", "", false},
			{"create", "secrets", "default", true}, // pull secrets, in any served namespace
			{"update", "secrets", "default", true},
			{"list", "namespaces", "", true},
			{"update", "namespaces", "", false},
			{"list", "pods", "", true}, // the pull failure watcher
			{"create", "pods", "default", false},
			{"update", "leases.coordination.k8s.io/pullpass-keeper", pp, true},
			{"update", "leases.coordination.k8s.io", "kube-system", false},
			{"update", "roles.rbac.authorization.k8s.io/pullpass-agent-sources", pp, true},
			{"update", "roles.rbac.authorization.k8s.io/pullpass-agent", pp, false},
			{"create", "roles.rbac.authorization.k8s.io", pp, false},
			{"create", "rolebindings.rbac.authorization.k8s.io", pp, false},
			{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io/pullpass", "", true},
			{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io/other", "", false},
			{"create", "clusterrolebindings.rbac.authorization.k8s.io", "", false},
		},
	}
	// The leader grants the agents the new source within seconds.
	waitFor(t, 30*time.Second, "the node-served registry's source readable by the agents", func() bool {
		return ask("pullpass-agent", canI{"get", "secrets/" + nodeSource, pp, true})
	})
	for sa, rows := range table {
		for _, q := range rows {
			if got := ask(sa, q); got != q.want {
				t.Errorf("%s: can-i %s %s -n %q = %v, want %v", sa, q.verb, q.resource, q.namespace, got, q.want)
			}
		}
	}
}
