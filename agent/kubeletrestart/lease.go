package kubeletrestart

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// LeaseLock is a Lock on a coordination.k8s.io Lease: one holder at a time, renewed while held,
// given back when released. A holder that dies stops renewing: once the Lease was not renewed for
// its duration, as timed by the waiting agent's own clock (clocks of two nodes are never
// compared), another takes it. The API server's optimistic concurrency (resourceVersion)
// decides between two agents taking it at once.
type LeaseLock struct {
	Kube      kubernetes.Interface
	Namespace string
	Name      string // default pullpass-kubelet-restart
	Identity  string // the node's name
	// Duration is how long a Lease not renewed blocks the others (default 60 s); it is
	// renewed every third of it.
	Duration time.Duration
	// Retry is how often a waiting agent looks again (default 2 s).
	Retry time.Duration
}

// Acquire takes the Lease, waiting while another holds it.
func (l *LeaseLock) Acquire(ctx context.Context) (func(context.Context), error) {
	l.defaults()
	var seen observed
	for {
		ok, err := l.try(ctx, &seen)
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the Lease %s/%s: %w (held by %s)", l.Namespace, l.Name, ctx.Err(), seen.holder)
		case <-time.After(l.Retry):
		}
	}
	renewCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.renew(renewCtx) }()
	var once sync.Once
	return func(ctx context.Context) {
		once.Do(func() {
			stop()
			wg.Wait()
			l.release(ctx)
		})
	}, nil
}

// observed is the Lease as a waiting agent last saw it, and when, by its own clock.
type observed struct {
	holder, renew string
	since         time.Time
}

func (l *LeaseLock) defaults() {
	if l.Name == "" {
		l.Name = "pullpass-kubelet-restart"
	}
	if l.Duration == 0 {
		l.Duration = time.Minute
	}
	if l.Retry == 0 {
		l.Retry = 2 * time.Second
	}
}

// try takes the Lease if it is free, ours, or expired.
func (l *LeaseLock) try(ctx context.Context, seen *observed) (bool, error) {
	api := l.Kube.CoordinationV1().Leases(l.Namespace)
	now := metav1.NewMicroTime(time.Now())
	lease, err := api.Get(ctx, l.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: l.Name, Namespace: l.Namespace},
			Spec:       l.spec(now),
		}, metav1.CreateOptions{})
		return err == nil, err
	}
	if err != nil {
		return false, err
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	renew := ""
	if lease.Spec.RenewTime != nil {
		renew = lease.Spec.RenewTime.String()
	}
	if holder != "" && holder != l.Identity {
		if seen.holder != holder || seen.renew != renew {
			*seen = observed{holder: holder, renew: renew, since: time.Now()}
			return false, nil
		}
		if time.Since(seen.since) < l.Duration {
			return false, nil
		}
		// Not renewed for a whole duration by our clock: the holder is gone.
	}
	lease.Spec = l.spec(now)
	_, err = api.Update(ctx, lease, metav1.UpdateOptions{})
	return err == nil, err
}

func (l *LeaseLock) spec(now metav1.MicroTime) coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity: ptr.To(l.Identity), LeaseDurationSeconds: ptr.To(int32(max(1, l.Duration/time.Second))),
		AcquireTime: &now, RenewTime: &now,
	}
}

func (l *LeaseLock) renew(ctx context.Context) {
	api := l.Kube.CoordinationV1().Leases(l.Namespace)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.Duration / 3):
		}
		lease, err := api.Get(ctx, l.Name, metav1.GetOptions{})
		if err != nil || ptr.Deref(lease.Spec.HolderIdentity, "") != l.Identity {
			continue
		}
		lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
		_, _ = api.Update(ctx, lease, metav1.UpdateOptions{})
	}
}

// release frees the Lease if it is still ours.
func (l *LeaseLock) release(ctx context.Context) {
	api := l.Kube.CoordinationV1().Leases(l.Namespace)
	for range 3 {
		lease, err := api.Get(ctx, l.Name, metav1.GetOptions{})
		if err != nil || ptr.Deref(lease.Spec.HolderIdentity, "") != l.Identity {
			return
		}
		lease.Spec.HolderIdentity, lease.Spec.RenewTime = nil, nil
		_, err = api.Update(ctx, lease, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		return
	}
}
