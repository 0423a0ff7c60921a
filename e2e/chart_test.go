//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/e2e/framework"
)

// helm finds the pinned helm the harness built (make deploy), or one on PATH.
func helm(t *testing.T) string { return framework.Helm(t) }

// The chart renders for each important toggle, and the API server accepts what it renders
// (server-side dry run); the schema refuses unknown values.
func TestChartRendersAndTheAPIServerAcceptsIt(t *testing.T) {
	e := framework.Load(t)
	h := helm(t)
	chart := filepath.Join(framework.RepoRoot(), "charts/pullpass")
	kubectl := e.Kubectl()
	if _, err := os.Stat(kubectl); err != nil {
		kubectl = "kubectl"
	}
	scenarios := map[string][]string{
		"defaults":             nil,
		"cluster-wide, Fail":   {"--set", "webhook.clusterWide=true", "--set", "webhook.failurePolicy=Fail"},
		"host network and url": {"-f", filepath.Join(framework.RepoRoot(), "e2e/cluster/values-harness.yaml")},
		"one replica, no PDB":  {"--set", "webhook.replicas=1"},
		"agent on EKS paths": {"--set", "agent.providerConfig=/etc/eks/image-credential-provider/config.json",
			"--set", "agent.providerBinDir=/etc/eks/image-credential-provider"},
		"agent legacy mode": {"--set", "agent.mode=legacy"},
		"no agent":          {"--set", "agent.enabled=false"},
		"network policy": {"--set", "webhook.networkPolicy.enabled=true", "--set", "webhook.networkPolicy.from[0].ipBlock.cidr=10.0.0.0/8",
			"--set", "webhook.networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring"},
		"monitoring": {"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true",
			"--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.dashboard.enabled=true"},
	}
	installMonitoringCRDs(t, kubectl, e.Kubeconfig)
	// Namespaced objects of a dry run need their namespace.
	if out, err := exec.Command(kubectl, "--kubeconfig", e.Kubeconfig, "create", "namespace", "pullpass-chart-test").CombinedOutput(); err != nil && !strings.Contains(string(out), "AlreadyExists") {
		t.Fatalf("creating the namespace: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command(kubectl, "--kubeconfig", e.Kubeconfig, "delete", "namespace", "pullpass-chart-test", "--wait=false").Run()
	})
	for name, args := range scenarios {
		t.Run(name, func(t *testing.T) {
			tmpl := exec.Command(h, append([]string{"template", "chart-test", chart, "--namespace", "pullpass-chart-test"}, args...)...)
			rendered, err := tmpl.Output()
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			s := string(rendered)
			for _, want := range []string{"kind: MutatingWebhookConfiguration", "kind: Deployment", "failurePolicy:", "sideEffects: NoneOnDryRun", "runAsNonRoot: true"} {
				if !strings.Contains(s, want) {
					t.Fatalf("rendered chart lacks %q", want)
				}
			}
			if ds := strings.Contains(s, "kind: DaemonSet"); ds == (name == "no agent") {
				t.Fatalf("agent DaemonSet rendered=%t for %s", ds, name)
			}
			switch name {
			case "monitoring":
				for _, want := range []string{"kind: ServiceMonitor", "kind: PodMonitor", "kind: PrometheusRule", "grafana_dashboard: \"1\"", "PullpassPullAuthFailuresRising", "pullpass_image_pull_failures_total"} {
					if !strings.Contains(s, want) {
						t.Fatalf("monitoring render lacks %q", want)
					}
				}
			case "defaults":
				if strings.Contains(s, "monitoring.coreos.com") || strings.Contains(s, "grafana_dashboard") {
					t.Fatal("monitoring objects rendered by default")
				}
			case "agent on EKS paths":
				// Config and binary share a directory: mounted once, the config merged as a file.
				if strings.Count(s, "path: /etc/eks/image-credential-provider\n") != 1 || !strings.Contains(s, "--provider-config=/etc/eks/image-credential-provider/config.json") {
					t.Fatalf("EKS paths rendered wrong:\n%s", s)
				}
			case "agent legacy mode":
				if !strings.Contains(s, "--kubelet-docker-config=/var/lib/kubelet/config.json") || strings.Contains(s, "--provider-bin-dir") {
					t.Fatal("legacy mode renders provider flags, or no docker config")
				}
			}
			// What the nodes serve, told the keeper and the CLI alike (issue #24).
			delivery := map[string]string{"no agent": "none", "host network and url": "tokens"}[name]
			if delivery == "" {
				delivery = "cluster"
			}
			if !strings.Contains(s, "--node-delivery="+delivery+"\n") || !strings.Contains(s, "name: pullpass-node-delivery\n") ||
				!strings.Contains(s, "\n  mode: "+delivery+"\n") || strings.Contains(s, "--agent-daemonset=") == (name == "no agent") {
				t.Fatalf("node delivery of %s: want %s in --node-delivery and the ConfigMap, --agent-daemonset with the agents", name, delivery)
			}
			// Off by default; on, ingress to the webhook's and the metrics port only, from the peers given.
			if np := strings.Contains(s, "kind: NetworkPolicy"); np != (name == "network policy") {
				t.Fatalf("NetworkPolicy rendered=%t for %s", np, name)
			} else if np && (!strings.Contains(s, "port: 8443\n      from:\n        - ipBlock:\n            cidr: 10.0.0.0/8") ||
				!strings.Contains(s, "port: 8080\n      from:\n        - namespaceSelector:")) {
				t.Fatalf("NetworkPolicy rendered wrong:\n%s", s)
			}
			if pdb := strings.Contains(s, "kind: PodDisruptionBudget"); pdb == (name == "one replica, no PDB" || name == "host network and url") {
				t.Fatalf("PodDisruptionBudget rendered=%t for %s", pdb, name)
			}
			apply := exec.Command(kubectl, "--kubeconfig", e.Kubeconfig, "apply", "--dry-run=server", "-f", "-")
			apply.Stdin = strings.NewReader(s)
			if out, err := apply.CombinedOutput(); err != nil {
				t.Fatalf("the API server refused the rendered chart: %v\n%s", err, out)
			}
		})
	}
	for _, v := range []string{"agent.bogus=1", "agent.mode=sidecar", "agent.cacheDir=relative/dir", "agent.pluginCacheDuration=soon"} {
		if out, err := exec.Command(h, "template", "pullpass", chart, "--set", v).CombinedOutput(); err == nil {
			t.Errorf("the schema accepted %s", v)
		} else if !strings.Contains(string(out), "schema") {
			t.Errorf("%s refused without naming the schema: %s", v, out)
		}
	}
	bad := exec.Command(h, "template", "pullpass", chart, "--set", "webhook.bogus=1")
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "bogus") {
		t.Fatalf("an unknown value was accepted: %v\n%s", err, out)
	}
	// Alert overrides: an alert's for and window change; a name that is no alert is refused.
	rules := []string{"template", "pullpass", chart, "--show-only", "templates/monitoring.yaml", "--set", "metrics.prometheusRule.enabled=true"}
	if out, err := exec.Command(h, append(rules, "--set", "metrics.prometheusRule.alerts.PullpassPulAuthFailing.for=1m")...).CombinedOutput(); err == nil || !strings.Contains(string(out), "no such alert") {
		t.Errorf("an override of an alert that does not exist was accepted: %v\n%s", err, out)
	}
	out, err := exec.Command(h, append(rules, "--set", "metrics.prometheusRule.alerts.PullpassPullAuthFailuresRising.window=2m",
		"--set", "metrics.prometheusRule.alerts.PullpassPullAuthFailing.for=42m")...).Output()
	if err != nil || !strings.Contains(string(out), "for: 42m") || !strings.Contains(string(out), "[2m]") ||
		!strings.Contains(string(out), "offset 2m") || !strings.Contains(string(out), "time() - 120") || strings.Contains(string(out), "offset 15m") {
		t.Errorf("alert overrides not applied: %v\n%s", err, out)
	}
	cm := exec.Command(h, "template", "pullpass", chart, "--set", "webhook.tls.mode=certManager")
	if out, err := cm.CombinedOutput(); err == nil || !strings.Contains(string(out), "certManagerIssuer.name") {
		t.Fatalf("certManager mode without an issuer was accepted: %v\n%s", err, out)
	}
	withIssuer, err := exec.Command(h, "template", "pullpass", chart, "--set", "webhook.tls.mode=certManager", "--set", "webhook.tls.certManagerIssuer.name=ca").Output()
	if err != nil || !strings.Contains(string(withIssuer), "cert-manager.io/inject-ca-from") || !strings.Contains(string(withIssuer), "--tls-cert-file=/tls/tls.crt") {
		t.Fatalf("certManager mode: %v\n%s", err, withIssuer)
	}
}

