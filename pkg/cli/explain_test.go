package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/pkg/secrets"
)

const registriesYAML = `# two registries, one more specific
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata:
  name: ghcr
spec:
  hosts: ["ghcr.io"]
  auth:
    secretRef: {name: ghcr, namespace: pullpass}
---
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata:
  name: ghcr-team
spec:
  hosts: ["*.io/team"]
  scope: Cluster
  auth:
    secretRef: {name: team, namespace: pullpass}
---
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata:
  name: hub
spec:
  hosts: ["docker.io"]
  auth:
    secretRef: {name: hub, namespace: pullpass}
`

func runOffline(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), "pullpass", args, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, nil)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExplainOffline(t *testing.T) {
	file := writeFile(t, registriesYAML)
	tests := []struct {
		image    string
		code     int
		registry string
		more     []string
	}{
		{"ghcr.io/team/app:v1", 0, "ghcr-team", []string{"pattern: *.io/team", "scope: Cluster", "served: by the node agents", "also matches: ghcr (pattern ghcr.io)"}},
		{"ghcr.io/other/app", 0, "ghcr", []string{"pattern: ghcr.io", "served: as a pull secret", "source: secret pullpass/ghcr"}},
		{"nginx", 0, "hub", []string{"normalized: docker.io/library/nginx", "host: docker.io"}},
		{"index.docker.io/org/app", 0, "hub", nil},
		{"quay.io/org/app", 1, "none", nil},
		{"localhost:5000/app", 1, "none", nil},
	}
	for _, tt := range tests {
		code, out, errOut := runOffline(t, "explain", tt.image, "--registries", file)
		if code != tt.code {
			t.Errorf("explain %s: exit %d, want %d (stderr %q)", tt.image, code, tt.code, errOut)
		}
		if !strings.Contains(out, "\nregistry: "+tt.registry+"\n") {
			t.Errorf("explain %s: stdout lacks 'registry: %s':\n%s", tt.image, tt.registry, out)
		}
		for _, m := range tt.more {
			if !strings.Contains(out, m) {
				t.Errorf("explain %s: stdout lacks %q:\n%s", tt.image, m, out)
			}
		}
	}
}

func TestExplainBadInput(t *testing.T) {
	good := writeFile(t, registriesYAML)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"invalid image", []string{"explain", "Upper/Case", "--registries", good}, "must be lowercase"},
		{"empty image", []string{"explain", "", "--registries", good}, "empty"},
		{"no image", []string{"explain", "--registries", good}, "accepts 1 arg"},
		{"two images", []string{"explain", "a", "b", "--registries", good}, "accepts 1 arg"},
		{"unknown flag", []string{"explain", "a", "--nope"}, "unknown flag"},
		{"missing file", []string{"explain", "a", "--registries", "/nonexistent/file.yaml"}, "no such file"},
		{"not yaml", []string{"explain", "a", "--registries", writeFile(t, "{{{")}, "document 1"},
		{"wrong kind", []string{"explain", "a", "--registries", writeFile(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n")}, `kind Registry, got "v1" "Secret"`},
		{"unknown field", []string{"explain", "a", "--registries", writeFile(t, strings.Replace(registriesYAML, "scope: Cluster", "scop: Cluster", 1))}, `document 2: error unmarshaling JSON: while decoding JSON: json: unknown field "scop"`},
		{"bad pattern", []string{"explain", "a", "--registries", writeFile(t, strings.Replace(registriesYAML, `"ghcr.io"`, `"ftp://ghcr.io"`, 1))}, "document 1: registry \"ghcr\": spec.hosts[0]"},
		{"two sources", []string{"explain", "a", "--registries", writeFile(t, strings.Replace(registriesYAML, "auth:\n    secretRef: {name: ghcr, namespace: pullpass}", "auth:\n    secretRef: {name: ghcr, namespace: pullpass}\n    ecr: {}", 1))}, "exactly one credential source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runOffline(t, tt.args...)
			if code != ExitBadInput {
				t.Fatalf("exit %d, want %d (stderr %q)", code, ExitBadInput, errOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("stderr %q, want it to contain %q", errOut, tt.wantErr)
			}
		})
	}
}

func TestNameForHost(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:5443":   "localhost-5443",
		"*.azurecr.io":     "wildcard.azurecr.io",
		"ghcr.io/Team/app": "ghcr.io-team-app",
		"GHCR.io":          "ghcr.io",
		"*":                "wildcard",
		// A host whose name would start pullpass- (pullpass's own Secrets' prefix, which no
		// source may have): kind's registry in the e2e suite, pullpass-kind-registry:5000.
		"pullpass-kind-registry:5000": "registry-pullpass-kind-registry-5000",
	} {
		if got := NameForHost(in); got != want {
			t.Errorf("NameForHost(%q) = %q, want %q", in, got, want)
		}
		if msg := registryName(NameForHost(in)); msg != "" {
			t.Errorf("NameForHost(%q) = %q: %s", in, NameForHost(in), msg)
		}
	}
	// A long host gives a name a label value can hold, told apart from its neighbours'.
	long := strings.Repeat("a", 60) + ".example.com/team-"
	a, b := NameForHost(long+"a"), NameForHost(long+"b")
	if msg := registryName(a); msg != "" || a == b {
		t.Errorf("NameForHost of long hosts: %q (%s), %q", a, msg, b)
	}
	if n := NameForHost("pullpass-" + long + "a"); len(n) > 63 || secrets.Reserved(n) {
		t.Errorf("NameForHost of a long pullpass- host: %q", n)
	}
}

