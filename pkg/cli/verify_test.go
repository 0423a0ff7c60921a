package cli

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registryclient"
)

// statusSequence answers Get with the registry, its status replaced by the next of a sequence.
type statusSequence struct {
	registryclient.Interface
	mu       sync.Mutex
	reg      *v1alpha1.Registry
	statuses []v1alpha1.RegistryStatus
}

func (s *statusSequence) Get(context.Context, string, metav1.GetOptions) (*v1alpha1.Registry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reg.DeepCopy()
	if len(s.statuses) > 0 {
		r.Status = s.statuses[0]
		if len(s.statuses) > 1 {
			s.statuses = s.statuses[1:]
		}
	}
	return r, nil
}

func status(reason string, st metav1.ConditionStatus, msg string, gen int64, source string) v1alpha1.RegistryStatus {
	return v1alpha1.RegistryStatus{
		Conditions:   []metav1.Condition{{Type: v1alpha1.ConditionVerified, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen}},
		Verification: &v1alpha1.RegistryVerification{ObservedGeneration: gen, SourceVersion: source},
	}
}

func TestWaitVerifiedReportsLikeDockerLogin(t *testing.T) {
	refused := "login to localhost:5000 refused: GET https://localhost:5000/v2/: 401 Unauthorized: UNAUTHORIZED: authentication required"
	for _, tc := range []struct {
		name       string
		statuses   []v1alpha1.RegistryStatus
		wantErr    string
		wantOut    string
		wantErrOut string
	}{
		{"verified", []v1alpha1.RegistryStatus{status("Verified", metav1.ConditionTrue, "Login Succeeded", 2, "7")}, "", "Login Succeeded\n", ""},
		{"refused", []v1alpha1.RegistryStatus{status("Unauthorized", metav1.ConditionFalse, refused, 2, "7")}, refused + " (Unauthorized); registry r is kept", "", ""},
		// The verdict on the old password is not the answer: wait for the one on the source just written.
		{"stale then fresh", []v1alpha1.RegistryStatus{
			status("Verified", metav1.ConditionTrue, "Login Succeeded", 2, "6"),
			status("Verified", metav1.ConditionTrue, "Login Succeeded", 1, "7"),
			status("Unauthorized", metav1.ConditionFalse, refused, 2, "7"),
		}, refused, "", ""},
		{"unreachable is not a refusal", []v1alpha1.RegistryStatus{status("Unreachable", metav1.ConditionFalse, "dial tcp: no such host", 2, "7")}, "", "", "could not log in yet (Unreachable)"},
		{"forbidden", []v1alpha1.RegistryStatus{status("Forbidden", metav1.ConditionFalse, "403 Forbidden", 2, "7")}, "403 Forbidden (Forbidden)", "", ""},
		{"not verifiable", []v1alpha1.RegistryStatus{status("NotVerifiable", metav1.ConditionUnknown, "only glob host patterns", 2, "7")}, "", "", "not verified (NotVerifiable)"},
		{"no verdict in time", nil, "", "", "not verified within 600ms (is pullpass running?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "r", Generation: 2},
				Spec: v1alpha1.RegistrySpec{Hosts: []string{"localhost:5000"}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "r", Namespace: "pullpass"}}}}
			kube := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "pullpass", ResourceVersion: "7"}})
			var out, errOut bytes.Buffer
			o := &options{streams: Streams{Out: &out, ErrOut: &errOut}}
			c := &Clients{Kube: kube, Registries: &statusSequence{reg: reg, statuses: tc.statuses}}
			err := waitVerified(context.Background(), o, c, "r", 600*time.Millisecond)
			if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if out.String() != tc.wantOut || !strings.Contains(errOut.String(), tc.wantErrOut) {
				t.Fatalf("out %q, err out %q; want %q and %q", out.String(), errOut.String(), tc.wantOut, tc.wantErrOut)
			}
		})
	}
}

func TestVerifiedColumn(t *testing.T) {
	r := &v1alpha1.Registry{}
	if got := verifiedOf(r); got != "Unknown" {
		t.Fatalf("no condition: %q", got)
	}
	r.Status = status("Unauthorized", metav1.ConditionFalse, "", 1, "")
	if got := verifiedOf(r); got != "False (Unauthorized)" {
		t.Fatalf("%q", got)
	}
	r.Status = status("Verified", metav1.ConditionTrue, "", 1, "")
	if got := verifiedOf(r); got != "True" {
		t.Fatalf("%q", got)
	}
}
