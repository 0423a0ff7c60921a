package testenv

import (
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ParseMetrics reads a Prometheus text exposition, as a /metrics endpoint serves it, by metric
// family.
func ParseMetrics(text string) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(text))
}

// MetricValue sums the series of family name whose labels include labels, a label a series lacks
// reading as "" (as in PromQL): the tests count over whichever other labels the server adds. A
// histogram or summary counts its observations. ok is false when no series matches.
func MetricValue(families map[string]*dto.MetricFamily, name string, labels map[string]string) (sum float64, ok bool) {
	for _, m := range families[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		case m.Histogram != nil: // an integer count or a float one, the other unset
			sum += float64(m.GetHistogram().GetSampleCount()) + m.GetHistogram().GetSampleCountFloat()
		case m.Summary != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		}
	}
	return sum, ok
}
