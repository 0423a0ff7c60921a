package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
	"github.com/pullpass/pullpass/pkg/secrets"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Credentials used by the golden cases. None may ever be printed.
const (
	hubToken      = "dckr_pat_s3cret-hub-token"
	examplePass   = "example-PASSWORD-1"
	awsKeyID      = "AKIAIOSFODNN7EXAMPLE"
	awsSecret     = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	ecrToken      = "eyJwYXlsb2FkIjoiRUNSIHRva2VuIn0="
	helperSecret  = "helper-s3cret"
	podmanPass    = "podman-s3cret"
	koyebPass     = "koyeb-s3cret"
	gcrPrivateKey = "-----BEGIN PRIVATE KEY-----\nMIIE:not:a:real:key\n-----END PRIVATE KEY-----\n"
)

var neverPrinted = []string{hubToken, examplePass, awsSecret, ecrToken, helperSecret, podmanPass, koyebPass, "MIIE:not:a:real:key"}

// gcrKey is a service account JSON key: colons, quotes and newlines, as GCR takes it for _json_key.
var gcrKey = fmt.Sprintf("{\n  \"type\": \"service_account\",\n  \"project_id\": \"p\",\n  \"private_key\": %q,\n  \"client_email\": \"puller@p.iam.gserviceaccount.com\"\n}", gcrPrivateKey)

type step struct {
	args   []string
	stdin  string
	prompt []string // answers typed at a terminal; nil: standard input is not a terminal
	code   int
}

type goldenCase struct {
	name  string
	setup func(t *testing.T, c *testCluster, dir string)
	steps []step
	check func(t *testing.T, c *testCluster)
}

type testCluster struct {
	kube *fake.Clientset
	regs *fakeRegistries
}

func (c *testCluster) secret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s, err := c.kube.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("secret %s/%s: %v", ns, name, err)
	}
	return s
}

func (c *testCluster) registry(t *testing.T, name string) *v1alpha1.Registry {
	t.Helper()
	r, err := c.regs.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("registry %s: %v", name, err)
	}
	return r
}

// dump prints the cluster's registries and secrets, secrets' values as sizes only (usernames
// excepted), for the golden files.
func (c *testCluster) dump(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	regs, _ := c.regs.List(context.Background(), metav1.ListOptions{})
	for _, r := range regs.Items {
		out, err := yaml.Marshal(map[string]any{"registry": r.Name, "labels": r.Labels, "spec": r.Spec})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
	}
	list, err := c.kube.CoreV1().Secrets("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].Namespace+list.Items[i].Name < list.Items[j].Namespace+list.Items[j].Name
	})
	for _, s := range list.Items {
		fmt.Fprintf(&b, "secret: %s/%s type %s labels %v\n", s.Namespace, s.Name, s.Type, s.Labels)
		var keys []string
		for k := range s.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := s.Data[k]
			switch k {
			case corev1.DockerConfigJsonKey:
				cfg, err := dockerconfig.Parse(v)
				if err != nil {
					t.Fatalf("secret %s: %v", s.Name, err)
				}
				var entries []string
				for key, e := range cfg.Auths {
					entries = append(entries, fmt.Sprintf("%s (username %s, password %d bytes)", key, e.Username, len(e.Password)))
				}
				sort.Strings(entries)
				fmt.Fprintf(&b, "  %s: %s\n", k, strings.Join(entries, "; "))
			case "username":
				fmt.Fprintf(&b, "  %s: %s\n", k, v)
			default:
				fmt.Fprintf(&b, "  %s: %d bytes\n", k, len(v))
			}
		}
	}
	return b.String()
}

