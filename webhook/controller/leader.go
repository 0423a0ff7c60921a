package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrLeadershipLost is what Run returns when another replica took the Lease: the process exits
// and restarts, so no state of this term outlives it.
var ErrLeadershipLost = errors.New("leadership lost")

// election is one replica standing for the Lease once.
type election struct {
	kube                kubernetes.Interface
	namespace, name, id string
	lease, renew, retry time.Duration
	log                 *slog.Logger
}

func newElection(kube kubernetes.Interface, o *Options, log *slog.Logger) *election {
	host, _ := os.Hostname()
	return &election{
		kube: kube, namespace: o.Namespace, name: o.LeaseName, id: host + "_" + rand.String(6),
		lease: o.LeaseDuration, renew: o.RenewDeadline, retry: o.RetryPeriod, log: log,
	}
}

// run waits for the Lease, then runs lead while holding it. It returns when ctx ends (nil, the
// Lease released), when lead returns (its error), or when the Lease is lost (ErrLeadershipLost);
// in every case after lead returned. lead is told when another holder was last seen renewing the
// Lease (zero: none was seen): what that leader did before then is done.
func (e *election) run(ctx context.Context, lead func(ctx context.Context, previousLeaderSeen time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	standby := e.watchOthers(ctx)
	var (
		leadErr error
		led     sync.WaitGroup
		mu      sync.Mutex
		over    bool // elector.Run returned: a term starting now has nothing to lead
	)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: e.namespace, Name: e.name},
			Client:     e.kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.id},
		},
		LeaseDuration: e.lease, RenewDeadline: e.renew, RetryPeriod: e.retry,
		ReleaseOnCancel: true,
		Name:            e.name,
		Callbacks: leaderelection.LeaderCallbacks{
			// client-go runs this in a goroutine it does not wait for: led waits for it.
			OnStartedLeading: func(lctx context.Context) {
				mu.Lock()
				if over {
					mu.Unlock()
					return
				}
				led.Add(1)
				mu.Unlock()
				defer led.Done()
				seen := standby.stop()
				e.log.Info("leading", "lease", e.namespace+"/"+e.name, "identity", e.id, "previousLeaderSeen", seen)
				if err := lead(lctx, seen); err != nil && lctx.Err() == nil {
					leadErr = err
					cancel() // gives the Lease up: another replica leads while this one restarts
				}
			},
			OnStoppedLeading: func() { e.log.Info("no longer leading", "identity", e.id) },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	elector.Run(ctx) // returns when the Lease is lost or ctx ends, and cancels lead's context
	mu.Lock()
	over = true
	mu.Unlock()
	led.Wait()
	switch {
	case leadErr != nil:
		return leadErr
	case ctx.Err() != nil:
		return nil
	}
	return ErrLeadershipLost
}

// others notes the last renewal of whoever else holds the Lease while this replica stands by.
type others struct {
	mu       sync.Mutex
	lastSeen time.Time
	done     chan struct{}
	stopOnce sync.Once
}

// stop ends the watch and returns the last renewal seen.
func (o *others) stop() time.Time {
	o.stopOnce.Do(func() { close(o.done) })
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastSeen
}

func (e *election) watchOthers(ctx context.Context) *others {
	o := &others{done: make(chan struct{})}
	go func() {
		t := time.NewTicker(e.retry)
		defer t.Stop()
		for {
			if l, err := e.kube.CoordinationV1().Leases(e.namespace).Get(ctx, e.name, metav1.GetOptions{}); err == nil &&
				l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != e.id && *l.Spec.HolderIdentity != "" && l.Spec.RenewTime != nil {
				o.mu.Lock()
				if l.Spec.RenewTime.After(o.lastSeen) {
					o.lastSeen = l.Spec.RenewTime.Time
				}
				o.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-o.done:
				return
			case <-t.C:
			}
		}
	}()
	return o
}
