package promconfig

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	yamlv2 "gopkg.in/yaml.v2"
)

var repoRoot = filepath.Join("..", "..", "..")

// As the Prometheus server sets it before it loads a configuration.
func init() { model.NameValidationScheme = model.UTF8Validation }

// render runs `helm template` on the chart (helm pinned in hack/build-tools.sh).
func render(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "hack/build-tools.sh"), "helm").Output()
	if err != nil {
		t.Fatalf("building helm: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	helm := filepath.Join(lines[len(lines)-1], "helm")
	cmd := exec.Command(helm, append([]string{"template", "pullpass", filepath.Join(repoRoot, "charts/pullpass"), "--namespace", "pullpass",
		"--set", "metrics.prometheusRule.enabled=true"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	manifests, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	return manifests
}

// What a target of pullpass's pods becomes after the scrape config's relabeling, for the
// ServiceMonitor (endpoints role) and the PodMonitor (pod role): the same job, node, namespace and
// pod either way, which the alerts and the dashboard select on.
func TestMonitorsLabelTargetsAlike(t *testing.T) {
	pod := func(component, node string) map[string]string {
		return map[string]string{
			"__address__":                                                    "10.0.0.5:8080",
			"__meta_kubernetes_namespace":                                    "pullpass",
			"__meta_kubernetes_pod_name":                                     "pullpass-" + component + "-x1",
			"__meta_kubernetes_pod_container_name":                           component,
			"__meta_kubernetes_pod_node_name":                                node,
			"__meta_kubernetes_pod_phase":                                    "Running",
			"__meta_kubernetes_pod_ready":                                    "true",
			"__meta_kubernetes_pod_label_app_kubernetes_io_name":             "pullpass",
			"__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name":      "true",
			"__meta_kubernetes_pod_label_app_kubernetes_io_instance":         "pullpass",
			"__meta_kubernetes_pod_labelpresent_app_kubernetes_io_instance":  "true",
			"__meta_kubernetes_pod_label_app_kubernetes_io_component":        component,
			"__meta_kubernetes_pod_labelpresent_app_kubernetes_io_component": "true",
			"__meta_kubernetes_pod_container_port_name":                      "metrics",
		}
	}
	viaService := func(component, service string) map[string]string {
		l := pod(component, "node-1")
		for k, v := range map[string]string{
			"__meta_kubernetes_service_name":                                    service,
			"__meta_kubernetes_service_label_app_kubernetes_io_name":            "pullpass",
			"__meta_kubernetes_service_labelpresent_app_kubernetes_io_name":     "true",
			"__meta_kubernetes_service_label_app_kubernetes_io_instance":        "pullpass",
			"__meta_kubernetes_service_labelpresent_app_kubernetes_io_instance": "true",
			"__meta_kubernetes_endpoint_port_name":                              "metrics",
			"__meta_kubernetes_endpoint_address_target_kind":                    "Pod",
			"__meta_kubernetes_endpoint_address_target_name":                    "pullpass-" + component + "-x1",
			"__meta_kubernetes_endpoint_ready":                                  "true",
		} {
			l[k] = v
		}
		return l
	}
	for name, tc := range map[string]struct {
		values  []string
		targets map[string]map[string]string // job -> discovered labels
	}{
		"ServiceMonitor": {[]string{"--set", "metrics.serviceMonitor.enabled=true"}, map[string]map[string]string{
			"pullpass-webhook": viaService("webhook", "pullpass-webhook"),
			"pullpass-agent":   viaService("agent", "pullpass-agent-metrics"),
		}},
		"PodMonitor": {[]string{"--set", "metrics.podMonitor.enabled=true"}, map[string]map[string]string{
			"pullpass-webhook": pod("webhook", "node-1"),
			"pullpass-agent":   pod("agent", "node-1"),
		}},
	} {
		t.Run(name, func(t *testing.T) {
			objs, err := Read(bytes.NewReader(render(t, tc.values...)))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			kubeconfig := filepath.Join(dir, "kubeconfig")
			if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			path, err := Write(Config{OutDir: dir, Kubeconfig: kubeconfig, Version: "v3.5.0", ScrapeInterval: "2s"}, objs)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "kubeconfig_file: "+kubeconfig) {
				t.Errorf("service discovery does not use the kubeconfig:\n%s", data)
			}
			// Kubernetes discovery does not build against the operator's client-go: its section is
			// left out here (promtool checks the whole file in prometheus.sh, with the server's build).
			cfg, err := config.Load(withoutKubernetesSD(t, data), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("Prometheus refuses the generated configuration: %v\n%s", err, data)
			}
			if len(cfg.ScrapeConfigs) != 1 || len(cfg.RuleFiles) != 1 {
				t.Fatalf("%d scrape configs, rule files %v:\n%s", len(cfg.ScrapeConfigs), cfg.RuleFiles, data)
			}
			if rules, _ := filepath.Glob(filepath.Join(dir, "rules", "*.yaml")); len(rules) != 1 {
				t.Fatalf("rule files written: %v", rules)
			}
			sc := cfg.ScrapeConfigs[0]
			if !sc.HonorLabels {
				t.Error("honor_labels is off: pullpass's namespace label would become exported_namespace")
			}
			for job, discovered := range tc.targets {
				lbls := labels.FromMap(discovered)
				lbls = labels.NewBuilder(lbls).Set("job", sc.JobName).Labels()
				got, keep := relabel.Process(lbls, sc.RelabelConfigs...)
				if !keep {
					t.Fatalf("%s: the target is dropped: %v", job, discovered)
				}
				want := map[string]string{"job": job, "node": "node-1", "namespace": "pullpass", "pod": discovered["__meta_kubernetes_pod_name"]}
				for k, v := range want {
					if got.Get(k) != v {
						t.Errorf("%s: label %s = %q, want %q (all: %v)", job, k, got.Get(k), v, got)
					}
				}
			}
		})
	}
}

// A manifest stream may be a List (kubectl get -o yaml) as well as documents (helm template).
func TestReadList(t *testing.T) {
	list := `apiVersion: v1
kind: List
items:
- apiVersion: monitoring.coreos.com/v1
  kind: ServiceMonitor
  metadata: {name: a, namespace: pullpass}
  spec: {selector: {}, endpoints: [{port: metrics}]}
- apiVersion: monitoring.coreos.com/v1
  kind: PrometheusRule
  metadata: {name: a, namespace: pullpass}
  spec: {groups: [{name: g, rules: [{alert: A, expr: up == 0}]}]}
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: pullpass}
`
	objs, err := Read(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.ServiceMonitors) != 1 || len(objs.Rules) != 1 || len(objs.PodMonitors) != 0 {
		t.Fatalf("read %d ServiceMonitors, %d PodMonitors, %d PrometheusRules", len(objs.ServiceMonitors), len(objs.PodMonitors), len(objs.Rules))
	}
	if _, err := Read(strings.NewReader("kind: ServiceMonitor\nspec: [")); err == nil {
		t.Fatal("broken YAML read without an error")
	}
}

func withoutKubernetesSD(t *testing.T, data []byte) string {
	t.Helper()
	var cfg yamlv2.MapSlice
	if err := yamlv2.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, it := range cfg {
		if it.Key != "scrape_configs" {
			continue
		}
		scs := asSlice(it.Value)
		for i, sc := range scs {
			var kept yamlv2.MapSlice
			for _, kv := range sc.(yamlv2.MapSlice) {
				if kv.Key != "kubernetes_sd_configs" {
					kept = append(kept, kv)
				}
			}
			scs[i] = kept
		}
	}
	out, err := yamlv2.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
