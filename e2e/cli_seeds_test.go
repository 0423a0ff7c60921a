//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/cli"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
)

// The command lines of the documents pullpass replaces (Convox's "Private Registries", Koyeb's
// registry secrets), run as written with the built pullpass binary against the deployed pullpass,
// each followed by a pod that pulls, or by the objects it must make.

var (
	buildCLI sync.Once
	cliPath  string
	cliErr   error
)

// pullpassCLI builds cmd/pullpass once for the suite, into _output/cli.
func pullpassCLI(t *testing.T) string {
	t.Helper()
	buildCLI.Do(func() {
		cliPath = filepath.Join(framework.RepoRoot(), "_output", "cli", "pullpass")
		cmd := exec.Command("go", "build", "-o", cliPath, "./cmd/pullpass")
		cmd.Dir = framework.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("go build ./cmd/pullpass: %w\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

// seed runs the pullpass binary with args as a user would, KUBECONFIG in its environment. The
// command line is logged with the harness password and those of secret masked.
func seed(t *testing.T, e *framework.Env, secret []string, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(pullpassCLI(t), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("pullpass %v: %v", args, err)
	}
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if a == e.RegistryPassword || slices.Contains(secret, a) {
			shown[i] = "<password>"
		}
	}
	t.Logf("$ pullpass %s\n%s%s(exit %d)", strings.Join(shown, " "), out.String(), errOut.String(), code)
	return cliResult{code, out.String(), errOut.String()}
}

// noSecretIn fails when a password reached the CLI's output.
func noSecretIn(t *testing.T, r cliResult, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(r.out+r.errOut, s) {
			t.Fatal("the CLI printed a password")
		}
	}
}

// dockerHubMirror is the registry that stands in for Docker Hub on the harness.
func dockerHubMirror(t *testing.T, e *framework.Env) {
	t.Helper()
	if e.Var("DOCKER_HUB_MIRROR") == "" {
		t.Skip("this cluster pulls docker.io from Docker Hub itself (no DOCKER_HUB_MIRROR in registry.env)")
	}
}

// waitServedFor waits until the webhook gives a pod of the namespace with image the secret.
func waitServedFor(t *testing.T, e *framework.Env, ns, image, secret string) {
	t.Helper()
	waitFor(t, 30*time.Second, "the webhook serving "+secret+" to "+image, func() bool {
		return slices.Contains(e.DryRunSecrets(t, ns, e.Pod(ns, framework.PodOptions{Image: image})), secret)
	})
}

func cleanupRegistry(t *testing.T, e *framework.Env, name string) {
	t.Cleanup(func() {
		_ = e.Registries.Delete(context.Background(), name, metav1.DeleteOptions{})
		for _, s := range []string{name, name + "-aws-keys"} {
			_ = e.Kube.CoreV1().Secrets(framework.PullpassNamespace).Delete(context.Background(), s, metav1.DeleteOptions{})
		}
	})
}

// tmuxSession runs a command on a real terminal (tmux), to be typed at.
type tmuxSession struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T, command string) *tmuxSession {
	t.Helper()
	s := &tmuxSession{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	s.run("new-session", "-d", "-s", "seed", "-x", "220", "-y", "50", command)
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", s.sock, "kill-server").Run() })
	return s
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", s.sock}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen is what the terminal shows (tmux trims the spaces that end a line).
func (s *tmuxSession) screen() string { return s.run("capture-pane", "-p", "-t", "seed", "-S", "-200") }

func (s *tmuxSession) waitFor(what string) string {
	s.t.Helper()
	var scr string
	deadline := time.Now().Add(time.Minute)
	for {
		if scr = s.screen(); strings.Contains(scr, what) {
			return scr
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the terminal never showed %q:\n%s", what, scr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// typeLine types text and Enter, as a person would.
func (s *tmuxSession) typeLine(text string) {
	s.run("send-keys", "-t", "seed", "-l", text)
	s.run("send-keys", "-t", "seed", "Enter")
}

// Seed: `pullpass registries add https://index.docker.io/v1/`, then the username and password
// typed at the prompt, which never shows the password. Docker Hub images then pull, as written
// in pod specs every way: nginx, docker.io/library/nginx, yourname/app. Then
// `pullpass registries remove https://index.docker.io/v1/`.
func TestSeedDockerHubURLPromptedThenRemoved(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	dockerHubMirror(t, e)
	cleanupRegistry(t, e, "docker.io")

	term := newTmux(t, fmt.Sprintf("env KUBECONFIG=%s %s registries add https://index.docker.io/v1/; echo exit=$?; sleep 600", e.Kubeconfig, pullpassCLI(t)))
	term.waitFor("Username:")
	term.typeLine(e.RegistryUsername)
	term.waitFor("Password:")
	term.typeLine(e.RegistryPassword)
	scr := term.waitFor("exit=")
	t.Logf("terminal:\n%s", scr)
	if strings.Contains(scr, e.RegistryPassword) {
		t.Fatal("the password was echoed on the terminal")
	}
	if !strings.Contains(scr, "Username: "+e.RegistryUsername) || !strings.Contains(scr, "registry docker.io created") || !strings.Contains(scr, "exit=0") {
		t.Fatalf("the terminal shows:\n%s", scr)
	}

	ctx := framework.Context(t, 5*time.Minute)
	reg, err := e.Registries.Get(ctx, "docker.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(reg.Spec.Hosts, []string{"docker.io"}) || reg.Spec.Auth.DockerHub == nil {
		t.Fatalf("registry spec %+v: want hosts [docker.io] and a Docker Hub source", reg.Spec)
	}

	ns := e.Namespace(t, "seed-hub", optIn)
	waitServedFor(t, e, ns, "nginx", "pullpass-docker.io")
	for _, img := range []string{"nginx", "docker.io/library/nginx", "yourname/app"} {
		pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: img}))
		if !slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == "pullpass-docker.io" }) {
			t.Fatalf("pod with image %s has pull secrets %v", img, pod.Spec.ImagePullSecrets)
		}
		e.WaitRunning(t, ns, pod.Name)
	}
	ps, err := e.Kube.CoreV1().Secrets(ns).Get(ctx, "pullpass-docker.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dockerconfig.Parse(ps.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		t.Fatal(err)
	}
	if keys := cfg.Hosts(); !slices.Equal(keys, []string{"docker.io"}) {
		t.Fatalf("the Docker Hub pull secret has keys %v, want [docker.io]", keys)
	}
	// The mirror needs the credentials: a namespace that did not opt in does not pull.
	plain := e.Namespace(t, "seed-hub-plain", nil)
	denied := e.CreatePod(t, e.Pod(plain, framework.PodOptions{Image: "nginx"}))
	e.WaitPullFailure(t, plain, denied.Name)

	r := seed(t, e, nil, "", "registries", "remove", "https://index.docker.io/v1/")
	if r.code != 0 || !strings.Contains(r.out, "registry docker.io removed") {
		t.Fatalf("remove: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	if _, err := e.Registries.Get(ctx, "docker.io", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("registry still there: %v", err)
	}
	if !e.SecretGone(t, framework.PullpassNamespace, "docker.io") {
		t.Fatal("the source secret is still there")
	}
}

// Seed: a Registry written with host index.docker.io (Namespaced) or registry-1.docker.io
// (Cluster) serves nginx and yourname/postgres: through the pull secret, and through the node
// agent with no pull secret at all.
func TestSeedDockerHubAliasesServeDockerHubImages(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	dockerHubMirror(t, e)
	nodeServesNothingAfter(t, e)

	ns := e.Namespace(t, "seed-hub-alias", optIn)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "hub-index", Hosts: []string{"index.docker.io"}, SourceHost: "https://index.docker.io/v1/"})
	waitServedFor(t, e, ns, "yourname/postgres", "pullpass-hub-index")
	for _, img := range []string{"nginx", "yourname/postgres"} {
		pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: img}))
		e.WaitRunning(t, ns, pod.Name)
	}

	e.CreateRegistry(t, framework.RegistryOptions{Name: "hub-node", Hosts: []string{"registry-1.docker.io"}, Scope: v1alpha1.ScopeCluster, SourceHost: "registry-1.docker.io"})
	waitFor(t, time.Minute, "registry served by the node", func() bool {
		return framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_registry_served", map[string]string{"registry": "hub-node"}) == 1
	})
	if hosts := agentCache(t, e)["hub-node"].Hosts; !slices.Equal(hosts, []string{"docker.io"}) {
		t.Fatalf("node cache hosts %v, want [docker.io]", hosts)
	}
	time.Sleep(pluginCache)
	plain := e.Namespace(t, "seed-hub-node", nil)
	for _, img := range []string{"nginx", "yourname/postgres"} {
		pod := e.CreatePod(t, e.Pod(plain, framework.PodOptions{Image: img}))
		if len(pod.Spec.ImagePullSecrets) != 0 {
			t.Fatalf("pod has pull secrets %v", pod.Spec.ImagePullSecrets)
		}
		e.WaitRunning(t, plain, pod.Name)
	}
}