func writeTemp(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// helpers installs fake docker credential helpers on PATH: pptest answers, ppfail fails as a
// helper with no entry does.
func helpers(t *testing.T, dir string) {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTemp(t, bin, "docker-credential-pptest", `#!/bin/sh
[ "$1" = get ] || exit 1
read server
echo "{\"ServerURL\":\"$server\",\"Username\":\"helper-user\",\"Secret\":\"`+helperSecret+`\"}"
`, 0o755)
	writeTemp(t, bin, "docker-credential-ppfail", "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n", 0o755)
	writeTemp(t, bin, "docker-credential-ppbroken", "#!/bin/sh\necho 'error: the keychain is locked' >&2\nexit 3\n", 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("DOCKER_AUTH_CONFIG", "")
}

func existing(name, host string) *v1alpha1.Registry {
	return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{Hosts: []string{host},
		Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: name, Namespace: "pullpass"}}}}
}

func dockerHubSecret(t *testing.T, c *testCluster, name, user, token string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "pullpass", Labels: sourceLabels(name)},
		Data: map[string][]byte{"username": []byte(user), "token": []byte(token)}}
	if _, err := c.kube.CoreV1().Secrets("pullpass").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

var goldenCases = []goldenCase{
	{
		name: "dockerhub-url-prompted",
		steps: []step{
			{args: []string{"registries", "add", "https://index.docker.io/v1/"}, prompt: []string{"yourname", hubToken}},
			{args: []string{"registries"}},
			{args: []string{"registries", "add", "index.docker.io", "yourname", "--password-stdin"}, stdin: hubToken + "\n"},
			{args: []string{"registries", "remove", "https://index.docker.io/v1/"}},
			{args: []string{"registries"}},
		},
	},
	{
		name: "convox-three-args",
		steps: []step{
			{args: []string{"registries", "add", "registry.example.org", "username", examplePass}},
			{args: []string{"registries"}},
			{args: []string{"registries", "remove", "registry.example.org"}},
		},
		check: func(t *testing.T, c *testCluster) {
			if regs, _ := c.regs.List(context.Background(), metav1.ListOptions{}); len(regs.Items) != 0 {
				t.Fatalf("registries left: %v", regs.Items)
			}
		},
	},
	{
		name: "username-asks-password",
		steps: []step{
			{args: []string{"registries", "add", "ghcr.io/", "bot"}, prompt: []string{examplePass}},
		},
		check: func(t *testing.T, c *testCluster) {
			cfg, _ := dockerconfig.Parse(c.secret(t, "pullpass", "ghcr.io").Data[corev1.DockerConfigJsonKey])
			if e, ok := cfg.Lookup("ghcr.io"); !ok || e.Username != "bot" || e.Password != examplePass {
				t.Fatalf("ghcr.io entry %v", e)
			}
		},
	},
	{
		name: "ecr-iam-keys-as-username-password",
		steps: []step{
			{args: []string{"registries", "add", "901416387788.dkr.ecr.us-east-1.amazonaws.com", awsKeyID, awsSecret}},
			{args: []string{"registries", "list"}},
		},
		check: func(t *testing.T, c *testCluster) {
			r := c.registry(t, "901416387788.dkr.ecr.us-east-1.amazonaws.com")
			ref := r.Spec.Auth.ECR.AccessKeySecretRef
			s := c.secret(t, ref.Namespace, ref.Name)
			if string(s.Data["aws_access_key_id"]) != awsKeyID || string(s.Data["aws_secret_access_key"]) != awsSecret {
				t.Fatalf("keys secret %v", s.Data)
			}
		},
	},
	{
		name: "ecr-key-id-flag-secret-on-stdin-role",
		steps: []step{
			{args: []string{"registries", "add", "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "--aws-access-key-id", awsKeyID,
				"--role-arn", "arn:aws-us-gov:iam::123456789012:role/puller", "--scope", "cluster"}, stdin: awsSecret + "\n"},
			{args: []string{"registries", "add", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "--aws-access-key-id", awsKeyID},
				prompt: []string{awsSecret}},
		},
		check: func(t *testing.T, c *testCluster) {
			s := c.secret(t, "pullpass", "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com")
			if string(s.Data["aws_secret_access_key"]) != awsSecret {
				t.Fatal("the secret access key from stdin is not in the keys secret")
			}
		},
	},
	{
		name: "ecr-default-chain",
		steps: []step{
			{args: []string{"registries", "add", "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/", "--region", "eu-west-1", "--namespaces", "shop,web"}, prompt: []string{}},
		},
	},
	{
		name: "ecr-refuses-a-token-and-a-password",
		steps: []step{
			{args: []string{"registries", "add", "901416387788.dkr.ecr.us-east-1.amazonaws.com", "AWS", ecrToken}, code: 2},
			{args: []string{"registries", "add", "901416387788.dkr.ecr.us-east-1.amazonaws.com", "--username", "deploy", "--password-stdin"}, stdin: examplePass, code: 2},
			{args: []string{"registries", "add", "901416387788.dkr.ecr.us-east-1.amazonaws.com", "ASIAIOSFODNN7EXAMPLE", awsSecret}, code: 2},
			{args: []string{"registries", "add", "901416387788.dkr.ecr.us-east-1.amazonaws.com", awsKeyID, "short"}, code: 2},
			{args: []string{"registries", "add", "registry.example.org", "--region", "us-east-1"}, code: 2},
		},
	},
	{
		name: "namespaces-and-selector",
		steps: []step{
			{args: []string{"registries", "add", "ghcr.io", "--username", "bot", "--password-stdin", "--namespaces", "web,shop", "--namespace-selector", "team=shop"}, stdin: examplePass},
			{args: []string{"registries", "add", "registry.gitlab.com", "--username", "deploy", "--password-stdin", "--namespaces", "shop"}, stdin: examplePass},
			{args: []string{"registries"}},
			{args: []string{"registries", "add", "ghcr.io", "--scope", "Cluster"}, prompt: []string{"bot", examplePass}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--scope", "Cluster", "--namespaces", ""}, prompt: []string{"bot", examplePass}},
			{args: []string{"registries", "add", "ghcr.io", "bot", "--password-stdin"}, stdin: examplePass},
			{args: []string{"registries", "add", "quay.io", "--scope", "Cluster", "--namespaces", "shop"}, prompt: []string{}, code: 2},
			{args: []string{"registries", "add", "quay.io", "--namespace-selector", "team in (a"}, code: 2},
			{args: []string{"registries", "add", "quay.io", "--namespaces", "Shop_1"}, code: 2},
		},
	},
	{
		name: "delivery-node",
		steps: []step{
			{args: []string{"registries", "add", "ghcr.io/team", "--username", "bot", "--password-stdin", "--delivery", "Node", "--namespaces", "shop", "--service-accounts", "web,builder"}, stdin: examplePass},
			{args: []string{"registries"}},
			{args: []string{"registries", "add", "ghcr.io/team", "--service-accounts-annotated"}, prompt: []string{"bot", examplePass}},
			{args: []string{"registries", "add", "ghcr.io/team", "--service-accounts", ""}, prompt: []string{"bot", examplePass}},
			{args: []string{"registries", "add", "quay.io", "--delivery", "Carrier"}, code: 2},
			{args: []string{"registries", "add", "quay.io", "--service-accounts", "web"}, prompt: []string{"bot", examplePass}, code: 2},
			{args: []string{"registries", "add", "quay.io", "--scope", "Cluster", "--delivery", "PullSecret"}, prompt: []string{"bot", examplePass}, code: 2},
			{args: []string{"registries", "add", "quay.io", "--delivery", "Node", "--service-accounts", "Web_1"}, code: 2},
		},
	},
	{
		name: "docker-config-helpers",
		setup: func(t *testing.T, c *testCluster, dir string) {
			helpers(t, dir)
			writeTemp(t, dir, "config.json", `{"auths":{"ghcr.io":{}},"credsStore":"pptest","credHelpers":{"quay.io":"ppfail","registry.example.org":"ppbroken","registry.example.com":"ppmissing"}}`, 0o600)
		},
		steps: []step{
			{args: []string{"registries", "add", "ghcr.io", "--from-docker-config", "{dir}/config.json"}},
			{args: []string{"registries", "add", "https://index.docker.io/v1/", "--from-docker-config", "{dir}/config.json"}},
			{args: []string{"registries", "add", "quay.io", "--from-docker-config", "{dir}/config.json"}, code: 2},
			{args: []string{"registries", "add", "registry.example.org", "--from-docker-config", "{dir}/config.json"}, code: 2},
			{args: []string{"registries", "add", "registry.example.com", "--from-docker-config", "{dir}/config.json"}, code: 2},
		},
		check: func(t *testing.T, c *testCluster) {
			s := c.secret(t, "pullpass", "docker.io")
			if string(s.Data["username"]) != "helper-user" || string(s.Data["token"]) != helperSecret {
				t.Fatal("the Docker Hub secret does not hold the helper's answer")
			}
		},
	},
	{
		name: "podman-skopeo-koyeb-gcr",
		setup: func(t *testing.T, c *testCluster, dir string) {
			writeTemp(t, dir, "auth.json", `{"auths":{"docker.io":{"auth":"`+b64("podman-user:"+podmanPass)+`"},"quay.io/team":{"auth":"`+b64("robot:"+podmanPass)+`"}}}`, 0o600)
			writeTemp(t, dir, "koyeb.json", `{"auths":{"my.docker.registry.io":{"username":"koyeb-user","password":"`+koyebPass+`"}}}`, 0o600)
			writeTemp(t, dir, "gcr.json", `{"auths":{"gcr.io":{"auth":"`+b64("_json_key:"+gcrKey)+`"}}}`, 0o600)
		},
		steps: []step{
			{args: []string{"registries", "add", "docker.io", "--from-docker-config", "{dir}/auth.json"}},
			{args: []string{"registries", "add", "quay.io/team", "--from-docker-config", "{dir}/auth.json"}},
			{args: []string{"registries", "add", "https://my.docker.registry.io", "--from-docker-config", "{dir}/koyeb.json"}},
			{args: []string{"registries", "add", "gcr.io", "--from-docker-config", "{dir}/gcr.json"}},
			{args: []string{"registries", "add", "eu.gcr.io", "--username", "_json_key", "--password-stdin"}, stdin: gcrKey + "\n"},
			{args: []string{"registries"}},
		},
		check: func(t *testing.T, c *testCluster) {
			for _, name := range []string{"gcr.io", "eu.gcr.io"} {
				cfg, _ := dockerconfig.Parse(c.secret(t, "pullpass", name).Data[corev1.DockerConfigJsonKey])
				if e, ok := cfg.Lookup(name); !ok || e.Username != "_json_key" || e.Password != gcrKey {
					t.Fatalf("%s: the JSON key did not arrive whole (%d bytes, want %d)", name, len(e.Password), len(gcrKey))
				}
			}
		},
	},
	{
		name: "bad-input-changes-nothing",
		setup: func(t *testing.T, c *testCluster, dir string) {
			helpers(t, dir)
			writeTemp(t, dir, "empty.json", "\n", 0o600)
			writeTemp(t, dir, "garbage.json", `{"auths":{"ghcr.io":{"auth":"`+examplePass+`"}}}`, 0o600)
			writeTemp(t, dir, "other.json", `{"auths":{"a.example.com":{"auth":"`+b64("a:b")+`"},"b.example.com":{"auth":"`+b64("a:b")+`"}}}`, 0o600)
			writeTemp(t, dir, "token.json", `{"auths":{"myreg.azurecr.io":{"identitytoken":"`+examplePass+`"}}}`, 0o600)
		},
		steps: []step{
			{args: []string{"registries", "add", "ghcr.io"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "bot"}, code: 2},
			{args: []string{"registries", "add", "username", "password"}, code: 2},
			{args: []string{"registries", "add", "ftp://ghcr.io", "bot", examplePass}, code: 2},
			{args: []string{"registries", "add", "ghcr.io/Team", "bot", examplePass}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--from-docker-config", "{dir}/missing.json"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--from-docker-config", "{dir}"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--from-docker-config", "{dir}/empty.json"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--from-docker-config", "{dir}/garbage.json"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--from-docker-config", "{dir}/other.json"}, code: 2},
			{args: []string{"registries", "add", "myreg.azurecr.io", "--from-docker-config", "{dir}/token.json"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "bot", "--from-docker-config", "{dir}/other.json"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "bot", examplePass, "--password-stdin"}, stdin: examplePass, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--password-stdin"}, stdin: examplePass, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--username", "u", "--password-stdin"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--scope", "Global", "u", examplePass}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "--name", "Bad_Name", "u", examplePass}, code: 2},
			{args: []string{"registries", "add", "ghcr.io"}, prompt: []string{""}, code: 2},
			{args: []string{"registries", "add", "registry.example.org", "--ecr"}, code: 2},
			{args: []string{"registries", "remove", "https://"}, code: 2},
			{args: []string{"registries", "remove", "ghcr.io"}, code: 1},
			{args: []string{"registries", "frobnicate"}, code: 2},
			{args: []string{"registries", "add", "ghcr.io", "a", "b", "c"}, code: 2},
		},
	},
	{
		name: "update-keeps-one-registry",
		setup: func(t *testing.T, c *testCluster, dir string) {
			c.regs.items["hub"] = &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "hub"}, Spec: v1alpha1.RegistrySpec{
				Hosts: []string{"registry-1.docker.io", "docker.io/myorg"},
				Auth:  v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: v1alpha1.SecretReference{Name: "hub", Namespace: "pullpass"}}}}}
			dockerHubSecret(t, c, "hub", "old", "old-token")
		},
		steps: []step{
			{args: []string{"registries", "add", "https://index.docker.io/v1/", "yourname", "--password-stdin"}, stdin: hubToken},
			{args: []string{"registries", "add", "docker.io", "--name", "other", "yourname", "--password-stdin"}, stdin: hubToken, code: 2},
			{args: []string{"registries", "remove", "docker.io/myorg"}},
			{args: []string{"registries"}},
		},
	},
	{
		name: "ecr-keys-given-up-for-default-chain",
		steps: []step{
			{args: []string{"registries", "add", "901416387788.dkr.ecr.us-east-1.amazonaws.com", awsKeyID, awsSecret}},
			{args: []string{"registries", "add", "901416387788.dkr.ecr.us-east-1.amazonaws.com"}},
			{args: []string{"registries"}},
		},
	},
	{
		name: "users-own-secret-is-never-overwritten",
		setup: func(t *testing.T, c *testCluster, dir string) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "pullpass"}, Data: map[string][]byte{"password": []byte("x")}}
			if _, err := c.kube.CoreV1().Secrets("pullpass").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		steps: []step{
			{args: []string{"registries", "add", "ghcr.io", "--name", "mine", "bot", examplePass}, code: 2},
		},
	},
}

func TestRegistriesGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// A cluster with the chart's defaults and token mode: the agents serve every delivery.
			c := &testCluster{kube: fake.NewClientset(nodeDelivery(nodedelivery.Tokens)), regs: newFakeRegistries()}
			if tc.setup != nil {
				tc.setup(t, c, dir)
			}
			var log strings.Builder
			for _, st := range tc.steps {
				args := make([]string, len(st.args))
				for i, a := range st.args {
					args[i] = strings.ReplaceAll(a, "{dir}", dir)
				}
				if len(args) > 1 && args[0] == "registries" && args[1] == "add" {
					// Nobody verifies in this fake cluster: waiting is verify_test.go's.
					args = append(args, "--no-wait")
				}
				var out, errOut bytes.Buffer
				o := &options{streams: Streams{In: strings.NewReader(st.stdin), Out: &out, ErrOut: &errOut}, clients: &Clients{Kube: c.kube, Registries: c.regs}}
				var p *fakePrompter
				if st.prompt != nil {
					p = &fakePrompter{answers: st.prompt}
					o.prompt = p
				}
				code := runWith(context.Background(), "pullpass", args, o)
				fmt.Fprintf(&log, "$ pullpass %s\n", strings.Join(quoteArgs(st.args), " "))
				if st.stdin != "" {
					fmt.Fprintf(&log, "(standard input: %d bytes)\n", len(st.stdin))
				}
				if p != nil {
					fmt.Fprintf(&log, "(terminal asked: %q)\n", p.asked)
					if len(p.answers) > 0 {
						t.Errorf("%v: prompts not asked for answers %d", st.args, len(p.answers))
					}
				}
				fmt.Fprintf(&log, "exit %d\n%s", code, out.String())
				for _, l := range strings.SplitAfter(errOut.String(), "\n") {
					if l != "" {
						fmt.Fprintf(&log, "stderr: %s", l)
					}
				}
				log.WriteString("\n")
				if code != st.code {
					t.Errorf("%v: exit %d, want %d (stderr %q)", st.args, code, st.code, errOut.String())
				}
			}
			log.WriteString("--- cluster\n")
			log.WriteString(c.dump(t))
			got := strings.ReplaceAll(log.String(), dir, "{dir}")
			for _, s := range neverPrinted {
				if strings.Contains(got, s) {
					t.Fatalf("a credential was printed:\n%s", got)
				}
			}
			golden(t, filepath.Join("testdata", tc.name+".golden"), got)
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// quoteArgs shows arguments as a shell would take them, credentials masked.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		for _, s := range neverPrinted {
			if a == s {
				a = "<secret>"
			}
		}
		if a == "" || strings.ContainsAny(a, " ()'") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no golden file %s: run go test ./pkg/cli -run %s -update", path, t.Name())
	}
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Fatalf("output differs from %s (go test ./pkg/cli -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// A Registry the API server refuses after the secret was written leaves no secret behind, and
// an update leaves the old secret as it was.
func TestRefusedRegistryLeavesNothingBehind(t *testing.T) {
	for _, prior := range []bool{false, true} {
		c := &testCluster{kube: fake.NewClientset(), regs: newFakeRegistries()}
		if prior {
			c.regs.items["ghcr.io"] = existing("ghcr.io", "ghcr.io").DeepCopy()
			data, _ := dockerConfigFor("ghcr.io", "old", "old-pass")
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ghcr.io", Namespace: "pullpass", Labels: sourceLabels("ghcr.io")},
				Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
			if _, err := c.kube.CoreV1().Secrets("pullpass").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		c.regs.failWrite = errors.New("etcdserver: request timed out")
		var out, errOut bytes.Buffer
		o := &options{streams: Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, clients: &Clients{Kube: c.kube, Registries: c.regs}}
		code := runWith(context.Background(), "pullpass", []string{"registries", "add", "ghcr.io", "bot", examplePass}, o)
		if code != ExitNoMatch || !strings.Contains(errOut.String(), "request timed out") {
			t.Fatalf("prior %t: exit %d, stderr %q", prior, code, errOut.String())
		}
		s, err := c.kube.CoreV1().Secrets("pullpass").Get(context.Background(), "ghcr.io", metav1.GetOptions{})
		switch {
		case !prior && err == nil:
			t.Fatal("the secret of a registry that was never made is left behind")
		case prior:
			if err != nil {
				t.Fatal(err)
			}
			u, _ := secrets.Username(s, []string{"ghcr.io"})
			if u != "old" {
				t.Fatalf("the old secret was not put back: username %q", u)
			}
		}
	}
}

// run runs the CLI against a test cluster, returning the exit code and standard error.
func (c *testCluster) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	o := &options{streams: Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, clients: &Clients{Kube: c.kube, Registries: c.regs}}
	return runWith(context.Background(), "pullpass", args, o), errOut.String()
}

func (c *testCluster) create(t *testing.T, s *corev1.Secret) *corev1.Secret {
	t.Helper()
	s, err := c.kube.CoreV1().Secrets(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// add --name never writes over a Secret the CLI did not make for that registry, even one
// labelled managed-by pullpass: the webhook's TLS Secret (it was deleted and replaced by a
// docker config, #24), a pull secret, a source made for another registry. Nothing changes.
func TestAddNeverTakesASecretItDidNotMakeForTheRegistry(t *testing.T) {
	managed := map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue}
	tls := func(name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "pullpass", Labels: managed}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key"), "ca.key": []byte("ca key")}}
	}
	pull, _ := dockerConfigFor("ghcr.io", "old", "old-pass")
	for _, tt := range []struct {
		name   string
		secret *corev1.Secret
	}{
		{"the webhook's TLS Secret", tls("pullpass-webhook-tls")},
		{"the webhook's TLS Secret, renamed", tls("webhook-cert")},
		{"a pull secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pullpass-ghcr.io", Namespace: "pullpass",
			Labels: map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRegistry: "ghcr.io", secrets.LabelRole: secrets.RolePullSecret}},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: pull}}},
		{"a source made for another registry", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: "pullpass", Labels: sourceLabels("other")},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: pull}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &testCluster{kube: fake.NewClientset(), regs: newFakeRegistries()}
			before := c.create(t, tt.secret)
			code, stderr := c.run(t, "registries", "add", "registry.example.org", "--name", tt.secret.Name, "bot", examplePass, "--no-wait")
			if code != 2 || !strings.Contains(stderr, "choose another --name") {
				t.Fatalf("exit %d, stderr %q; want 2 telling to choose another --name", code, stderr)
			}
			after := c.secret(t, "pullpass", tt.secret.Name)
			if after.UID != before.UID || after.ResourceVersion != before.ResourceVersion || after.Type != before.Type || !reflect.DeepEqual(after.Data, before.Data) {
				t.Fatalf("the secret changed: type %s, data keys %d", after.Type, len(after.Data))
			}
			if regs, _ := c.regs.List(context.Background(), metav1.ListOptions{}); len(regs.Items) != 0 {
				t.Fatalf("a registry was made: %s", regs.Items[0].Name)
			}
		})
	}
}

