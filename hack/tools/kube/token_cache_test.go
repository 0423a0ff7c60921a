package kube

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"

	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/agent/satoken/satokentest"
)

// The token entry (KEP-4412) under the kubelet's own code, as the Cluster entry is above: the
// kubelet asks the API server for the pod's service account token (here, a fake that mints one
// with the test issuer, as the API server would), runs pullpass-credential-provider-sa as it
// ships, and keeps its answers per service account. Two Namespaced registries on one host, each
// allowed to another namespace and service account, in any order on one node within the token
// entry's cache: every pod gets exactly its own registry's credentials, or none.

const tokenAudience = "pullpass.io"

type kubeletTokenPlugin struct {
	cache, execLog string
	issuer         *satokentest.Issuer
	mu             sync.Mutex
	next           int
	err            error
}

var (
	tokenPluginOnce sync.Once
	tokenPlugin     kubeletTokenPlugin
)

func kubeletWithTokenPlugin(t *testing.T) *kubeletTokenPlugin {
	t.Helper()
	tokenPluginOnce.Do(func() {
		p := &tokenPlugin
		p.issuer = satokentest.New("https://kubernetes.default.svc.cluster.local")
		dir, err := os.MkdirTemp("", "pullpass-kubelet-token-cache-")
		if err != nil {
			p.err = err
			return
		}
		p.cache, p.execLog = filepath.Join(dir, "credentials.json"), filepath.Join(dir, "execs.log")
		if p.err = satoken.WriteKeys(satoken.KeysPath(p.cache), p.issuer.Keys("node-1")); p.err != nil {
			return
		}
		bin := filepath.Join(dir, "bin")
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, "pullpass-real-sa"), "./cmd/pullpass-credential-provider-sa")
		build.Dir = "../../.."
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			p.err = fmt.Errorf("building the token plugin: %v\n%s", err, out)
			return
		}
		wrapper := fmt.Sprintf("#!/bin/sh\necho >>%s\nexec %s \"$@\"\n", p.execLog, filepath.Join(bin, "pullpass-real-sa"))
		if p.err = os.WriteFile(filepath.Join(bin, "pullpass-credential-provider-sa"), []byte(wrapper), 0o755); p.err != nil {
			return
		}
		// As agent/install writes the token entry (10 s: the chart's token cache duration).
		config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: pullpass-credential-provider-sa
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImages: ["*.tokens.test"]
    defaultCacheDuration: 10s
    args: ["--cache=%s", "--max-cache-duration=10s", "--no-record", "--service-account-token-audience=%s"]
    tokenAttributes:
      serviceAccountTokenAudience: %s
      cacheType: ServiceAccount
      requireServiceAccount: true
      optionalServiceAccountAnnotationKeys: ["pullpass.io/registries"]
