package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/pullpass/pullpass/pkg/pullfailure"
	"github.com/pullpass/pullpass/webhook/pullwatch"
)

// RecreateAnnotation on a namespace turns the recreation of stuck pods on ("enabled") or off
// ("disabled") there, whatever the chart's default.
const RecreateAnnotation = "pullpass.io/recreate-stuck-pods"

// EventReason is the reason of the event on each pod deleted.
const EventReason = "PullpassRecreated"

// StuckPodsConfig configures StuckPods.
type StuckPodsConfig struct {
	Client kubernetes.Interface
	// Failing lists the containers failing to pull now (the pull watcher's episodes).
	Failing    func() []pullwatch.Episode
	Namespaces corelisters.NamespaceLister
	// Default recreates in every namespace not annotated disabled; otherwise only in namespaces
	// annotated enabled.
	Default  bool
	Recorder record.EventRecorder
	Logger   *slog.Logger
	Deleted  *prometheus.CounterVec // by registry; optional
}

// StuckPods deletes the pods a controller owns that wait in ErrImagePull or ImagePullBackOff on a
// registry that has just verified again, so the controller makes new ones that pull at once
// instead of waiting out the kubelet's back-off (up to 5 minutes). A bare pod is never deleted: no
// one would make it again.
type StuckPods struct {
	cfg StuckPodsConfig
}

// NewStuckPods returns a StuckPods.
func NewStuckPods(cfg StuckPodsConfig) (*StuckPods, error) {
	if cfg.Client == nil || cfg.Failing == nil || cfg.Namespaces == nil || cfg.Recorder == nil {
		return nil, errors.New("invalid configuration: client, failing, namespaces and recorder are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &StuckPods{cfg: cfg}, nil
}

// NewDeletedCounter registers pullpass_stuck_pods_recreated_total on reg.
func NewDeletedCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullpass_stuck_pods_recreated_total",
		Help: "Pods stuck pulling from a registry that verified again, deleted so their controller recreates them (opt-in).",
	}, []string{"registry"})
	return c, reg.Register(c)
}

// fixable are the pull failures a registry that verifies again can end; not_found and other are
// not, and deleting those pods would only start them failing again.
var fixable = map[pullfailure.Reason]bool{pullfailure.Auth: true, pullfailure.RateLimited: true, pullfailure.TLS: true, pullfailure.Network: true}

// Recover deletes the stuck pods of registry, in the namespaces where that is turned on, whose
// failure began before the registry verified at at.
func (s *StuckPods) Recover(ctx context.Context, registry string, at time.Time) {
	done := map[string]bool{}
	for _, e := range s.cfg.Failing() {
		key := e.Namespace + "/" + e.Pod
		if e.Registry != registry || !fixable[e.Reason] || e.Since.After(at) || done[key] || !s.enabled(e.Namespace) {
			continue
		}
		done[key] = true
		if err := s.recreate(ctx, e.Namespace, e.Pod, registry); err != nil {
			s.cfg.Logger.Error("recreating stuck pod", "namespace", e.Namespace, "pod", e.Pod, "registry", registry, "err", err)
		}
	}
}

func (s *StuckPods) enabled(namespace string) bool {
	ns, err := s.cfg.Namespaces.Get(namespace)
	if err != nil {
		return false
	}
	switch ns.Annotations[RecreateAnnotation] {
	case "enabled":
		return true
	case "disabled":
		return false
	}
	return s.cfg.Default
}

func (s *StuckPods) recreate(ctx context.Context, namespace, name, registry string) error {
	api := s.cfg.Client.CoreV1().Pods(namespace)
	pod, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading pod: %w", err)
	}
	owner := metav1.GetControllerOf(pod)
	if owner == nil || pod.DeletionTimestamp != nil || !stuck(pod) {
		return nil // a bare pod, or one already going or no longer stuck
	}
	err = api.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting pod: %w", err)
	}
	s.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, EventReason,
		"Deleted by pullpass so its %s %s makes a new pod now: registry %s accepts its credentials again (the kubelet would have waited out its image pull back-off)",
		owner.Kind, owner.Name, registry)
	if s.cfg.Deleted != nil {
		s.cfg.Deleted.WithLabelValues(registry).Inc()
	}
	s.cfg.Logger.Info("recreated stuck pod", "namespace", namespace, "pod", name, "owner", owner.Kind+"/"+owner.Name, "registry", registry)
	return nil
}

// stuck reports whether a container of the pod waits on a failed pull.
func stuck(p *corev1.Pod) bool {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, c := range list {
			if w := c.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				return true
			}
		}
	}
	return false
}
