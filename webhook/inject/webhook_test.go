package inject_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/slok/kubewebhook/v2/pkg/model"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrytable"
	"github.com/pullpass/pullpass/webhook/inject"
)

func TestWebhookReviewPatches(t *testing.T) {
	rec := newCounting()
	m, err := inject.New(inject.Config{
		Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
		Registries: fakeTable{registrytable.Build([]*v1alpha1.Registry{registry("ghcr", "", nil, "ghcr.io"), registry("hub", "", nil, "docker.io")})},
		Secrets:    &fakeSecrets{}, Metrics: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	wh := inject.Webhook{Mutator: m}
	raw := func(p *corev1.Pod) []byte {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		op   model.AdmissionReviewOp
		obj  []byte
		want string
	}{
		{"no secrets yet: one add of the list", model.OperationCreate, raw(pod(podSpec{containers: []string{"ghcr.io/a/b", "nginx"}})),
			`[{"op":"add","path":"/spec/imagePullSecrets","value":[{"name":"pullpass-ghcr"},{"name":"pullpass-hub"}]}]`},
		{"user's secrets kept: appends", model.OperationCreate, raw(pod(podSpec{containers: []string{"ghcr.io/a/b"}, secrets: []string{"mine"}})),
			`[{"op":"add","path":"/spec/imagePullSecrets/-","value":{"name":"pullpass-ghcr"}}]`},
		{"nothing to add", model.OperationCreate, raw(pod(podSpec{containers: []string{"quay.io/a/b"}})), `[]`},
		{"update", model.OperationUpdate, raw(pod(podSpec{containers: []string{"ghcr.io/a/b"}})), `[]`},
		{"not a pod", model.OperationCreate, []byte(`{"spec":"nope"}`), `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := wh.Review(context.Background(), model.AdmissionReview{ID: "1", Operation: tt.op, Namespace: "team-a", NewObjectRaw: tt.obj})
			if err != nil {
				t.Fatalf("Review: %v", err)
			}
			mr, ok := res.(*model.MutatingAdmissionResponse)
			if !ok || string(mr.JSONPatchPatch) != tt.want {
				t.Fatalf("patch %s, want %s", mr.JSONPatchPatch, tt.want)
			}
		})
	}
	if rec.errors[inject.ErrorDecode] != 1 {
		t.Fatalf("decode errors %v, want 1", rec.errors)
	}
}
