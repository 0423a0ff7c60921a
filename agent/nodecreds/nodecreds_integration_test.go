package nodecreds_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/agent/nodecreds"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/nodesecret"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// The reader against a real API server: informers narrowed to a name by a field selector, as the
// agents' Role allows.
var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

const ns = "pullpass"

func staticRegistry(name, src string) *v1alpha1.Registry {
	return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{name + ".example.com"}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: src}}}}
}

// nodeSecret is a shard as the controller writes it (the first says its format).
func nodeSecret(name string, entries map[string]nodesecret.Entry) *corev1.Secret {
	data := map[string][]byte{}
	if name == nodesecret.Name {
		data[nodesecret.FormatKey] = []byte(nodesecret.FormatVersion)
	}
	for k, e := range entries {
		data[k] = nodesecret.Encode(e)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: nodesecret.Labels()}, Data: data}
}

// started runs a Reader over a fresh namespace holding objs (as pullpass's) until the test
// ends, synced.
func started(t *testing.T, objs ...*corev1.Secret) (*nodecreds.Reader, kubernetes.Interface) {
	t.Helper()
	return startedWith(t, controlPlane.Env(t).Kube, objs...)
}

// startedWith is started with the reader's own client.
func startedWith(t *testing.T, client kubernetes.Interface, objs ...*corev1.Secret) (*nodecreds.Reader, kubernetes.Interface) {
	t.Helper()
	controlPlane.Env(t).EnsureNamespace(t, ns)
	for _, name := range nodesecret.ShardNames() {
		_ = client.CoreV1().Secrets(ns).Delete(t.Context(), name, metav1.DeleteOptions{})
	}
	for _, o := range objs {
		if _, err := client.CoreV1().Secrets(ns).Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := nodecreds.New(nodecreds.Config{Client: client, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.Run(ctx)
	wait, done := context.WithTimeout(t.Context(), 10*time.Second)
	defer done()
	if !cache.WaitForCacheSync(wait.Done(), r.HasSynced) {
		t.Fatal("the reader did not sync")
	}
	return r, client
}

func resolver(r *nodecreds.Reader) *nodecreds.Resolver {
	return nodecreds.NewResolver(r, func(context.Context, ecr.ClientConfig) (ecr.API, error) {
		return nil, errors.New("no ECR in this test")
	}, "")
}

// Not listed yet, or not written yet by the controller: not readable (the last good stays),
// never gone.
func TestNodeSecretNotThereIsNotReadable(t *testing.T) {
	r, err := nodecreds.New(nodecreds.Config{Client: controlPlane.Env(t).Kube, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	_, err = resolver(r).Resolve(t.Context(), staticRegistry("app", "app-src"))
	if !credentials.Unavailable(err) {
		t.Fatalf("before any list: %v, want an unavailable error", err)
	}
	r, _ = started(t)
	_, err = resolver(r).Resolve(t.Context(), staticRegistry("app", "app-src"))
	if !credentials.Unavailable(err) {
		t.Fatalf("node secret not written: %v, want an unavailable error", err)
	}
}

// Static credentials come from the entry; a registry with no entry in a node Secret that is
// there has none (its source is gone or refused), which withdraws them.
func TestStaticCredentialsFromTheEntry(t *testing.T) {
	r, _ := started(t, nodeSecret(nodesecret.Name, map[string]nodesecret.Entry{
		"app": {Username: "u", Password: "p", Source: nodesecret.SourceRef{Namespace: ns, Name: "app-src"}, Version: "secret/3", Generation: 1}}),
		nodeSecret(nodesecret.ShardName(2), map[string]nodesecret.Entry{
			"far": {Username: "f", Password: "q", Source: nodesecret.SourceRef{Namespace: ns, Name: "far-src"}}}))
	x := resolver(r)
	c, err := x.Resolve(t.Context(), staticRegistry("app", "app-src"))
	if err != nil || c.Username != "u" || c.Password != "p" || c.Version != "secret/3" {
		t.Fatalf("Resolve(app) = %v, %v; want u/p of secret/3", c, err)
	}
	if c, err := x.Resolve(t.Context(), staticRegistry("far", "far-src")); err != nil || c.Password != "q" {
		t.Fatalf("Resolve(far), in shard 2 = %v, %v", c, err)
	}
	_, err = x.Resolve(t.Context(), staticRegistry("gone", "gone-src"))
	if !errors.Is(err, nodecreds.ErrNoEntry) || credentials.Unavailable(err) {
		t.Fatalf("Resolve(gone) = %v, want ErrNoEntry, not unavailable", err)
	}
	// The Registry now names another source: the controller has not caught up yet.
	_, err = x.Resolve(t.Context(), staticRegistry("app", "new-src"))
	if !credentials.Unavailable(err) {
		t.Fatalf("Resolve(app from new-src) = %v, want unavailable", err)
	}
	// The Registry's spec changed (its hosts, say) since the entry was written: the same.
	changed := staticRegistry("app", "app-src")
	changed.Generation = 2
	_, err = x.Resolve(t.Context(), changed)
	if !credentials.Unavailable(err) {
		t.Fatalf("Resolve(app of generation 2, entry of 1) = %v, want unavailable", err)
	}
}

// An entry changes: the next read has it.
func TestEntryFollowsTheNodeSecret(t *testing.T) {
	r, client := started(t, nodeSecret(nodesecret.Name, map[string]nodesecret.Entry{
		"app": {Username: "u", Password: "p1", Source: nodesecret.SourceRef{Namespace: ns, Name: "app-src"}}}))
	x := resolver(r)
	if _, err := x.Resolve(t.Context(), staticRegistry("app", "app-src")); err != nil {
		t.Fatal(err)
	}
	s, err := client.CoreV1().Secrets(ns).Get(t.Context(), nodesecret.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["app"] = nodesecret.Encode(nodesecret.Entry{Username: "u", Password: "p2", Source: nodesecret.SourceRef{Namespace: ns, Name: "app-src"}})
	if _, err := client.CoreV1().Secrets(ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Poll(t, 10*time.Second, 20*time.Millisecond, func() error {
		c, err := x.Resolve(t.Context(), staticRegistry("app", "app-src"))
		if err == nil && c.Password == "p2" {
			return nil
		}
		if err != nil {
			return fmt.Errorf("Resolve: %w", err)
		}
		return fmt.Errorf("Resolve = %v; want p2", c)
	})
}

// An ECR registry's keys come from its entry, as a Secret of its source.
func TestAWSKeysAsTheirSource(t *testing.T) {
	r, _ := started(t, nodeSecret(nodesecret.Name, map[string]nodesecret.Entry{
		"ecr": {AWS: &nodesecret.AWSKeys{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s"}, Source: nodesecret.SourceRef{Namespace: ns, Name: "keys"}, Version: "9"}}))
	s, err := r.Secret(t.Context(), ns, "keys")
	if err != nil || string(s.Data["aws_access_key_id"]) != "AKIAEXAMPLE" || string(s.Data["aws_secret_access_key"]) != "s" || s.ResourceVersion != "9" {
		t.Fatalf("Secret(keys) = %v, %v", s, err)
	}
	if _, err := r.Secret(t.Context(), ns, "other"); !apierrors.IsNotFound(err) {
		t.Fatalf("Secret(other) = %v, want not found", err)
	}
	var nsErr *credentials.NamespaceNotAllowedError
	if _, err := r.Secret(t.Context(), "elsewhere", "keys"); !errors.As(err, &nsErr) {
		t.Fatalf("Secret(elsewhere/keys) = %v, want a namespace refusal", err)
	}
}

// The registries the node serves are the node Secret's entries, with their specs, across shards:
// one with no credentials is listed (the agent reports it unserved) and has ErrNoEntry; a node
// Secret written by an older controller (no format key, entries without specs) is not readable,
// not empty.
func TestListIsTheNodeSecretsRegistries(t *testing.T) {
	app, far, gone := staticRegistry("app", "app-src"), staticRegistry("far", "far-src"), staticRegistry("gone", "gone-src")
	r, client := started(t, nodeSecret(nodesecret.Name, map[string]nodesecret.Entry{
		"app":  {Spec: &app.Spec, Generation: 1, Username: "u", Password: "p", Source: nodesecret.SourceRef{Namespace: ns, Name: "app-src"}},
		"gone": {Spec: &gone.Spec, Generation: 1}}),
		nodeSecret(nodesecret.ShardName(1), map[string]nodesecret.Entry{
			"far": {Spec: &far.Spec, Generation: 1, Username: "f", Password: "q", Source: nodesecret.SourceRef{Namespace: ns, Name: "far-src"}}}))
	regs, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, reg := range regs {
		names = append(names, reg.Name)
		if reg.Generation != 1 || len(reg.Spec.Hosts) != 1 || reg.Spec.Hosts[0] != reg.Name+".example.com" {
			t.Errorf("listed %s at generation %d for %v, want generation 1 for %s.example.com", reg.Name, reg.Generation, reg.Spec.Hosts, reg.Name)
		}
	}
	if !slices.Equal(names, []string{"app", "far", "gone"}) {
		t.Fatalf("List() = %v, want app, far and gone", names)
	}
	x := resolver(r)
	for _, reg := range regs {
		c, err := x.Resolve(t.Context(), reg)
		switch reg.Name {
		case "gone":
			if !errors.Is(err, nodecreds.ErrNoEntry) || credentials.Unavailable(err) {
				t.Errorf("Resolve(gone) = %v, want ErrNoEntry", err)
			}
		default:
			if err != nil || c.Username == "" {
				t.Errorf("Resolve(%s) = %v, %v", reg.Name, c, err)
			}
		}
	}
	s, err := client.CoreV1().Secrets(ns).Get(t.Context(), nodesecret.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// An older controller, elected during a roll, rewrites the shard from its own entries: no
	// format key, no specs.
	delete(s.Data, nodesecret.FormatKey)
	s.Data["old"] = nodesecret.Encode(nodesecret.Entry{Username: "o", Password: "p", Source: nodesecret.SourceRef{Namespace: ns, Name: "old-src"}})
	if _, err := client.CoreV1().Secrets(ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Poll(t, 10*time.Second, 20*time.Millisecond, func() error {
		last, err := r.List()
		switch {
		case err == nil:
			return errors.New("List() with an entry of an older controller succeeded, want not readable")
		case !credentials.Unavailable(err):
			return fmt.Errorf("List() with an entry of an older controller: %w, want not readable", err)
		case len(last) != 3:
			return fmt.Errorf("List() with an entry of an older controller gave %d registries, want the 3 last listed", len(last))
		}
		return nil
	})
}

// A node Secret an older controller wrote with no entry at all (no format key) is not readable,
// not "no registries": the node keeps what it serves until this version's controller writes.
func TestEmptyNodeSecretOfAnOlderControllerIsNotReadable(t *testing.T) {
	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: nodesecret.Name, Labels: nodesecret.Labels()}}
	r, client := started(t, old)
	if regs, err := r.List(); !credentials.Unavailable(err) || regs != nil {
		t.Fatalf("List() = %v, %v; want not readable and no registries", regs, err)
	}
	s, err := client.CoreV1().Secrets(ns).Get(t.Context(), nodesecret.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{nodesecret.FormatKey: []byte(nodesecret.FormatVersion)}
	if _, err := client.CoreV1().Secrets(ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Poll(t, 10*time.Second, 20*time.Millisecond, func() error {
		regs, err := r.List()
		if err != nil {
			return fmt.Errorf("List(): %w; want no registries", err)
		}
		if len(regs) != 0 {
			return fmt.Errorf("List() = %v; want no registries", regs)
		}
		return nil
	})
}

// A shard past 64 KiB is watched again after each rewrite, on a new stream (whose decoder does
// not keep the size of that rewrite): the reader follows every rewrite still, and opened a watch
// of the shard again after each.
func TestReaderFollowsRewritesOfALargeShard(t *testing.T) {
	entries := map[string]nodesecret.Entry{}
	for i := range 300 {
		reg := staticRegistry(fmt.Sprintf("r%03d", i), fmt.Sprintf("r%03d-src", i))
		entries[reg.Name] = nodesecret.Entry{Spec: &reg.Spec, Generation: 1, Username: "u", Password: strings.Repeat("p", 200),
			Source: nodesecret.SourceRef{Namespace: ns, Name: reg.Name + "-src"}}
	}
	env := controlPlane.Env(t)
	var watches atomic.Int32 // the reader's watch requests of the first shard
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			q := req.URL.Query()
			if q.Get("watch") == "true" && strings.Contains(q.Get("fieldSelector"), "="+nodesecret.Name) && !strings.Contains(q.Get("fieldSelector"), nodesecret.Name+"-") {
				watches.Add(1)
			}
			return rt.RoundTrip(req)
		})
	})
	counted, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, client := startedWith(t, counted, nodeSecret(nodesecret.Name, entries))
	before := watches.Load()
	x := resolver(r)
	for round := range 3 {
		s, err := client.CoreV1().Secrets(ns).Get(t.Context(), nodesecret.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e := entries["r000"]
		e.Password = fmt.Sprintf("round-%d", round)
		s.Data["r000"] = nodesecret.Encode(e)
		if _, err := client.CoreV1().Secrets(ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		testenv.Poll(t, 10*time.Second, 20*time.Millisecond, func() error {
			c, err := x.Resolve(t.Context(), staticRegistry("r000", "r000-src"))
			if err == nil && c.Password != e.Password {
				err = fmt.Errorf("password %q, want %q", c.Password, e.Password)
			}
			return err
		})
	}
	testenv.Poll(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := watches.Load() - before; n < 3 {
			return fmt.Errorf("the reader watched the shard again %d times after 3 large rewrites, want 3", n)
		}
		return nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// During the first write of this version's controller, shard 0 is rewritten before the others,
// which still hold an older controller's entries (no spec): not readable, not "those registries
// are gone".
func TestShardOfAnOlderControllerIsNotReadable(t *testing.T) {
	app := staticRegistry("app", "app-src")
	r, _ := started(t, nodeSecret(nodesecret.Name, map[string]nodesecret.Entry{
		"app": {Spec: &app.Spec, Generation: 1, Username: "u", Password: "p", Source: nodesecret.SourceRef{Namespace: ns, Name: "app-src"}}}),
		nodeSecret(nodesecret.ShardName(1), map[string]nodesecret.Entry{
			"old": {Username: "o", Password: "q", Source: nodesecret.SourceRef{Namespace: ns, Name: "old-src"}}}))
	if regs, err := r.List(); !credentials.Unavailable(err) {
		t.Fatalf("List() = %v, %v; want not readable", regs, err)
	}
}
