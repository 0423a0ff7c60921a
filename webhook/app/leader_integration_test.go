package app

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// A term whose work ends slowly (a keeper finishing its writes) and leadership won back at once:
// the next term begins only after the last one's work returned, never beside it. Against a real
// API server: client-go's elector renews optimistically, which only an API server that checks
// resourceVersions refuses.
func TestLeaderTermsNeverOverlap(t *testing.T) {
	env := controlPlane.Env(t)
	kube, leaseNS := env.Kube, env.Namespace(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running, overlaps, terms, lost atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		runLeader(ctx, kube, leaseNS, "pullpass-keeper", slog.New(slog.DiscardHandler), func(ctx context.Context, _ time.Time) {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			terms.Add(1)
			<-ctx.Done()
			lost.Add(1)
			time.Sleep(2 * leaderTimings.lease) // longer than it takes to win the Lease back
			running.Add(-1)
		})
	}()
	waitUntil(t, 10*time.Second, "the first term", func() bool { return terms.Load() == 1 })

	// Another holder takes the Lease for a moment, then lets it go.
	leases := kube.CoordinationV1().Leases(leaseNS)
	setHolder := func(holder string, seconds int32) {
		t.Helper()
		// The elector renews every half second: a conflict is only its write in between.
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			l, err := leases.Get(ctx, "pullpass-keeper", metav1.GetOptions{})
			if err != nil {
				return err
			}
			l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds = &holder, &seconds
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	setHolder("someone-else", 3600)
	waitUntil(t, 10*time.Second, "the first term lost", func() bool { return lost.Load() == 1 })
	if running.Load() != 1 {
		t.Fatal("the first term's work returned early: the test proves nothing")
	}
	setHolder("", 1) // released
	waitUntil(t, 30*time.Second, "a second term", func() bool { return terms.Load() == 2 })
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d terms began while the last one's work was still running", n)
	}
	cancel()
	<-done
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
