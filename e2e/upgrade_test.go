//go:build e2e

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/pullpass/pullpass/e2e/framework"
)

// previousChartRevision is the last revision whose chart had no controller (its webhook's leader
// kept the pull secrets): E2E_UPGRADE_FROM (a revision, or none to skip the test), else (unset or
// auto) the first parent of the commit of main that added the controller's Deployment. First
// parents only: the branch that built the controller has commits whose code and chart do not go
// together (a webhook chart passing flags its binary had lost), and only main's line was ever
// released.
func previousChartRevision(t *testing.T) string {
	t.Helper()
	switch rev := os.Getenv("E2E_UPGRADE_FROM"); rev {
	case "none":
		t.Skip("E2E_UPGRADE_FROM=none")
	case "", "auto":
	default:
		return rev
	}
	out, err := exec.Command("git", "-C", framework.RepoRoot(), "log", "--first-parent", "--diff-merges=first-parent", "--diff-filter=A",
		"--no-patch", "--format=%H", "-1", "--", "charts/pullpass/templates/controller-deployment.yaml").Output()
	added := strings.TrimSpace(string(out))
	if err != nil || added == "" {
		t.Skipf("no git history to find the chart before the controller (%v): set E2E_UPGRADE_FROM", err)
	}
	return added + "^1"
}

// deployRevision deploys pullpass as revision rev built it: its sources (git archive) into a
// directory of their own, whose deploy script builds and pushes its images and installs its chart
// into this cluster (KIND_DIR and E2E_DIR name the running cluster's state).
func deployRevision(t *testing.T, rev string) {
	t.Helper()
	dir := t.TempDir()
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", framework.RepoRoot(), rev, dir)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", rev, err, out)
	}
	script, err := filepath.Rel(framework.RepoRoot(), framework.Script("deploy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, script))
	cmd.Env = append(os.Environ(),
		"KIND_DIR="+envOr("KIND_DIR", filepath.Join(framework.RepoRoot(), "_output", "kind")),
		"E2E_DIR="+envOr("E2E_DIR", filepath.Join(framework.RepoRoot(), "_output", "e2e")))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploying %s: %v\n%s", rev, err, out)
	}
}

var errNotYet = errors.New("not deployed yet")

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// From the chart before the controller (the webhook's leader kept pull secrets, on the Lease
// pullpass-keeper) to this one, while pods are created: none is admitted without its pull secret
// and the API server never goes on without pullpass (old and new webhook pods both write pull
// secrets at admission); the Lease ends up held by a controller pod, never by two keepers at once
// (the same Lease), and a rotation made after the upgrade reaches the namespace. On a cluster of
// several nodes (make e2e-kind), like the other upgrade tests.
func TestHAUpgradeFromTheWebhookLeaderChart(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	workers(t, e)
	rev := previousChartRevision(t)
	var (
		out      []byte
		deployed = errNotYet
	)
	deployThis := func() { out, deployed = exec.Command(framework.Script("deploy.sh")).CombinedOutput() }
	t.Cleanup(func() {
		if deployed != nil {
			deployThis() // the suite goes on with this revision's pullpass
		}
	})
	deployRevision(t, rev)
	webhookReady(t, e, 3*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "upgrade-split"})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "upgrade-split", optIn)
	e.WaitServed(t, ns, secret)

	opens := failOpens(t, e)
	without := admitMany(t, e, ns, secret, 40, deployThis) // deployThis runs beside the admissions
	if deployed != nil {
		t.Fatalf("deploying this revision over %s: %v\n%s", rev, deployed, out)
	}
	if len(without) > 0 {
		t.Fatalf("%d pods admitted without their pull secret during the upgrade: %v", len(without), without)
	}
	if d := failOpens(t, e) - opens; d != 0 {
		t.Fatalf("the API server went on without pullpass %v times during the upgrade", d)
	}
	// A controller pod holds the Lease the old webhook's leader held.
	controllerSettled(t, e, 3*time.Minute)
	pw := "after-upgrade-" + rand.String(6)
	e.SetSourcePassword(t, reg.Name, pw)
	waitFor(t, time.Minute, "the rotation after the upgrade", func() bool { got, _ := e.PullSecretPassword(t, ns, secret); return got == pw })
}
