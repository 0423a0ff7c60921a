package registrywatch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrywatch"
	"github.com/pullpass/pullpass/pkg/testenv"
)

var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

func registry(name string, hosts ...string) *v1alpha1.Registry {
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.RegistrySpec{
			Hosts: hosts,
			Auth:  v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: name, Namespace: "pullpass"}},
		},
	}
}

// startWatcher runs a Watcher against the control plane until the test ends, synced.
func startWatcher(t *testing.T, env *testenv.Env) *registrywatch.Watcher {
	t.Helper()
	w := registrywatch.New(env.Registries, slog.New(slog.NewTextHandler(t.Output(), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, 30*time.Second, func() error {
		if !w.HasSynced() {
			return errors.New("watcher not synced")
		}
		return nil
	})
	return w
}

// servedBy returns an error unless the watcher's table serves img from registry want ("" for
// none).
func servedBy(w *registrywatch.Watcher, img, want string) error {
	tb := w.Table()
	if tb == nil {
		return errors.New("no table")
	}
	m, ok, err := tb.Lookup(img)
	switch {
	case err != nil:
		return err
	case want == "" && ok:
		return fmt.Errorf("%s is served by %s, want by none", img, m.Registry.Name)
	case want != "" && !ok:
		return fmt.Errorf("%s is served by none, want by %s", img, want)
	case want != "" && m.Registry.Name != want:
		return fmt.Errorf("%s is served by %s, want by %s", img, m.Registry.Name, want)
	}
	return nil
}

// The table follows Registry objects as they are created, changed and deleted.
func TestTableFollowsRegistries(t *testing.T) {
	env := controlPlane.Env(t)
	w := startWatcher(t, env)
	const img = "follow.example.com/team/app:v1"
	if err := servedBy(w, img, ""); err != nil {
		t.Fatal(err)
	}

	env.CreateRegistry(t, registry("follow", "follow.example.com"))
	testenv.Eventually(t, 10*time.Second, func() error { return servedBy(w, img, "follow") })

	// A more specific registry wins the image, then loses it again when it goes.
	team := env.CreateRegistry(t, registry("follow-team", "follow.example.com/team"))
	testenv.Eventually(t, 10*time.Second, func() error { return servedBy(w, img, "follow-team") })

	team.Spec.Hosts = []string{"follow.example.com/other-team"}
	if _, err := env.Registries.Update(t.Context(), team, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		return errors.Join(servedBy(w, img, "follow"), servedBy(w, "follow.example.com/other-team/x", "follow-team"))
	})

	if err := env.Registries.Delete(t.Context(), "follow", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error { return servedBy(w, img, "") })
	if _, ok := w.Get("follow"); ok {
		t.Fatal("a deleted registry is still in the cache")
	}
	if r, ok := w.Get("follow-team"); !ok || r.Spec.EffectiveScope() != v1alpha1.ScopeNamespaced {
		t.Fatalf("Get(follow-team) = %v, %t", r, ok)
	}
}

// A Registry the CRD refuses never reaches the table: the API server keeps it out, so the
// watcher never sees it, while a valid one created after it does get in.
func TestRefusedRegistryNeverGetsIn(t *testing.T) {
	env := controlPlane.Env(t)
	w := startWatcher(t, env)

	bad := registry("refused", "https://refused.example.com")
	bad.Spec.Auth.ECR = &v1alpha1.ECRSource{}
	if _, err := env.Registries.Create(t.Context(), bad, metav1.CreateOptions{}); err == nil {
		t.Fatal("the API server accepted an invalid registry")
	}
	env.CreateRegistry(t, registry("after-refused", "after-refused.example.com"))
	testenv.Eventually(t, 10*time.Second, func() error {
		return servedBy(w, "after-refused.example.com/app", "after-refused")
	})
	if _, ok := w.Get("refused"); ok {
		t.Fatal("the refused registry is in the cache")
	}
	if err := servedBy(w, "refused.example.com/app", ""); err != nil {
		t.Fatal(err)
	}
	for _, err := range w.Table().Skipped() {
		t.Errorf("the table skipped a registry the API server accepted: %v", err)
	}
}

// A watcher started after registries exist has them all in its first table.
func TestTableAtStart(t *testing.T) {
	env := controlPlane.Env(t)
	env.CreateRegistry(t, registry("at-start-a", "at-start-a.example.com"))
	env.CreateRegistry(t, registry("at-start-b", "*.at-start-b.example.com"))
	w := startWatcher(t, env)
	if err := errors.Join(
		servedBy(w, "at-start-a.example.com/app", "at-start-a"),
		servedBy(w, "x.at-start-b.example.com/app", "at-start-b"),
	); err != nil {
		t.Fatal(err)
	}
}