func TestAddRefusesBadInputBeforeTouchingTheCluster(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"auths":{"ghcr.io":{"auth":"not base64!"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// No kubeconfig exists at this path: any of these reaching for the cluster would fail
	// with a kubeconfig error instead of the input error asserted here.
	kc := filepath.Join(dir, "no-kubeconfig")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bad host", []string{"registries", "add", "ftp://ghcr.io", "--username", "u", "--password-stdin"}, "only an https:// or http:// scheme"},
		{"no credentials", []string{"registries", "add", "ghcr.io"}, "not a terminal"},
		{"username without stdin flag", []string{"registries", "add", "ghcr.io", "--username", "u"}, "not a terminal"},
		{"both sources", []string{"registries", "add", "ghcr.io", "--username", "u", "--password-stdin", "--from-docker-config", cfg}, "not both"},
		{"bad scope", []string{"registries", "add", "ghcr.io", "--scope", "Global", "--username", "u", "--password-stdin"}, "--scope"},
		{"empty stdin", []string{"registries", "add", "ghcr.io", "--username", "u", "--password-stdin"}, "standard input was empty"},
		{"bad docker config", []string{"registries", "add", "ghcr.io", "--from-docker-config", cfg}, `entry "ghcr.io": "auth" is not valid base64`},
		{"bad name", []string{"registries", "add", "ghcr.io", "--name", "Bad_Name", "--username", "u", "--password-stdin"}, "DNS subdomain"},
		{"long name", []string{"registries", "add", "ghcr.io", "--name", strings.Repeat("a", 64), "--username", "u", "--password-stdin"},
			"at most 63 characters: it is the value of the pullpass.io/registry label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdin := ""
			if strings.HasSuffix(tt.name, " name") {
				stdin = "pw"
			}
			var out, errOut bytes.Buffer
			code := run(context.Background(), "pullpass", append([]string{"--kubeconfig", kc}, tt.args...), Streams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}, nil)
			if code != ExitBadInput || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Fatalf("exit %d stderr %q, want exit %d and %q", code, errOut.String(), ExitBadInput, tt.wantErr)
			}
		})
	}
}

func TestKubectlPluginName(t *testing.T) {
	var out bytes.Buffer
	code := run(context.Background(), "/usr/local/bin/kubectl-pullpass", []string{"--help"}, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &out}, nil)
	if code != 0 || !strings.Contains(out.String(), "kubectl pullpass [command]") {
		t.Fatalf("exit %d, help:\n%s", code, out.String())
	}
}

const pullThroughYAML = `apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: ecr-hub}
spec:
  hosts: ["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]
  auth: {ecr: {}}
  pullThrough: {upstream: docker.io, prefix: docker-hub}
---
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: harbor-hub}
spec:
  hosts: ["harbor.example.com/hub"]
  namespaceSelector: {matchLabels: {team: a}}
  auth:
    secretRef: {name: harbor, namespace: pullpass}
  pullThrough: {upstream: docker.io, prefix: hub}
---
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: gitlab-hub}
spec:
  hosts: ["gitlab.example.com"]
  namespaceSelector: {matchLabels: {env: prod}}
  auth:
    secretRef: {name: gitlab, namespace: pullpass}
  pullThrough: {upstream: docker.io, prefix: group/dependency_proxy/containers}
`

