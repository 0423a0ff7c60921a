package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	kindv1alpha4 "sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/e2e/framework"
)

// kind.yaml is run by make kind-up (e2e/kind); what is checked here, without a cluster: it decodes
// strictly with kind's own types, it has a control plane and two workers, every node's kubelet
// gets both credential provider flags with the dirs mounted where the flags point, and no two
// nodes share a host directory (each node has its own provider config and pullpass cache).
func TestKindConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "kind.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cluster kindv1alpha4.Cluster
	if err := yaml.UnmarshalStrict(data, &cluster); err != nil {
		t.Fatalf("kind.yaml does not decode strictly as kind's v1alpha4.Cluster: %v", err)
	}
	if cluster.Kind != "Cluster" || cluster.APIVersion != "kind.x-k8s.io/v1alpha4" {
		t.Fatalf("kind %q apiVersion %q", cluster.Kind, cluster.APIVersion)
	}
	if len(cluster.ContainerdConfigPatches) == 0 || !strings.Contains(cluster.ContainerdConfigPatches[0], `config_path = "/etc/containerd/certs.d"`) {
		t.Fatal("containerd is not pointed at /etc/containerd/certs.d for registry trust")
	}
	roles := map[kindv1alpha4.NodeRole]int{}
	hostPaths := map[string]int{}
	for i, n := range cluster.Nodes {
		roles[n.Role]++
		for _, m := range n.ExtraMounts {
			if j, ok := hostPaths[m.HostPath]; ok {
				t.Fatalf("nodes %d and %d share the host directory %s", j, i, m.HostPath)
			}
			hostPaths[m.HostPath] = i
		}
	}
	if roles[kindv1alpha4.ControlPlaneRole] != 1 || roles[kindv1alpha4.WorkerRole] != 2 {
		t.Fatalf("nodes by role %v, want one control plane and two workers", roles)
	}
	for i, n := range cluster.Nodes {
		mounted := map[string]bool{}
		for _, m := range n.ExtraMounts {
			mounted[m.ContainerPath] = true
		}
		// Every kubeadm version's patch for this node's role must carry both flags into a mounted dir.
		versions := map[string]bool{}
		for _, p := range n.KubeadmConfigPatches {
			var patch struct {
				APIVersion       string `json:"apiVersion"`
				Kind             string `json:"kind"`
				NodeRegistration struct {
					KubeletExtraArgs any `json:"kubeletExtraArgs"`
				} `json:"nodeRegistration"`
			}
			if err := yaml.UnmarshalStrict([]byte(p), &patch); err != nil {
				t.Fatalf("node %d: a kubeadm patch does not decode: %v\n%s", i, err, p)
			}
			args := kubeletArgs(t, patch.NodeRegistration.KubeletExtraArgs)
			for _, flag := range []string{"image-credential-provider-config", "image-credential-provider-bin-dir"} {
				dir := args[flag]
				if dir == "" {
					t.Fatalf("node %d: %s %s lacks --%s", i, patch.APIVersion, patch.Kind, flag)
				}
				if !mounted[filepath.Dir(dir)] && !mounted[dir] {
					t.Fatalf("node %d: --%s=%s is not in a mounted dir (mounts %v)", i, flag, dir, n.ExtraMounts)
				}
			}
			versions[patch.APIVersion+" "+patch.Kind] = true
		}
		for _, want := range []string{"kubeadm.k8s.io/v1beta3 InitConfiguration", "kubeadm.k8s.io/v1beta3 JoinConfiguration", "kubeadm.k8s.io/v1beta4 InitConfiguration", "kubeadm.k8s.io/v1beta4 JoinConfiguration"} {
			if !versions[want] {
				t.Fatalf("node %d has no %s patch", i, want)
			}
		}
	}
}

// kubeletArgs reads kubeletExtraArgs in either form: a map (v1beta3) or a name/value list (v1beta4).
func kubeletArgs(t *testing.T, v any) map[string]string {
	out := map[string]string{}
	switch a := v.(type) {
	case map[string]any:
		for k, val := range a {
			out[k], _ = val.(string)
		}
	case []any:
		for _, item := range a {
			m, _ := item.(map[string]any)
			name, _ := m["name"].(string)
			out[name], _ = m["value"].(string)
		}
	default:
		t.Fatalf("kubeletExtraArgs of type %T", v)
	}
	return out
}