// installMonitoringCRDs applies the Prometheus Operator's ServiceMonitor, PodMonitor and
// PrometheusRule CRDs (from the operator's module, through the module proxy) so the API server
// can judge the chart's monitoring objects; they are removed after the test unless they were there.
func installMonitoringCRDs(t *testing.T, kubectl, kubeconfig string) {
	t.Helper()
	const module = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
	out, err := exec.Command("go", "mod", "download", "-json", module).Output()
	if err != nil {
		t.Fatalf("downloading %s: %v\n%s", module, err, out)
	}
	var dl struct{ Dir string }
	if err := json.Unmarshal(out, &dl); err != nil || dl.Dir == "" {
		t.Fatalf("go mod download %s: %v\n%s", module, err, out)
	}
	var files []string
	for _, kind := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		files = append(files, "-f", filepath.Join(dl.Dir, "example/prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))
	}
	// The harness installs them with pullpass (deploy.sh), for its Prometheus: those stay.
	installed := exec.Command(kubectl, "--kubeconfig", kubeconfig, "get", "crd", "servicemonitors.monitoring.coreos.com").Run() == nil
	apply := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts"}, files...)...)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("applying the monitoring CRDs: %v\n%s", err, out)
	}
	if !installed {
		t.Cleanup(func() {
			_ = exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "delete", "--wait=false"}, files...)...).Run()
		})
	}
	wait := exec.Command(kubectl, "--kubeconfig", kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
	if out, err := wait.CombinedOutput(); err != nil {
		t.Fatalf("monitoring CRDs not established: %v\n%s", err, out)
	}
}