func TestExplainPullThrough(t *testing.T) {
	file := writeFile(t, pullThroughYAML)
	const ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
	tests := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"nginx:1.27"}, 0, []string{
			"repository: docker.io/library/nginx\n",
			"pull-through cache: harbor-hub at harbor.example.com/hub/..., for namespaces selected by team=a\n",
			"pull-through cache: ecr-hub at " + ecr + "/docker-hub/..., for every namespace\n",
			"pull-through: ecr-hub, for the namespace (no labels)\n",
			"rewritten: " + ecr + "/docker-hub/library/nginx:1.27\n",
			"registry: ecr-hub\n", "pattern: " + ecr + "\n",
		}},
		{[]string{"docker.io/bitnami/redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "--namespace-labels", "team=a"}, 0, []string{
			"pull-through: harbor-hub, for the namespace (labels team=a)\n",
			"rewritten: harbor.example.com/hub/bitnami/redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
			"registry: harbor-hub\n", "source: secret pullpass/harbor\n",
		}},
		{[]string{"nginx", "--namespace-labels", "team=a,env=prod"}, 1, []string{
			"pull-through: none, caches gitlab-hub and harbor-hub are equally specific for the namespace (labels env=prod,team=a): the image stays as it is\n",
			"registry: none\n",
		}},
		{[]string{"ghcr.io/o/a"}, 1, []string{"registry: none\n"}},
	}
	for _, tt := range tests {
		code, out, errOut := runOffline(t, append([]string{"explain", "--registries", file}, tt.args...)...)
		if code != tt.code {
			t.Errorf("explain %v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("explain %v: stdout lacks %q:\n%s", tt.args, w, out)
			}
		}
		if strings.Contains(out, "rewritten:") != strings.Contains(strings.Join(tt.want, ""), "rewritten:") {
			t.Errorf("explain %v: rewritten or not, unlike expected:\n%s", tt.args, out)
		}
	}
	// For a pod of an opted-in namespace (offline: its labels and annotations given), the rewrite
	// comes first, then what the pod gets for the rewritten image.
	code, out, errOut := runOffline(t, "explain", "nginx:1.27", "--registries", file, "--namespace", "shop", "--namespace-labels", "team=a",
		"--namespace-annotation", "pullpass.io/inject=enabled")
	if code != 0 || !strings.Contains(out, "\nrewritten: harbor.example.com/hub/library/nginx:1.27\n") || !strings.Contains(out, "\npull secret: harbor-hub ") ||
		!strings.Contains(out, "\nregistry: harbor-hub\n") {
		t.Fatalf("--namespace offline, opted in: exit %d\n%s%s", code, out, errOut)
	}
	// Not opted in: the webhook neither rewrites nor adds pull secrets there.
	code, out, errOut = runOffline(t, "explain", "nginx:1.27", "--registries", file, "--namespace", "shop", "--namespace-labels", "team=a")
	if code != ExitNoMatch || strings.Contains(out, "rewritten:") || !strings.Contains(out, "namespace shop is not opted in") || !strings.Contains(out, "\nregistry: none\n") {
		t.Fatalf("--namespace offline, not opted in: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runOffline(t, "explain", "nginx", "--registries", file, "--service-account", "web")
	if code != ExitBadInput || !strings.Contains(errOut, "need --namespace") {
		t.Fatalf("--service-account without --namespace: exit %d, %q", code, errOut)
	}
	code, _, errOut = runOffline(t, "explain", "nginx", "--registries", file, "--namespace-labels", "a b")
	if code != ExitBadInput || !strings.Contains(errOut, "--namespace-labels") {
		t.Fatalf("bad --namespace-labels: exit %d, %q", code, errOut)
	}
}

// Docker Hub written as people paste it serves Docker Hub images, and explain says so.
func TestExplainDockerHubSpellings(t *testing.T) {
	for _, host := range []string{"docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"} {
		file := writeFile(t, `apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: hub}
spec:
  hosts: ["`+host+`"]
  auth:
    dockerHub: {secretRef: {name: hub, namespace: pullpass}}
---
apiVersion: pullpass.io/v1alpha1
kind: Registry
metadata: {name: ecr}
spec:
  hosts: ["https://123456789012.dkr.ecr.us-east-1.amazonaws.com/"]
  auth:
    ecr: {roleARN: "arn:aws:iam::123456789012:role/puller"}
`)
		for _, img := range []string{"nginx", "docker.io/library/nginx", "yourname/app", "index.docker.io/yourname/postgres"} {
			code, out, errOut := runOffline(t, "explain", img, "--registries", file)
			if code != 0 || !strings.Contains(out, "registry: hub\npattern: docker.io\n") || !strings.Contains(out, "source: Docker Hub token in secret pullpass/hub\n") {
				t.Errorf("host %q, explain %s: exit %d\n%s%s", host, img, code, out, errOut)
			}
		}
		code, out, _ := runOffline(t, "explain", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1", "--registries", file)
		if code != 0 || !strings.Contains(out, "source: ECR with the AWS default credential chain, assuming arn:aws:iam::123456789012:role/puller\n") {
			t.Errorf("explain of an ECR image: exit %d\n%s", code, out)
		}
	}
}
