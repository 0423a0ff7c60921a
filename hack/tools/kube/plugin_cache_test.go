package kube

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/pkg/match"
)

// The kubelet's own credential provider code (pkg/credentialprovider/plugin: its exec of the
// plugin, its cache keyed by image, then host, then globally, and its keyring that matches the
// answer's auth keys), driven with sequences of images against the plugin binary as it ships,
// reading a node cache the test writes. Every image must get exactly the credentials of the
// registry pullpass's own table picks for it (what `pullpass explain` says), or none, whatever
// came before it on the node within the cache duration (the chart's default, 1 minute): issue
// #23 saw a second team's image and a private image after a public one pull with nothing.
//
// The kubelet registers plugins once per process, so each sequence uses hosts of its own
// (a<N>.pullpass.test, b<N>.pullpass.test): nothing a sequence left in the kubelet's cache can
// answer another's images.
//
// Two providers are registered: the plugin as it ships, for *.pullpass.test, and the same
// plugin with every answer keyed by image, for *.imagekeyed.test, to count what each costs in
// execs on the same sequences.

type kubeletPlugins struct {
	dir        string
	cache      string // the node cache both plugins read
	execLog    string // one line per exec of the shipped plugin
	imageExecs string // one line per exec of the image-keyed one
	mu         sync.Mutex
	next       int
	err        error
}

var (
	pluginsOnce sync.Once
	plugins     kubeletPlugins
)

// kubeletWithPlugin builds the plugin and registers both providers with the kubelet's code.
func kubeletWithPlugin(t *testing.T) *kubeletPlugins {
	t.Helper()
	pluginsOnce.Do(func() {
		p := &plugins
		// Not t.TempDir: the registered providers point at it for the rest of the process.
		dir, err := os.MkdirTemp("", "pullpass-kubelet-cache-")
		if err != nil {
			p.err = err
			return
		}
		p.dir, p.cache = dir, filepath.Join(dir, "credentials.json")
		p.execLog, p.imageExecs = filepath.Join(dir, "execs.log"), filepath.Join(dir, "image-keyed-execs.log")
		bin := filepath.Join(dir, "bin")
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, "pullpass-real"), "./cmd/pullpass-credential-provider")
		build.Dir = "../../.."
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			p.err = fmt.Errorf("building the plugin: %v\n%s", err, out)
			return
		}
		shipped := filepath.Join(bin, "pullpass-real")
		wrappers := map[string]string{
			"pullpass-credential-provider": fmt.Sprintf("#!/bin/sh\necho >>%s\nexec %s \"$@\"\n", p.execLog, shipped),
			"pullpass-image-keyed": fmt.Sprintf("#!/bin/sh\necho >>%s\n%s \"$@\" | sed 's/\"cacheKeyType\":\"Registry\"/\"cacheKeyType\":\"Image\"/'\n",
				p.imageExecs, shipped),
		}
		for name, script := range wrappers {
			if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
				p.err = err
				return
			}
		}
		provider := func(name, match string) string {
			return fmt.Sprintf(`  - name: %s
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImages: ["%s"]
    defaultCacheDuration: 1m
    args: ["--cache=%s", "--max-cache-duration=1m", "--no-record"]
`, name, match, p.cache)
		}
		config := "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n" +
			provider("pullpass-credential-provider", "*.pullpass.test") + provider("pullpass-image-keyed", "*.imagekeyed.test")
		configPath := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
			p.err = err
			return
		}
		p.err = plugin.RegisterCredentialProviderPlugins(configPath, bin, nil, nil)
	})
	if plugins.err != nil {
		t.Fatal(plugins.err)
	}
	return &plugins
}

// entrySpec is one host pattern of one registry; host is "a", "b" or "*" (both), in the
// sequence's own domain.
type entrySpec struct {
	registry int
	host     string
	path     string
}

// runSequence writes the node cache for entries and looks up each image (host "a" or "b", and a
// path) through the kubelet's keyring, as the kubelet does before each pull. It returns the
// first wrong answer, and the execs each provider made.
func (p *kubeletPlugins) runSequence(entries []entrySpec, images [][2]string) (wrong string, execs, imageKeyedExecs int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	n := p.next
	var registries []nodecache.Entry
	domains := []string{"pullpass.test", "imagekeyed.test"}
	var tables []*match.Table[string]
	for _, domain := range domains {
		var table []match.Entry[string]
		for _, e := range entries {
			pattern := fmt.Sprintf("%s%d.%s%s", e.host, n, domain, e.path)
			name := fmt.Sprintf("registry-%d", e.registry)
			pat, err := match.ParsePattern(pattern)
			if err != nil {
				return "", 0, 0, err
			}
			table = append(table, match.Entry[string]{Name: name, Pattern: pat, Value: name})
			i := slices.IndexFunc(registries, func(r nodecache.Entry) bool { return r.Registry == name })
			if i < 0 {
				registries = append(registries, nodecache.Entry{Registry: name, Username: name, Password: "password-of-" + name})
				i = len(registries) - 1
			}
			registries[i].Hosts = append(registries[i].Hosts, pattern)
		}
		tables = append(tables, match.NewTable(table))
	}
	if err := nodecache.Write(p.cache, nodecache.File{Entries: registries}); err != nil {
		return "", 0, 0, err
	}
	_ = os.Remove(p.execLog)
	_ = os.Remove(p.imageExecs)
	for d, domain := range domains {
		for _, img := range images {
			image := fmt.Sprintf("%s%d.%s%s", img[0], n, domain, img[1])
			// A keyring per pod, as the kubelet makes one per pull; the plugins' caches are shared.
			keyring := plugin.NewExternalCredentialProviderDockerKeyring("ns", "pod", "uid", "sa")
			got := usernames(keyring)(image)
			var want []string
			if best, ok := tables[d].Lookup(image); ok {
				want = []string{best.Value}
			}
			if !slices.Equal(got, want) && wrong == "" {
				wrong = fmt.Sprintf("%s got the credentials of %q, want %q (sequence %q)", image, got, want, images)
			}
		}
	}
	return wrong, lines(p.execLog), lines(p.imageExecs), nil
}

