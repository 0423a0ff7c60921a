//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/cli"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
)

type cliResult struct {
	code        int
	out, errOut string
}

func runCLI(t *testing.T, e *framework.Env, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"--kubeconfig", e.Kubeconfig}, args...)
	code := cli.Run(context.Background(), "pullpass", args, cli.Streams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return cliResult{code, out.String(), errOut.String()}
}

// registries add/list/remove and explain against the real API server, ending in a pull with the
// secret the CLI wrote.
func TestCLIRegistriesLifecycle(t *testing.T) {
	e := framework.Load(t)
	e.InstallCRD(t)
	ns := framework.PullpassNamespace // sources may only be there
	ctx := framework.Context(t, 5*time.Minute)
	name := cli.NameForHost(e.Registry)
	t.Cleanup(func() {
		_ = e.Registries.Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = e.Kube.CoreV1().Secrets(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	// A wrong password first (refused by the registry: exit 1, the registry stays), then the right
	// one: the second add updates, never duplicates.
	e.Deployed(t)
	r := runCLI(t, e, "wrong-password\n", "-N", ns, "registries", "add", e.Registry, "--username", e.RegistryUsername, "--password-stdin")
	if r.code != 1 || !strings.Contains(r.out, "registry "+name+" created") || !strings.Contains(r.errOut, "(Unauthorized)") {
		t.Fatalf("add: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	r = runCLI(t, e, e.RegistryPassword+"\n", "-N", ns, "registries", "add", e.Registry, "--username", e.RegistryUsername, "--password-stdin")
	if r.code != 0 || !strings.Contains(r.out, "registry "+name+" updated") || !strings.Contains(r.out, "Login Succeeded") {
		t.Fatalf("second add: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	if strings.Contains(r.out+r.errOut, e.RegistryPassword) {
		t.Fatal("the CLI printed the password")
	}
	list, err := e.Registries.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, item := range list.Items {
		for _, h := range item.Spec.Hosts {
			if h == e.Registry {
				n++
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d registries have host %s after two adds, want 1", n, e.Registry)
	}

	r = runCLI(t, e, "", "-N", ns, "registries", "list")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || !strings.HasPrefix(lines[0], "SERVER") || !strings.Contains(r.out, e.Registry) {
		t.Fatalf("list: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, e.Registry+" ") {
			if f := strings.Fields(l); len(f) < 9 || f[1] != name || f[2] != "secretRef" || f[3] != e.RegistryUsername || f[4] != "Namespaced" || f[7] != "True" {
				t.Fatalf("list row %q, want SERVER NAME SOURCE USERNAME SCOPE NAMESPACES READY VERIFIED EXPIRES for %s, verified", l, name)
			}
		}
	}

	r = runCLI(t, e, "", "explain", e.Image)
	if r.code != 0 || !strings.Contains(r.out, "registry: "+name+"\n") {
		t.Fatalf("explain %s: exit %d, out %q, err %q", e.Image, r.code, r.out, r.errOut)
	}
	r = runCLI(t, e, "", "explain", "quay.io/nobody/nothing:1")
	if r.code != 1 || !strings.Contains(r.out, "registry: none\n") {
		t.Fatalf("explain of an unserved image: exit %d, out %q", r.code, r.out)
	}
	r = runCLI(t, e, "", "explain", "Not/A/Valid:Image:")
	if r.code != 2 || r.errOut == "" {
		t.Fatalf("explain of an invalid image: exit %d, err %q", r.code, r.errOut)
	}

	// The secret the CLI wrote is a working pull secret.
	src, err := e.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the source secret: %v", err)
	}
	podNS := e.Namespace(t, "cli-pull", nil)
	copySecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "from-cli", Namespace: podNS}, Type: src.Type, Data: src.Data}
	if _, err := e.Kube.CoreV1().Secrets(podNS).Create(ctx, copySecret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := e.CreatePod(t, e.Pod(podNS, framework.PodOptions{PullSecrets: []string{"from-cli"}, Command: []string{"/hello"}, RestartNever: true}))
	e.WaitSucceeded(t, podNS, pod.Name)

	r = runCLI(t, e, "", "-N", ns, "registries", "remove", e.Registry)
	if r.code != 0 {
		t.Fatalf("remove: exit %d, err %q", r.code, r.errOut)
	}
	if _, err := e.Registries.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("registry still there after remove: %v", err)
	}
	if _, err := e.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("source secret still there after remove: %v", err)
	}
	if r := runCLI(t, e, "", "-N", ns, "registries", "remove", e.Registry); r.code == 0 {
		t.Fatal("a second remove succeeded")
	}
}

// add --from-docker-config takes the entry docker login wrote; a user's own secret of the same
// name is never overwritten.
func TestCLIAddFromDockerConfig(t *testing.T) {
	e := framework.Load(t)
	e.InstallCRD(t)
	ns := framework.PullpassNamespace // sources may only be there
	ctx := framework.Context(t, 2*time.Minute)
	t.Cleanup(func() {
		for _, s := range []string{"from-docker", "users-own"} {
			_ = e.Kube.CoreV1().Secrets(ns).Delete(context.Background(), s, metav1.DeleteOptions{})
		}
	})
	cfg := dockerconfig.Config{Auths: map[string]dockerconfig.AuthEntry{
		"https://" + e.Registry: {Username: e.RegistryUsername, Password: e.RegistryPassword},
		"ghcr.io":               {Username: "other", Password: "other"},
	}}
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(context.Background(), "from-docker", metav1.DeleteOptions{}) })
	r := runCLI(t, e, "", "-N", ns, "registries", "add", e.Registry, "--name", "from-docker", "--scope", "Cluster", "--from-docker-config", file)
	if r.code != 0 {
		t.Fatalf("add: exit %d, err %q", r.code, r.errOut)
	}
	reg, err := e.Registries.Get(ctx, "from-docker", metav1.GetOptions{})
	if err != nil || reg.Spec.Scope != "Cluster" || reg.Spec.Auth.SecretRef.Name != "from-docker" {
		t.Fatalf("registry %+v, %v", reg, err)
	}
	s, err := e.Kube.CoreV1().Secrets(ns).Get(ctx, "from-docker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := dockerconfig.Parse(s.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		t.Fatal(err)
	}
	if ent, ok := got.Lookup(e.Registry); !ok || ent.Username != e.RegistryUsername || ent.Password != e.RegistryPassword {
		t.Fatalf("the secret's entry for %s is not the one from the docker config (hosts %v)", e.Registry, got.Hosts())
	}
	if _, ok := got.Lookup("ghcr.io"); ok {
		t.Fatal("the secret holds credentials of another registry from the docker config")
	}

	// A secret the user made is not pullpass's to overwrite.
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "users-own", Namespace: ns}, StringData: map[string]string{"username": "u", "password": "p"}}
	if _, err := e.Kube.CoreV1().Secrets(ns).Create(ctx, mine, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, e, "pw", "-N", ns, "registries", "add", "users-own.example.com", "--name", "users-own", "--username", "u", "--password-stdin")
	if r.code == 0 || !strings.Contains(r.errOut, "is not the source secret pullpass made for registry users-own") {
		t.Fatalf("add over a user's secret: exit %d, err %q", r.code, r.errOut)
	}
	if _, err := e.Registries.Get(ctx, "users-own", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a registry was created though its secret was refused: %v", err)
	}
}
