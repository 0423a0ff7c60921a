package nodetaint_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/agent/nodetaint"
	"github.com/pullpass/pullpass/pkg/testenv"
)

const repoRoot = "../.."

// renderChart runs `helm template` on the chart with the startup taint on (helm pinned in
// hack/build-tools.sh, as hack/tools/promconfig runs it).
func renderChart(t *testing.T) [][]byte {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "hack/build-tools.sh"), "helm").Output()
	if err != nil {
		t.Fatalf("building helm: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	helm := filepath.Join(lines[len(lines)-1], "helm")
	cmd := exec.Command(helm, "template", "pullpass", filepath.Join(repoRoot, "charts/pullpass"), "--namespace", "pullpass",
		"--set", "agent.startupTaint=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	manifests, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	return bytes.Split(manifests, []byte("\n---\n"))
}

// The chart's RBAC lets the agent patch any Node; its ValidatingAdmissionPolicy lets the agent
// only take the startup taint off, and change nothing else. Against a real API server, with the
// chart's own ClusterRole and policy.
func TestChartLetsTheAgentOnlyRemoveTheStartupTaint(t *testing.T) {
	env := controlPlane.Env(t)
	ctx := t.Context()
	for _, doc := range renderChart(t) {
		var meta struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case meta.Kind == "ClusterRole" && meta.Metadata.Name == "pullpass-agent":
			var o rbacv1.ClusterRole
			if err = yaml.Unmarshal(doc, &o); err == nil {
				_, err = env.Kube.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
			}
		case meta.Kind == "ClusterRoleBinding" && meta.Metadata.Name == "pullpass-agent":
			var o rbacv1.ClusterRoleBinding
			if err = yaml.Unmarshal(doc, &o); err == nil {
				_, err = env.Kube.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
			}
		case meta.Kind == "ValidatingAdmissionPolicy":
			var o admissionregistrationv1.ValidatingAdmissionPolicy
			if err = yaml.Unmarshal(doc, &o); err == nil {
				_, err = env.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &o, metav1.CreateOptions{})
			}
		case meta.Kind == "ValidatingAdmissionPolicyBinding":
			var o admissionregistrationv1.ValidatingAdmissionPolicyBinding
			if err = yaml.Unmarshal(doc, &o); err == nil {
				_, err = env.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &o, metav1.CreateOptions{})
			}
		}
		if err != nil {
			t.Fatalf("%s %s: %v", meta.Kind, meta.Metadata.Name, err)
		}
	}
	_, err := env.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "policed"},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "example.com/other", Effect: corev1.TaintEffectNoSchedule},
			{Key: nodetaint.Key, Effect: corev1.TaintEffectNoSchedule}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Nodes().Delete(context.Background(), "policed", metav1.DeleteOptions{}) })
	sa, err := env.ServiceAccountConfig("pullpass", "pullpass-agent")
	if err != nil {
		t.Fatal(err)
	}
	agent := kubernetes.NewForConfigOrDie(sa)
	patch := func(p string) error {
		_, err := agent.CoreV1().Nodes().Patch(ctx, "policed", types.JSONPatchType, []byte(p), metav1.PatchOptions{})
		return err
	}
	// The policy takes effect once the API server has loaded it: wait for its first refusal.
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := patch(`[{"op":"add","path":"/metadata/labels","value":{"x":"y"}}]`); !apierrors.IsInvalid(err) {
			return errors.New("a label change by the agent was not refused by the policy: " + errString(err))
		}
		return nil
	})
	for what, p := range map[string]string{
		"another taint removed": `[{"op":"remove","path":"/spec/taints/0"}]`,
		"cordoned":              `[{"op":"add","path":"/spec/unschedulable","value":true}]`,
		"a taint added":         `[{"op":"add","path":"/spec/taints/-","value":{"key":"x","effect":"NoSchedule"}}]`,
	} {
		if err := patch(p); !apierrors.IsInvalid(err) {
			t.Errorf("%s: %v, want the policy's refusal", what, err)
		}
	}
	r, err := nodetaint.New(nodetaint.Config{Kube: agent, Node: "policed", Serving: func() bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Remove(ctx); !ok || err != nil {
		t.Fatalf("the agent could not remove the startup taint: %v", err)
	}
	n, err := env.Kube.CoreV1().Nodes().Get(ctx, "policed", metav1.GetOptions{})
	if err != nil || len(n.Spec.Taints) == 0 || n.Spec.Taints[0].Key != "example.com/other" {
		t.Fatalf("after removal: %v, %v", n.Spec.Taints, err)
	}
	for _, tt := range n.Spec.Taints {
		if tt.Key == nodetaint.Key {
			t.Fatal("the startup taint is still there")
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "allowed"
	}
	return err.Error()
}