`, p.cache, tokenAudience, tokenAudience)
		configPath := filepath.Join(dir, "config.yaml")
		if p.err = os.WriteFile(configPath, []byte(config), 0o644); p.err != nil {
			return
		}
		getToken := func(namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
			now := time.Now()
			pod := ""
			if ref := tr.Spec.BoundObjectRef; ref != nil {
				pod = ref.Name
			}
			tok := p.issuer.Token(satokentest.Claims{Audience: tr.Spec.Audiences, Namespace: namespace, ServiceAccount: name, Pod: pod,
				Node: "node-1", IssuedAt: now, Expiry: now.Add(time.Hour)})
			return &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{Token: tok, ExpirationTimestamp: metav1.NewTime(now.Add(time.Hour))}}, nil
		}
		getSA := func(namespace, name string) (*corev1.ServiceAccount, error) {
			return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("uid-" + namespace + "-" + name)}}, nil
		}
		p.err = plugin.RegisterCredentialProviderPlugins(configPath, bin, getToken, getSA)
	})
	if tokenPlugin.err != nil {
		t.Fatal(tokenPlugin.err)
	}
	return &tokenPlugin
}

// tokenLookup is one pull: a pod of namespace and service account, and an image path of the
// sequence's host; want is the registry whose credentials it must get ("" for none).
type tokenLookup struct{ namespace, serviceAccount, path, want string }

// run writes the grants of two registries of one host (a host of this run's own) and looks the
// pulls up in order, a keyring per pod as the kubelet makes them. It returns the first wrong
// answer and the plugin's execs.
func (p *kubeletTokenPlugin) run(pulls []tokenLookup) (wrong string, execs int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	host := fmt.Sprintf("h%d.tokens.test", p.next)
	err = nodegrant.Write(nodegrant.Path(p.cache), nodegrant.File{Grants: []nodegrant.Grant{
		{Registry: "team-a", Hosts: []string{host + "/team-a/"}, Username: "team-a", Password: "a-secret", Namespaces: []string{"ns-a"},
			ServiceAccounts: &nodegrant.ServiceAccounts{Names: []string{"puller-a"}}},
		{Registry: "team-b", Hosts: []string{host + "/team-b/"}, Username: "team-b", Password: "b-secret", Namespaces: []string{"ns-b"},
			ServiceAccounts: &nodegrant.ServiceAccounts{Names: []string{"puller-b"}}},
		{Registry: "shared", Hosts: []string{host + "/shared/"}, Username: "shared", Password: "s-secret", Namespaces: []string{"ns-a", "ns-b"}},
	}})
	if err != nil {
		return "", 0, err
	}
	_ = os.Remove(p.execLog)
	for i, l := range pulls {
		keyring := plugin.NewExternalCredentialProviderDockerKeyring(l.namespace, fmt.Sprintf("pod-%d", i), fmt.Sprintf("uid-%d", i), l.serviceAccount)
		got := usernames(keyring)(host + l.path)
		var want []string
		if l.want != "" {
			want = []string{l.want}
		}
		if !slices.Equal(got, want) && wrong == "" {
			wrong = fmt.Sprintf("%s/%s pulling %s got %q, want %q (pulls %v)", l.namespace, l.serviceAccount, host+l.path, got, want, pulls)
		}
	}
	return wrong, lines(p.execLog), nil
}

func TestTokenEntryUnderKubeletCache(t *testing.T) {
	p := kubeletWithTokenPlugin(t)
	pulls := []tokenLookup{
		{"ns-a", "puller-a", "/team-a/app", "team-a"},
		{"ns-b", "puller-b", "/team-b/app", "team-b"},
		{"ns-b", "puller-b", "/team-a/app", ""}, // another team's registry
		{"ns-a", "puller-b", "/team-b/app", ""}, // the right name in the wrong namespace
		{"ns-a", "default", "/team-a/app", ""},  // another service account of the namespace
		{"ns-a", "puller-a", "/public/app", ""}, // a path no registry serves
		{"ns-a", "puller-a", "/team-a/other", "team-a"},
		{"ns-b", "default", "/shared/app", "shared"}, // a registry of both namespaces, any service account
		{"ns-a", "puller-a", "/shared/app", "shared"},
	}
	wrong, execs, err := p.run(pulls)
	if err != nil {
		t.Fatal(err)
	}
	if wrong != "" {
		t.Fatal(wrong)
	}
	t.Logf("%d pulls in order: %d execs", len(pulls), execs)
	// The same pulls in random orders, each on a host of its own: what came before on the node
	// never changes an answer.
	rng := rand.New(rand.NewPCG(4412, 2026))
	total, lookups := 0, 0
	for range 30 {
		order := slices.Clone(pulls)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		wrong, execs, err := p.run(order)
		if err != nil {
			t.Fatal(err)
		}
		if wrong != "" {
			t.Fatal(wrong)
		}
		total, lookups = total+execs, lookups+len(order)
	}
	t.Logf("30 random orders, %d pulls: %d execs of the token plugin", lookups, total)
}
