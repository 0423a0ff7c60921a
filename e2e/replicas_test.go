//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
)

const keeperLease = "pullpass-keeper"

// The Lease is taken from the controller's leader for a while and then given up: the leader
// exits when it loses the Lease (its container restarts), and when a replica leads again (the
// same pod, restarted, on a one-replica cluster) its keeper works. (A leader that stayed up used
// to find its work queue shut down by the previous term and rotate nothing.)
func TestLeaseLostAndWonBackKeeperStillRotates(t *testing.T) {
	framework.ProvedOn(t, framework.Harness, "the Lease and the keeper's work queue are the API server's and the controller's")
	e := framework.Load(t)
	e.Deployed(t)
	ctx := framework.Context(t, 5*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "lease-regain"})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "lease", optIn)
	e.WaitServed(t, ns, secret)
	e.WaitRunning(t, ns, e.CreatePod(t, e.Pod(ns, framework.PodOptions{})).Name) // makes the pull secret

	leases := e.Kube.CoordinationV1().Leases(framework.PullpassNamespace)
	first, err := leases.Get(ctx, keeperLease, metav1.GetOptions{})
	if err != nil || first.Spec.HolderIdentity == nil {
		t.Fatalf("no keeper Lease held: %v", err)
	}
	leader := *first.Spec.HolderIdentity
	restarts := func() int32 {
		var n int32
		for _, p := range controllerPods(t, e) {
			for _, c := range p.Status.ContainerStatuses {
				n += c.RestartCount
			}
		}
		return n
	}
	restartsBefore := restarts()
	// Take it: another holder renewing it, as a partition would look to the leader.
	thief := "e2e-thief"
	steal := func() {
		l, err := leases.Get(ctx, keeperLease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.NewMicroTime(time.Now())
		l.Spec.HolderIdentity, l.Spec.RenewTime = &thief, &now
		if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil && !strings.Contains(err.Error(), "modified") {
			t.Fatal(err)
		}
	}
	held := time.Now().Add(20 * time.Second)
	for time.Now().Before(held) {
		steal()
		time.Sleep(2 * time.Second)
	}
	// Give it up; a replica takes it once the Lease (15 s) runs out.
	var back *coordinationv1.Lease
	waitFor(t, time.Minute, "the leader's container restarted", func() bool { return restarts() > restartsBefore })
	waitFor(t, time.Minute, "a controller replica leading again", func() bool {
		back, err = leases.Get(ctx, keeperLease, metav1.GetOptions{})
		return err == nil && back.Spec.HolderIdentity != nil && *back.Spec.HolderIdentity != thief
	})
	t.Logf("leader %s, then %s", leader, *back.Spec.HolderIdentity)

	e.SetSourcePassword(t, reg.Name, "rotated-after-regain")
	waitFor(t, time.Minute, "the rotation in the namespace", func() bool {
		pw, _ := e.PullSecretPassword(t, ns, secret)
		return pw == "rotated-after-regain"
	})
}

// With an ECR registry, every admitted pod at steady state costs no write to Secrets: admission
// only creates missing pull secrets, and the keeper alone refreshes them. (Replicas holding
// tokens of their own used to overwrite each other's at every admission.)
func TestECRAdmissionsWriteNoSecretsAtSteadyState(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	startECR(t, ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: time.Now().Add(time.Hour)})
	reg := createECRRegistry(t, e, "e2e-ecr-writes", v1alpha1.ScopeNamespaced)
	ns := e.Namespace(t, "ecr-writes", optIn)
	e.WaitServed(t, ns, "pullpass-"+reg.Name)
	// The first pod makes the pull secret; the keeper's first pass (status) settles.
	e.CreatePod(t, e.Pod(ns, framework.PodOptions{ImagePullPolicy: "IfNotPresent"}))
	waitFor(t, 30*time.Second, "the pull secret made", func() bool { return !e.SecretGone(t, ns, "pullpass-"+reg.Name) })
	time.Sleep(5 * time.Second)

	before := e.APIServerWrites(t, "secrets")
	const pods = 10
	for range pods {
		if got := e.DryRunSecrets(t, ns, e.Pod(ns, framework.PodOptions{})); len(got) != 1 {
			t.Fatalf("pull secrets %v", got)
		}
		e.CreatePod(t, e.Pod(ns, framework.PodOptions{ImagePullPolicy: "IfNotPresent"}))
	}
	time.Sleep(5 * time.Second) // anything the admissions set off (the keeper's events) lands
	writes := e.APIServerWrites(t, "secrets") - before
	t.Logf("%v writes to Secrets for %d admitted pods", writes, pods)
	if writes != 0 {
		t.Fatalf("%v API writes to Secrets for %d admitted pods at steady state, want 0", writes, pods)
	}
}

// A Registry may not name a source Secret outside pullpass's namespace: the API server refuses it
// (the chart's policy) with a message that says where sources go.
func TestRegistrySourceInAnotherNamespaceIsRefused(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	ctx := framework.Context(t, time.Minute)
	other := e.Namespace(t, "not-a-source", nil)
	e.DockerConfigSecret(t, other, "their-secret", "u", "p")
	for _, auth := range []v1alpha1.RegistryAuth{
		{SecretRef: &v1alpha1.SecretReference{Namespace: other, Name: "their-secret"}},
		{DockerHub: &v1alpha1.DockerHubSource{SecretRef: v1alpha1.SecretReference{Namespace: other, Name: "their-secret"}}},
		{ECR: &v1alpha1.ECRSource{Region: "us-east-1", AccessKeySecretRef: &v1alpha1.SecretReference{Namespace: other, Name: "their-secret"}}},
	} {
		r := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "deputy"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"deputy.example.com"}, Auth: auth}}
		_, err := e.Registries.Create(ctx, r, metav1.CreateOptions{})
		if err == nil {
			_ = e.Registries.Delete(context.Background(), r.Name, metav1.DeleteOptions{})
			t.Fatalf("a Registry naming %v was accepted", auth.SecretRefs())
		}
		if !strings.Contains(err.Error(), "credential sources must be in namespace "+framework.PullpassNamespace) || !strings.Contains(err.Error(), other) {
			t.Fatalf("refused, but the message does not say why: %v", err)
		}
	}
	// In pullpass's namespace it is accepted.
	e.CreateRegistry(t, framework.RegistryOptions{Name: "deputy-ok", Hosts: []string{"deputy.example.com"}})
}
