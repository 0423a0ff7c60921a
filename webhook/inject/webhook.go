package inject

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	corev1 "k8s.io/api/core/v1"
)

// Webhook is the kubewebhook Webhook that serves the Mutator. kubewebhook's generic mutating
// webhook finds its JSON patch by re-encoding the whole pod and diffing it with the request,
// which more than doubled the cost of a review (docs/benchmarks.md); pullpass only ever appends
// to spec.imagePullSecrets, so this one writes that patch directly.
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
	add := w.Mutator.Plan(ctx, &ar, pod)
	if len(add) == 0 {
		return unchanged, nil
	}
	patch, err := Patch(pod.Spec.ImagePullSecrets, add)
	if err != nil {
		return nil, fmt.Errorf("encoding the patch: %w", err)
	}
	return &model.MutatingAdmissionResponse{ID: ar.ID, JSONPatchPatch: patch}, nil
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
			p.Spec.EphemeralContainers[i].Image = c.Image
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
		out[i].Image = c.Image
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