// Seeds: `pullpass registries add registry.example.org username password` (the harness registry
// for registry.example.org), warned about on stderr; `pullpass registries` lists it; a pod pulls.
func TestSeedAddHostUserPasswordThenList(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	name := cli.NameForHost(e.Registry)
	cleanupRegistry(t, e, name)

	r := seed(t, e, nil, "", "registries", "add", e.Registry, e.RegistryUsername, e.RegistryPassword)
	if r.code != 0 || !strings.Contains(r.errOut, "WARNING! A password on the command line is visible to other users") {
		t.Fatalf("add: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	noSecretIn(t, r, e.RegistryPassword)
	r = seed(t, e, nil, "", "registries")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) < 2 || !strings.HasPrefix(lines[0], "SERVER") || !strings.Contains(r.out, e.Registry) {
		t.Fatalf("registries: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 4 && f[0] == e.Registry && (f[3] != e.RegistryUsername || f[2] != "secretRef") {
			t.Fatalf("row %q: want the username %s and a secretRef source", l, e.RegistryUsername)
		}
	}
	noSecretIn(t, r, e.RegistryPassword)

	ns := e.Namespace(t, "seed-convox", optIn)
	e.WaitServed(t, ns, "pullpass-"+name)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitRunning(t, ns, pod.Name)
}

// Seed: `pullpass registries add HOST --namespaces A` (no YAML): only namespace A is served.
func TestSeedNamespaceRestrictedRegistry(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	name := "seed-restricted"
	cleanupRegistry(t, e, name)
	served := e.Namespace(t, "seed-only", optIn)
	other := e.Namespace(t, "seed-other", optIn)

	r := seed(t, e, nil, e.RegistryPassword+"\n", "registries", "add", e.Registry, "--name", name, "--namespaces", served, "--username", e.RegistryUsername, "--password-stdin")
	if r.code != 0 || !strings.Contains(r.out, "namespaces "+served) {
		t.Fatalf("add: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	e.WaitServed(t, served, "pullpass-"+name)
	if got := e.DryRunSecrets(t, other, e.Pod(other, framework.PodOptions{})); slices.Contains(got, "pullpass-"+name) {
		t.Fatalf("namespace %s, not named, gets %v", other, got)
	}
	pod := e.CreatePod(t, e.Pod(served, framework.PodOptions{}))
	e.WaitRunning(t, served, pod.Name)
}

// Seed: `pullpass registries add 901416387788.dkr.ecr.us-east-1.amazonaws.com` with an IAM access
// key ID as username and the secret key as password (the seeds' cross-account ECR recipe) makes
// an ECR source with those keys. The deployed webhook fetches a token with them through the real
// SDK from the local ECR API (which records the key that signed), and a pod pulls with it.
func TestSeedECRWithIAMKeys(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	const (
		host   = "901416387788.dkr.ecr.us-east-1.amazonaws.com"
		keyID  = "AKIAE2ESEEDEXAMPLE01"
		secret = "e2eSeedSecretAccessKey/0123456789abcdefg" // 40 characters
	)
	cleanupRegistry(t, e, host)
	ctx := framework.Context(t, 5*time.Minute)

	r := seed(t, e, []string{secret}, "", "registries", "add", host, keyID, secret)
	if r.code != 0 || !strings.Contains(r.out, "source ECR with the IAM keys in secret pullpass/"+host) {
		t.Fatalf("add: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	noSecretIn(t, r, secret)
	reg, err := e.Registries.Get(ctx, host, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := reg.Spec.Auth.ECR
	if src == nil || src.AccessKeySecretRef == nil || reg.Spec.Auth.SecretRef != nil {
		t.Fatalf("auth %+v: want an ECR source with accessKeySecretRef", reg.Spec.Auth)
	}
	keys, err := e.Kube.CoreV1().Secrets(src.AccessKeySecretRef.Namespace).Get(ctx, src.AccessKeySecretRef.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(keys.Data["aws_access_key_id"]) != keyID || string(keys.Data["aws_secret_access_key"]) != secret {
		t.Fatal("the keys secret does not hold the IAM keys given")
	}

	// The token the SDK gets opens the harness registry: serve that host with this source too.
	srv := startECR(t, ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: time.Now().Add(time.Hour)})
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"hosts": []string{host, e.Registry}}})
	if _, err := e.Registries.Patch(ctx, host, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ns := e.Namespace(t, "seed-ecr", optIn)
	e.WaitServed(t, ns, "pullpass-"+host)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitRunning(t, ns, pod.Name)
	if got := srv.SigningKeys(); len(got) == 0 || !slices.Contains(got, keyID) {
		t.Fatalf("GetAuthorizationToken was signed by %v, want the key given to the CLI", got)
	}

	// The token recipe (docker login -u AWS) is refused, with what would happen, and changes nothing.
	const token = "eyJwYXlsb2FkIjoidG9rZW4ifQ=="
	r = seed(t, e, []string{token}, "", "registries", "add", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "AWS", token)
	noSecretIn(t, r, token)
	if r.code != 2 || !strings.Contains(r.errOut, "expires within 12 hours") || strings.Count(strings.TrimSpace(r.errOut), "\n") != 0 {
		t.Fatalf("an ECR token as password: exit %d, err %q", r.code, r.errOut)
	}
	if _, err := e.Registries.Get(ctx, "123456789012.dkr.ecr.eu-west-1.amazonaws.com", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a refused add made a registry: %v", err)
	}
}
