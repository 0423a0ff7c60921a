package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

const nodeRegistriesYAML = `apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: team}
spec:
  hosts: ["ghcr.io/team"]
  delivery: Node
  namespaceSelector: {matchLabels: {team: shop}}
  serviceAccounts: {names: [builder], annotated: true}
  auth: {secretRef: {name: team, namespace: pullpass}}
---
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: ghcr}
spec:
  hosts: ["ghcr.io"]
  auth: {secretRef: {name: ghcr, namespace: pullpass}}
---
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: everyone}
spec:
  hosts: ["quay.io"]
  scope: Cluster
  auth: {secretRef: {name: q, namespace: pullpass}}
---
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: ecr}
spec:
  hosts: ["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]
  delivery: Node
  auth: {ecr: {}}
`

func TestExplainForAPodOffline(t *testing.T) {
	file := writeFile(t, nodeRegistriesYAML)
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"selected namespace, named service account", []string{"ghcr.io/team/app", "-n", "shop", "--service-account", "builder", "--namespace-labels", "team=shop"}, 0,
			[]string{"node: team (pattern ghcr.io/team), to this namespace and service account only", "not given: ghcr (pattern ghcr.io): it is delivered as a pull secret"}},
		{"annotated service account", []string{"ghcr.io/team/app", "-n", "shop", "--namespace-labels", "team=shop", "--service-account-annotation", "pullpass.io/registries=other,team"}, 0,
			[]string{"service account: default\n", "node: team (pattern ghcr.io/team)"}},
		{"service account not allowed", []string{"ghcr.io/team/app", "-n", "shop", "--service-account", "web", "--namespace-labels", "team=shop"}, 1,
			[]string{"not given: team (pattern ghcr.io/team): it is given to service accounts builder,annotated only, and web is neither named nor annotated", "served: nothing"}},
		{"namespace not selected", []string{"ghcr.io/team/app", "-n", "web", "--service-account", "builder"}, 1,
			[]string{"not given: team (pattern ghcr.io/team): its namespaceSelector (team=shop) does not select namespace web"}},
		{"Cluster registries serve every pod", []string{"quay.io/x/y", "-n", "web"}, 0, []string{"node: everyone (pattern quay.io), to every pod (Cluster)"}},
		{"ECR role of the service account", []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", "-n", "web", "--service-account-annotation", "eks.amazonaws.com/ecr-role-arn=arn:aws:iam::123456789012:role/puller"}, 0,
			[]string{"node: ecr", "ecr role: arn:aws:iam::123456789012:role/puller"}},
		{"bad pairs", []string{"quay.io/x", "-n", "web", "--namespace-labels", "team"}, 2, nil},
		{"service account without namespace", []string{"quay.io/x", "--service-account", "web"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runOffline(t, append([]string{"explain", "--registries", file}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)\n%s", code, tt.code, errOut, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// From the cluster: the namespace's labels and the service account's annotations are read.
func TestExplainForAPodInTheCluster(t *testing.T) {
	regs := newFakeRegistries()
	parsed, err := ParseRegistries([]byte(nodeRegistriesYAML))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range parsed {
		if _, err := regs.Create(context.Background(), r, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kube := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "shop"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: map[string]string{"pullpass.io/registries": "team"}}},
	)
	var out, errOut bytes.Buffer
	o := &options{streams: Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, clients: &Clients{Kube: kube, Registries: regs}}
	if code := runWith(context.Background(), "pullpass", []string{"explain", "ghcr.io/team/app", "-n", "shop", "--service-account", "web"}, o); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut.String(), out.String())
	}
	if !strings.Contains(out.String(), "node: team (pattern ghcr.io/team)") {
		t.Fatalf("stdout:\n%s", out.String())
	}
	out.Reset()
	if code := runWith(context.Background(), "pullpass", []string{"explain", "ghcr.io/team/app", "-n", "shop", "--service-account", "ghost"}, o); code != 1 ||
		!strings.Contains(out.String(), "ghost (not found") {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
}

func TestExplainSaysNodeDelivery(t *testing.T) {
	code, out, _ := runOffline(t, "explain", "--registries", writeFile(t, nodeRegistriesYAML), "ghcr.io/team/app")
	if code != 0 || !strings.Contains(out, "served: by the node agents, with no pull secret, only to pods of the namespaces it selects") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
