package inject_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/slok/kubewebhook/v2/pkg/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

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
		{"init and ephemeral containers' images", model.OperationCreate, raw(pod(podSpec{init: []string{"ghcr.io/a/init"}, containers: []string{"quay.io/a/b"}, ephemeral: []string{"busybox"}})),
			`[{"op":"add","path":"/spec/imagePullSecrets","value":[{"name":"pullpass-ghcr"},{"name":"pullpass-hub"}]}]`},
		{"pod opted out", model.OperationCreate, raw(pod(podSpec{containers: []string{"ghcr.io/a/b"}, annotations: map[string]string{inject.Annotation: inject.Disabled}})), `[]`},
		{"a whole pod, most of it never read", model.OperationCreate, raw(wholePod("ghcr.io/a/b")),
			`[{"op":"add","path":"/spec/imagePullSecrets","value":[{"name":"pullpass-ghcr"}]}]`},
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

// wholePod is a pod as a Deployment writes it, with what the webhook decodes for nothing.
func wholePod(img string) *corev1.Pod {
	p := pod(podSpec{containers: []string{img}})
	c := &p.Spec.Containers[0]
	c.Env = []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
	c.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}, Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Labels = map[string]string{"app": "a"}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "a-1", UID: "u"}}
	return p
}
