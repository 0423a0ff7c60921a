// Package promconfig writes what a Prometheus managed by the Prometheus Operator would run, from
// the ServiceMonitor, PodMonitor and PrometheusRule objects it is given: the scrape configuration
// comes from the operator's own generator (pkg/prometheus), the rule files from each
// PrometheusRule's spec. The Prometheus it is for runs outside the cluster, so its Kubernetes
// service discovery reads the API server through a kubeconfig.
package promconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus-operator/prometheus-operator/pkg/assets"
	"github.com/prometheus-operator/prometheus-operator/pkg/operator"
	prompkg "github.com/prometheus-operator/prometheus-operator/pkg/prometheus"
	yamlv2 "gopkg.in/yaml.v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Config says what to write.
type Config struct {
	// Kubeconfig is the file Prometheus's Kubernetes service discovery reads the API server with.
	Kubeconfig string
	// Version of the Prometheus that runs the configuration ("v2.42.0"): the generator writes only
	// what that version reads.
	Version            string
	ScrapeInterval     string // default 30s, as the operator's
	EvaluationInterval string // default 30s
	// OutDir receives prometheus.yml and rules/<namespace>-<name>.yaml.
	OutDir string
}

// Objects are the operator objects read from manifests.
type Objects struct {
	ServiceMonitors map[string]*monitoringv1.ServiceMonitor
	PodMonitors     map[string]*monitoringv1.PodMonitor
	Rules           map[string]*monitoringv1.PrometheusRule
}

// Read decodes a YAML or JSON stream: several documents (helm template) or a List (kubectl get
// -o yaml). Objects of other kinds are ignored.
func Read(r io.Reader) (Objects, error) {
	objs := Objects{ServiceMonitors: map[string]*monitoringv1.ServiceMonitor{}, PodMonitors: map[string]*monitoringv1.PodMonitor{}, Rules: map[string]*monitoringv1.PrometheusRule{}}
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return objs, fmt.Errorf("decoding manifests: %w", err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue
		}
		if err := objs.add(raw); err != nil {
			return objs, err
		}
	}
}

func (o Objects) add(raw json.RawMessage) error {
	var head struct {
		metav1.TypeMeta
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return fmt.Errorf("decoding an object: %w", err)
	}
	into := func(v interface{ GetNamespace() string }) error {
		return json.Unmarshal(raw, v)
	}
	switch head.Kind {
	case "List", "ServiceMonitorList", "PodMonitorList", "PrometheusRuleList":
		for _, it := range head.Items {
			if err := o.add(it); err != nil {
				return err
			}
		}
	case monitoringv1.ServiceMonitorsKind:
		sm := &monitoringv1.ServiceMonitor{}
		if err := into(sm); err != nil {
			return fmt.Errorf("ServiceMonitor: %w", err)
		}
		o.ServiceMonitors[key(sm.ObjectMeta)] = sm
	case monitoringv1.PodMonitorsKind:
		pm := &monitoringv1.PodMonitor{}
		if err := into(pm); err != nil {
			return fmt.Errorf("PodMonitor: %w", err)
		}
		o.PodMonitors[key(pm.ObjectMeta)] = pm
	case monitoringv1.PrometheusRuleKind:
		pr := &monitoringv1.PrometheusRule{}
		if err := into(pr); err != nil {
			return fmt.Errorf("PrometheusRule: %w", err)
		}
		o.Rules[key(pr.ObjectMeta)] = pr
	}
	return nil
}

// key is how the operator keys its objects.
func key(m metav1.ObjectMeta) string { return m.Namespace + "/" + m.Name }

// Write writes OutDir/prometheus.yml and one rule file per PrometheusRule, and returns the
// configuration's path.
func Write(c Config, objs Objects) (string, error) {
	if c.OutDir == "" || c.Kubeconfig == "" || c.Version == "" {
		return "", errors.New("invalid configuration: OutDir, Kubeconfig and Version are required")
	}
	cfg, err := Generate(c, objs)
	if err != nil {
		return "", err
	}
	rulesDir := filepath.Join(c.OutDir, "rules")
	if err := os.RemoveAll(rulesDir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		return "", err
	}
	for k, pr := range objs.Rules {
		if errs := operator.ValidateRule(pr.Spec); len(errs) > 0 {
			return "", fmt.Errorf("PrometheusRule %s: %w", k, errors.Join(errs...))
		}
		// What the operator puts in the rule ConfigMap: the spec, as a Prometheus rule file.
		data, err := yaml.Marshal(pr.Spec)
		if err != nil {
			return "", err
		}
		if err := writeFile(filepath.Join(rulesDir, pr.Namespace+"-"+pr.Name+".yaml"), data); err != nil {
			return "", err
		}
	}
	path := filepath.Join(c.OutDir, "prometheus.yml")
	return path, writeFile(path, cfg)
}

// writeFile replaces a file at once: Prometheus may be reading it.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Generate returns the Prometheus configuration: the operator's, with service discovery through
// c.Kubeconfig and the rule files of c.OutDir.
func Generate(c Config, objs Objects) ([]byte, error) {
	p := &monitoringv1.Prometheus{ObjectMeta: metav1.ObjectMeta{Name: "pullpass-e2e", Namespace: "monitoring"}}
	p.Spec.Version = c.Version
	p.Spec.ScrapeInterval = monitoringv1.Duration(or(c.ScrapeInterval, "30s"))
	p.Spec.EvaluationInterval = monitoringv1.Duration(or(c.EvaluationInterval, "30s"))
	cg, err := prompkg.NewConfigGenerator(slog.New(slog.DiscardHandler), p)
	if err != nil {
		return nil, err
	}
	out, err := cg.GenerateServerConfiguration(p, objs.ServiceMonitors, objs.PodMonitors, nil, nil,
		assets.NewStoreBuilder(nil, nil), nil, nil, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("the operator's generator: %w", err)
	}
	var cfg yamlv2.MapSlice
	if err := yamlv2.Unmarshal(out, &cfg); err != nil {
		return nil, err
	}
	for i := range cfg {
		if cfg[i].Key != "scrape_configs" {
			continue
		}
		for _, sc := range asSlice(cfg[i].Value) {
			sds := asSlice(get(sc, "kubernetes_sd_configs"))
			for j := range sds {
				// The slice shares its array with the configuration: this changes it in place.
				sds[j] = append(sds[j].(yamlv2.MapSlice), yamlv2.MapItem{Key: "kubeconfig_file", Value: c.Kubeconfig})
			}
		}
	}
	if len(objs.Rules) > 0 {
		cfg = append(cfg, yamlv2.MapItem{Key: "rule_files", Value: []string{filepath.Join(c.OutDir, "rules", "*.yaml")}})
	}
	out, err = yamlv2.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	// What the operator's config reloader does before Prometheus reads the file: expand the
	// pod's variables (one shard, the first).
	return []byte(strings.NewReplacer("$(SHARD)", "0", "$(POD_NAME)", "prometheus-pullpass-e2e-0").Replace(string(out))), nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Helpers over yaml.v2's generic values, which the generator's output decodes into.

func asSlice(v interface{}) []interface{} {
	s, _ := v.([]interface{})
	return s
}

func get(m interface{}, k string) interface{} {
	ms, _ := m.(yamlv2.MapSlice)
	for _, it := range ms {
		if it.Key == k {
			return it.Value
		}
	}
	return nil
}
