package controller

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// Two replicas against a real API server and a registry with Basic auth: the leader's verifier
// writes Verified=Unauthorized for the wrong password (beside the keeper's Ready, neither writing
// over the other), and Verified once the source is fixed; the only Secret writes are the source's
// and the keeper's refresh of the pull secret (made as admission would): verification writes none.
func TestVerifierOnTheLeader(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, ns)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok && u == "user" && p == "right" {
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="it"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(srv.URL, "https://")
	env.SourceSecret(t, ns, "verify-src", host, "wrong")
	reg := env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "verify-it"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{host}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "verify-src", Namespace: ns}}}})
	withCA := func(o *Options) { o.RegistryCAFile = ca }
	a, b := startReplica(t, env, withCA), startReplica(t, env, withCA)

	verdict := func(reason string) func() error {
		return func() error {
			r, err := env.Registries.Get(t.Context(), "verify-it", metav1.GetOptions{})
			if err != nil {
				return err
			}
			src, err := env.Kube.CoreV1().Secrets(ns).Get(t.Context(), "verify-src", metav1.GetOptions{})
			if err != nil {
				return err
			}
			v := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionVerified)
			ready := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
			switch {
			case v == nil || ready == nil:
				return errors.New("Verified and Ready not both written yet")
			case v.Reason != reason:
				return fmt.Errorf("Verified %s %q, want %s", v.Reason, v.Message, reason)
			case r.Status.Verification == nil || r.Status.Verification.SourceVersion != src.ResourceVersion:
				return fmt.Errorf("verification %+v made for another source version than %s", r.Status.Verification, src.ResourceVersion)
			case strings.Contains(v.Message, "wrong") || strings.Contains(v.Message, "right"):
				return fmt.Errorf("message carries a password: %q", v.Message)
			}
			return nil
		}
	}
	testenv.Eventually(t, 30*time.Second, verdict("Unauthorized"))

	shop := env.OptedIn(t, nil)
	pullSecretIn(t, env, shop, reg, "wrong")
	writes := env.SecretWrites(t)
	env.SourceSecret(t, ns, "verify-src", host, "right")
	testenv.Eventually(t, 30*time.Second, verdict("Verified"))
	testenv.Eventually(t, 30*time.Second, func() error {
		if p := env.PullSecretPassword(t, shop, "verify-it", host); p != "right" {
			return fmt.Errorf("pull secret password %q", p)
		}
		return nil
	})
	// Done when the keeper has seen a touch of the pull secret made after all that (its watch
	// delivers in order) and both replicas' queues are drained: no sleep stands in for it.
	barrier(t, env, shop, pullsecret.Name("verify-it"), a, b)
	if got := env.SecretWrites(t) - writes; got != 3 {
		t.Fatalf("%v Secret writes after the fix, want 3 (the source, the keeper's refresh of the pull secret, the test's touch)", got)
	}
}
