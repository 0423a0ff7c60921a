package nodecreds

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	watchapi "k8s.io/apimachinery/pkg/watch"
)

func shardOf(size int) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pullpass-node-credentials"}, Data: map[string][]byte{"r": []byte(strings.Repeat("x", size))}}
}

// A watch goes on through creations, small rewrites and bookmarks, and ends once it has
// delivered a large rewrite, stopping the stream under it.
func TestWatchIsReleasedAfterALargeRewrite(t *testing.T) {
	inner := watchapi.NewFake()
	w := releaseAfterLargeRewrite(inner, 1000)
	next := func(want watchapi.EventType) {
		t.Helper()
		select {
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type != want {
				t.Fatalf("got %v (open %v), want a %s event", ev.Type, ok, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	go func() {
		inner.Add(shardOf(5000))  // a watch-list's initial event, or a creation: not released
		inner.Modify(shardOf(10)) // small
		inner.Action(watchapi.Bookmark, &corev1.Secret{})
		inner.Modify(shardOf(1000)) // large: delivered, then released
	}()
	next(watchapi.Added)
	next(watchapi.Modified)
	next(watchapi.Bookmark)
	next(watchapi.Modified)
	select {
	case ev, ok := <-w.ResultChan():
		if ok {
			t.Fatalf("got %v after the large rewrite, want the watch closed", ev.Type)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch is still open after a large rewrite")
	}
	if !inner.IsStopped() {
		t.Fatal("the stream under the watch is not stopped")
	}
	w.Stop() // the reflector stops it too: no panic
}

// Stop ends the watch and the stream under it, also while an event waits to be delivered.
func TestReleasingWatchStops(t *testing.T) {
	inner := watchapi.NewFakeWithChanSize(1, false)
	w := releaseAfterLargeRewrite(inner, 1000)
	inner.Modify(shardOf(10)) // taken by the watch, or not yet: both must end cleanly
	w.Stop()
	w.Stop()
	for range w.ResultChan() {
	}
	if !inner.IsStopped() {
		t.Fatal("the stream under the watch is not stopped")
	}
}

// The informer's resync hands the same shard again: no sync for it.
func TestResyncIsNoRewrite(t *testing.T) {
	shard := func(rv string) any {
		s, _ := stripShard(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "pullpass", Name: "n", ResourceVersion: rv}})
		return s
	}
	for _, c := range []struct {
		old, updated any
		want         bool
	}{{shard("7"), shard("7"), false}, {shard("7"), shard("8"), true}, {shard(""), shard(""), true}, {"not an object", shard("7"), true}} {
		if got := rewritten(c.old, c.updated); got != c.want {
			t.Fatalf("rewritten(%v, %v) = %v, want %v", c.old, c.updated, got, c.want)
		}
	}
}