// usernames: the distinct usernames the keyring offers for an image (a registry's
// credentials may be offered twice, under two of its patterns).
func usernames(k credentialprovider.DockerKeyring) func(string) []string {
	return func(image string) []string {
		creds, _ := k.Lookup(image)
		var out []string
		for _, c := range creds {
			out = append(out, c.Username)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
}

func lines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// TestPluginAnswersUnderKubeletCache: the cases issue #23 saw, then random sequences.
func TestPluginAnswersUnderKubeletCache(t *testing.T) {
	p := kubeletWithPlugin(t)
	twoTeams := []entrySpec{{1, "a", "/team-a/"}, {2, "a", "/team-b/"}}
	for _, tc := range []struct {
		name    string
		entries []entrySpec
		images  [][2]string
	}{
		{"two teams on one host, one after the other", twoTeams,
			[][2]string{{"a", "/team-a/app"}, {"a", "/team-b/app"}, {"a", "/team-a/other"}}},
		{"a public image of the host, then a private one", twoTeams,
			[][2]string{{"a", "/fluxcd/flux"}, {"a", "/team-a/app"}, {"a", "/team-b/app"}}},
		{"a public image of a host that no registry serves, then one of a served host", []entrySpec{{1, "a", ""}},
			[][2]string{{"b", "/library/nginx"}, {"a", "/library/nginx"}}},
		{"nested groups of two registries", []entrySpec{{1, "a", "/group/"}, {2, "a", "/group/sub/"}},
			[][2]string{{"a", "/group/sub/app"}, {"a", "/group/app"}, {"a", "/other/app"}, {"a", "/group/sub/app"}}},
		{"a host-wide registry beside a path one", []entrySpec{{1, "a", ""}, {2, "a", "/team-b/"}},
			[][2]string{{"a", "/team-b/app"}, {"a", "/x/app"}, {"a", "/team-b/app"}}},
		{"a glob of both hosts beside an exact one", []entrySpec{{1, "*", ""}, {2, "a", ""}},
			[][2]string{{"b", "/x"}, {"a", "/x"}, {"b", "/y"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wrong, execs, imageKeyed, err := p.runSequence(tc.entries, tc.images)
			if err != nil {
				t.Fatal(err)
			}
			if wrong != "" {
				t.Fatal(wrong)
			}
			t.Logf("execs: %d (every answer keyed by image: %d)", execs, imageKeyed)
		})
	}
}

// TestPluginAnswersUnderKubeletCacheRandom: random registry tables and image sequences, from a
// fixed seed; the execs of both strategies summed.
func TestPluginAnswersUnderKubeletCacheRandom(t *testing.T) {
	p := kubeletWithPlugin(t)
	hosts := []string{"a", "a", "b", "*"}
	paths := []string{"", "/org", "/org/", "/org/team/", "/team-a/", "/team-b/"}
	imagePaths := []string{"/org/app", "/org/team/app", "/orgs/x", "/team-a/x", "/team-b/y", "/public/x", "/library/nginx"}
	rng := rand.New(rand.NewPCG(23, 2026))
	var execs, imageKeyed, lookups int
	for range 60 {
		var entries []entrySpec
		for range 1 + rng.IntN(4) {
			entries = append(entries, entrySpec{rng.IntN(3), hosts[rng.IntN(len(hosts))], paths[rng.IntN(len(paths))]})
		}
		var images [][2]string
		for range 2 + rng.IntN(6) {
			images = append(images, [2]string{[]string{"a", "b"}[rng.IntN(2)], imagePaths[rng.IntN(len(imagePaths))]})
		}
		wrong, e, ik, err := p.runSequence(entries, images)
		if err != nil {
			t.Fatal(err)
		}
		if wrong != "" {
			t.Fatal(wrong)
		}
		execs, imageKeyed, lookups = execs+e, imageKeyed+ik, lookups+len(images)
	}
	t.Logf("%d lookups: %d execs of the plugin as it ships, %d with every answer keyed by image", lookups, execs, imageKeyed)
	if execs > imageKeyed {
		t.Errorf("answers keyed by host cost more execs (%d) than answers keyed by image (%d)", execs, imageKeyed)
	}
}

// A registry added for a host the node has just pulled a public image of is served at the next
// pull: an answer with no credentials is never cached (it would hold for the whole host).
func TestPluginServesARegistryAddedAfterAMiss(t *testing.T) {
	p := kubeletWithPlugin(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	host := fmt.Sprintf("a%d.pullpass.test", p.next)
	lookup := func(image string) []string {
		return usernames(plugin.NewExternalCredentialProviderDockerKeyring("ns", "pod", "uid", "sa"))(image)
	}
	if err := nodecache.Write(p.cache, nodecache.File{}); err != nil {
		t.Fatal(err)
	}
	if got := lookup(host + "/library/nginx"); len(got) != 0 {
		t.Fatalf("a public image got %q", got)
	}
	if err := nodecache.Write(p.cache, nodecache.File{Entries: []nodecache.Entry{{Registry: "new", Hosts: []string{host + "/team/"}, Username: "new", Password: "p"}}}); err != nil {
		t.Fatal(err)
	}
	if got := lookup(host + "/team/app"); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("the registry added after a miss on its host: %q, want [new]", got)
	}
}
