package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodesecret"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// The leader writes what the nodes serve into the node Secret, following Registries and their
// sources: a Cluster-scope registry's credentials appear, a rotation follows at once (the source
// informer kicks a write), a deleted source withdraws them (the entry keeps the registry's
// spec). (What is never written, such as the webhook's TLS Secret, is the writer's unit tests'.)
func TestLeaderWritesTheNodeSecret(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, ns)
	env.SourceSecret(t, ns, "nodecreds-src", "nodecreds.example.com", "first")
	t.Cleanup(func() {
		_ = env.Kube.CoreV1().Secrets(ns).Delete(context.Background(), "nodecreds-src", metav1.DeleteOptions{})
	})
	env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "nodecreds"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"nodecreds.example.com"}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "nodecreds-src"}}}})
	r := startReplica(t, env, func(o *Options) { o.NodeCredentials = true })
	entry := func() (nodesecret.Entry, bool, error) {
		s, err := env.Kube.CoreV1().Secrets(ns).Get(t.Context(), nodesecret.Name, metav1.GetOptions{})
		if err != nil {
			return nodesecret.Entry{}, false, err
		}
		v, ok := s.Data["nodecreds"]
		if !ok {
			return nodesecret.Entry{}, false, nil
		}
		e, err := nodesecret.Decode("nodecreds", v)
		return e, true, err
	}
	password := func(want string) func() error {
		return func() error {
			e, ok, err := entry()
			switch {
			case err != nil:
				return err
			case !ok:
				return fmt.Errorf("no entry")
			case e.Password != want:
				return fmt.Errorf("entry of another password")
			}
			return nil
		}
	}
	testenv.Eventually(t, 30*time.Second, password("first"))
	// Far sooner than the writer's resync (1 min): the source's informer kicks it.
	env.SourceSecret(t, ns, "nodecreds-src", "nodecreds.example.com", "second")
	testenv.Eventually(t, 10*time.Second, password("second"))
	if err := env.Kube.CoreV1().Secrets(ns).Delete(t.Context(), "nodecreds-src", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The registry stays in the node Secret, with its spec and no credentials: the agents report
	// it unserved.
	testenv.Eventually(t, 10*time.Second, func() error {
		e, ok, err := entry()
		switch {
		case err != nil:
			return err
		case !ok || e.Spec == nil:
			return errors.New("no entry with the registry's spec")
		case e.HasCredentials() || e.Password != "":
			return errors.New("credentials still there")
		}
		return nil
	})
	metrics, err := r.scrape()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metrics, `pullpass_node_credentials_syncs_total{result="success"}`) {
		t.Error("no pullpass_node_credentials_syncs_total on the leader")
	}
}
