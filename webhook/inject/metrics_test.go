package inject_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kwhprometheus "github.com/slok/kubewebhook/v2/pkg/metrics/prometheus"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"

	"github.com/pullpass/pullpass/webhook/inject"
)

// Reviews in a thousand namespaces make one histogram, not a thousand.
func TestWithoutNamespaceKeepsOneSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec, err := kwhprometheus.NewRecorder(kwhprometheus.RecorderConfig{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	r := inject.WithoutNamespace(rec)
	for i := 0; i < 1000; i++ {
		common := kwhwebhook.MeasureOpCommonData{WebhookID: "pullpass-inject", ResourceNamespace: "team-" + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			ResourceKind: "v1/Pod", Duration: time.Millisecond, Success: true}
		r.MeasureMutatingWebhookReviewOp(context.Background(), kwhwebhook.MeasureMutatingOpData{MeasureOpCommonData: common, Mutated: true})
		r.MeasureValidatingWebhookReviewOp(context.Background(), kwhwebhook.MeasureValidatingOpData{MeasureOpCommonData: common, Allowed: true})
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) == 0 {
		t.Fatal("nothing recorded")
	}
	for _, mf := range mfs {
		if n := len(mf.GetMetric()); n != 1 {
			t.Errorf("%s has %d series, want 1", mf.GetName(), n)
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "resource_namespace" && l.GetValue() != "" {
					t.Errorf("%s is labelled with namespace %q", mf.GetName(), l.GetValue())
				}
			}
			if h := m.GetHistogram(); h != nil && h.GetSampleCount() != 1000 {
				t.Errorf("%s counted %d reviews, want 1000", mf.GetName(), h.GetSampleCount())
			}
		}
	}
}
