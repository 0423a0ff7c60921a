package inject

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	corev1 "k8s.io/api/core/v1"
)

// Webhook is the kubewebhook Webhook that serves the Mutator. kubewebhook's generic mutating
// webhook finds its JSON patch by re-encoding the whole pod and diffing it with the request,
// which more than doubled the cost of a review (docs/benchmarks.md); pullpass only ever appends
// to spec.imagePullSecrets, replaces images it routes through a pull-through cache and sets one
// annotation, so this one writes that patch directly.
type Webhook struct {
	Mutator *Mutator
}

var _ kwhwebhook.Webhook = Webhook{}

// ID implements kubewebhook's Webhook.
func (Webhook) ID() string { return "pullpass-inject" }

// Kind implements kubewebhook's Webhook.
func (Webhook) Kind() model.WebhookKind { return model.WebhookKindMutating }

// Review implements kubewebhook's Webhook. It never denies: a pod it cannot read or serve is
// admitted unchanged.
func (w Webhook) Review(ctx context.Context, ar model.AdmissionReview) (model.AdmissionResponse, error) {
	unchanged := &model.MutatingAdmissionResponse{ID: ar.ID, JSONPatchPatch: []byte("[]")}
	if ar.Operation == model.OperationUpdate && subResource(ar) == "ephemeralcontainers" {
		return w.reviewEphemeral(ctx, ar, unchanged)
	}
	if ar.Operation != model.OperationCreate {
		return unchanged, nil
	}
	var in admittedPod
	if err := json.Unmarshal(ar.NewObjectRaw, &in); err != nil {
		w.Mutator.cfg.Metrics.Error(ErrorDecode)
		w.Mutator.cfg.Logger.Error("admitting an object that is not a pod unchanged", "uid", ar.ID, "err", err)
		return unchanged, nil
	}
	pod := in.pod()
	// The secrets and annotations as they were: Plan changes only the pod's images.
	have, annotations := pod.Spec.ImagePullSecrets, pod.Annotations
	add, rw := w.Mutator.Plan(ctx, &ar, pod)
	if len(add) == 0 && len(rw) == 0 {
		return unchanged, nil
	}
	if len(rw) == 0 {
		patch, err := Patch(have, add)
		if err != nil {
			return nil, fmt.Errorf("encoding the patch: %w", err)
		}
		return &model.MutatingAdmissionResponse{ID: ar.ID, JSONPatchPatch: patch}, nil
	}
	patch := make([]byte, 0, 512*len(rw)+128*len(add))
	patch = appendRewriteOps(append(patch, '['), rw, annotations, true)
	if len(add) > 0 {
		secrets, err := Patch(have, add)
		if err != nil {
			return nil, fmt.Errorf("encoding the patch: %w", err)
		}
		patch = append(append(patch, ','), secrets[1:len(secrets)-1]...) // the operations, out of their array
	}
	return &model.MutatingAdmissionResponse{ID: ar.ID, JSONPatchPatch: append(patch, ']')}, nil
}

// reviewEphemeral serves an update of the pods/ephemeralcontainers subresource: only the images
// of the ephemeral containers it adds may change.
func (w Webhook) reviewEphemeral(ctx context.Context, ar model.AdmissionReview, unchanged model.AdmissionResponse) (model.AdmissionResponse, error) {
	var pod, old corev1.Pod
	err := json.Unmarshal(ar.NewObjectRaw, &pod)
	if err == nil {
		err = json.Unmarshal(ar.OldObjectRaw, &old)
	}
	if err != nil {
		w.Mutator.cfg.Metrics.Error(ErrorDecode)
		w.Mutator.cfg.Logger.Error("admitting ephemeral containers unchanged: the pods do not decode", "uid", ar.ID, "err", err)
		return unchanged, nil
	}
	rw := w.Mutator.PlanEphemeral(ctx, &ar, &pod, &old)
	if len(rw) == 0 {
		return unchanged, nil
	}
	patch := appendRewriteOps([]byte{'['}, rw, nil, false)
	return &model.MutatingAdmissionResponse{ID: ar.ID, JSONPatchPatch: append(patch, ']')}, nil
}

// subResource is the review's subresource ("" for the pod itself).
func subResource(ar model.AdmissionReview) string {
	switch r := ar.OriginalAdmissionReview.(type) {
	case *admissionv1.AdmissionReview:
		if r.Request != nil {
			return r.Request.SubResource
		}
	case *admissionv1beta1.AdmissionReview:
		if r.Request != nil {
			return r.Request.SubResource
		}
	}
	return ""
}

// admittedPod is what Plan reads of a pod. Decoding just this skips what real pods are mostly
// made of (env, resources, probes, volumes): decoding a whole corev1.Pod was most of the cost
// of a review.
type admittedPod struct {
	Metadata struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Namespace    string            `json:"namespace"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		InitContainers      []containerImage              `json:"initContainers"`
		Containers          []containerImage              `json:"containers"`
		EphemeralContainers []containerImage              `json:"ephemeralContainers"`
		ImagePullSecrets    []corev1.LocalObjectReference `json:"imagePullSecrets"`
	} `json:"spec"`
}

type containerImage struct {
	Name  string `json:"name"` // the pull-through annotation names containers
	Image string `json:"image"`
}

// pod is the pod as Plan sees it: only the fields it reads are set.
func (a *admittedPod) pod() *corev1.Pod {
	p := &corev1.Pod{}
	p.Name, p.GenerateName, p.Namespace, p.Annotations = a.Metadata.Name, a.Metadata.GenerateName, a.Metadata.Namespace, a.Metadata.Annotations
	p.Spec.ImagePullSecrets = a.Spec.ImagePullSecrets
	p.Spec.InitContainers, p.Spec.Containers = containers(a.Spec.InitContainers), containers(a.Spec.Containers)
	if n := len(a.Spec.EphemeralContainers); n > 0 {
		p.Spec.EphemeralContainers = make([]corev1.EphemeralContainer, n)
		for i, c := range a.Spec.EphemeralContainers {
			p.Spec.EphemeralContainers[i].Name, p.Spec.EphemeralContainers[i].Image = c.Name, c.Image
		}
	}
	return p
}

func containers(in []containerImage) []corev1.Container {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i, c := range in {
		out[i].Name, out[i].Image = c.Name, c.Image
	}
	return out
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Patch is the JSON patch that appends add to a pod whose pull secrets are have.
func Patch(have, add []corev1.LocalObjectReference) ([]byte, error) {
	if len(have) == 0 {
		return json.Marshal([]patchOp{{Op: "add", Path: "/spec/imagePullSecrets", Value: add}})
	}
	ops := make([]patchOp, len(add))
	for i, s := range add {
		ops[i] = patchOp{Op: "add", Path: "/spec/imagePullSecrets/-", Value: s}
	}
	return json.Marshal(ops)
}