// remove deletes a source secret only when the CLI made it for the registry removed and no
// other Registry names it.
func TestRemoveDeletesOnlyItsOwnUnsharedSource(t *testing.T) {
	c := &testCluster{kube: fake.NewClientset(), regs: newFakeRegistries()}
	data, _ := dockerConfigFor("ghcr.io", "bot", examplePass)
	source := func(name, madeFor string) {
		c.create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "pullpass", Labels: sourceLabels(madeFor)},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}})
	}
	named := func(name, host, secret string) *v1alpha1.Registry {
		r := existing(name, host)
		r.Spec.Auth.SecretRef.Name = secret
		return r
	}
	source("a", "a")
	source("d", "d")
	source("e", "e")
	for _, r := range []*v1alpha1.Registry{
		named("a", "a.example.com", "a"),
		named("b", "b.example.com", "a"), // shares a's source
		named("c", "c.example.com", "d"), // names a source made for d
		named("e", "e.example.com", "e"),
	} {
		c.regs.items[r.Name] = r
	}
	exists := func(name string) bool {
		_, err := c.kube.CoreV1().Secrets("pullpass").Get(context.Background(), name, metav1.GetOptions{})
		return err == nil
	}
	for _, step := range []struct {
		remove string
		gone   []string // secrets deleted by this step
		kept   []string
	}{
		{"a", nil, []string{"a", "d", "e"}}, // b still uses a
		{"b", nil, []string{"a", "d", "e"}}, // made for a, not b
		{"c", nil, []string{"a", "d", "e"}}, // made for d
		{"e", []string{"e"}, []string{"a", "d"}},
	} {
		if code, stderr := c.run(t, "registries", "remove", step.remove); code != 0 {
			t.Fatalf("remove %s: exit %d, %s", step.remove, code, stderr)
		}
		for _, s := range step.gone {
			if exists(s) {
				t.Errorf("remove %s: secret %s is left", step.remove, s)
			}
		}
		for _, s := range step.kept {
			if !exists(s) {
				t.Errorf("remove %s: secret %s was deleted", step.remove, s)
			}
		}
	}
}
