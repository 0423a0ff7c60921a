package provider_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/provider"
	"github.com/pullpass/pullpass/agent/provider/bench"
	"github.com/pullpass/pullpass/pkg/allocbudget"
)

var update = flag.Bool("update", false, "rewrite the golden responses")

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func writeCache(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "credentials.json")
	err := nodecache.Write(path, nodecache.File{Entries: []nodecache.Entry{
		{Registry: "harbor", Hosts: []string{"harbor.example.com:5443"}, Username: "robot$ci", Password: "harbor-secret"},
		{Registry: "ecr", Hosts: []string{"*.dkr.ecr.*.amazonaws.com"}, Username: "AWS", Password: "ecr-token", ExpiresAt: now.Add(30 * time.Minute)},
		{Registry: "ecr-soon", Hosts: []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com"}, Username: "AWS", Password: "soon", ExpiresAt: now.Add(90 * time.Second)},
		{Registry: "expired", Hosts: []string{"old.example.com"}, Username: "u", Password: "p", ExpiresAt: now.Add(-time.Minute)},
		// Several registries of one host (issue #23): GitHub organisations, and GitLab groups nested.
		{Registry: "team-a", Hosts: []string{"ghcr.io/team-a/"}, Username: "a", Password: "a-token"},
		{Registry: "team-b", Hosts: []string{"ghcr.io/team-b/"}, Username: "b", Password: "b-token"},
		{Registry: "group", Hosts: []string{"gitlab.example.com/group/"}, Username: "g", Password: "group-token"},
		{Registry: "subgroup", Hosts: []string{"gitlab.example.com/group/sub/"}, Username: "s", Password: "subgroup-token"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// Byte-for-byte: each testdata/*.request.json is answered with its .response.json.
func TestGolden(t *testing.T) {
	cache := writeCache(t)
	reqs, _ := filepath.Glob("testdata/*.request.json")
	if len(reqs) < 8 {
		t.Fatalf("only %d golden requests", len(reqs))
	}
	for _, req := range reqs {
		name := strings.TrimSuffix(filepath.Base(req), ".request.json")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(req)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := provider.Run(provider.Config{CachePath: cache, Now: func() time.Time { return now }}, bytes.NewReader(in), &out); err != nil {
				t.Fatalf("Run: %v", err)
			}
			golden := strings.TrimSuffix(req, ".request.json") + ".response.json"
			if *update {
				_ = os.WriteFile(golden, out.Bytes(), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("response\n%s\nwant\n%s", out.Bytes(), want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	good := writeCache(t)
	broken := filepath.Join(t.TempDir(), "broken.json")
	if err := os.WriteFile(broken, []byte(`{"version":1,"entries":[{"registry":"x","password":"leak-me"`), 0o600); err != nil {
		t.Fatal(err)
	}
	future := filepath.Join(t.TempDir(), "future.json")
	if err := os.WriteFile(future, []byte(`{"version":9,"entries":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const v1 = `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"harbor.example.com:5443/a"}`
	tests := []struct {
		name, cache, req, want string
	}{
		{"broken cache", broken, v1, "not valid JSON at byte"},
		{"newer cache format", future, v1, "format version 9"},
		{"not JSON", good, `hello`, "not a JSON object"},
		{"wrong kind", good, `{"kind":"Pod","apiVersion":"v1"}`, `kind "Pod"`},
		{"unknown version", good, `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"a"}`, "is not served"},
		{"no image", good, `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}`, "names no image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := provider.Run(provider.Config{CachePath: tt.cache, Now: func() time.Time { return now }}, strings.NewReader(tt.req), &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "leak-me") || out.Len() != 0 {
				t.Fatalf("error %q leaks, or output %q was written", err, out.String())
			}
		})
	}
}

// The plugin counts its requests and records its config generation beside the cache, for the
// agent's metrics; a broken cache counts as an error.
func TestRecordsRequestsAndGeneration(t *testing.T) {
	cache := writeCache(t)
	run := func(img string) {
		req := `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"` + img + `"}`
		_ = provider.Run(provider.Config{CachePath: cache, Record: true, Generation: "gen-1", Now: func() time.Time { return now }},
			strings.NewReader(req), &bytes.Buffer{})
	}
	run("harbor.example.com:5443/a")
	run("harbor.example.com:5443/b")
	run("nowhere.example.com/a")
	if err := os.WriteFile(cache, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("harbor.example.com:5443/a")
	for result, want := range map[string]float64{nodecache.RequestHit: 2, nodecache.RequestMiss: 1, nodecache.RequestError: 1} {
		if got := nodecache.CountRequests(cache, result); got != want {
			t.Errorf("%s: %v, want %v", result, got, want)
		}
	}
	if gen, _ := os.ReadFile(nodecache.GenerationPath(cache)); string(gen) != "gen-1" {
		t.Errorf("generation %q, want gen-1", gen)
	}
}

// answer returns a function answering the benchmark's request from a 100-registry cache, as the
// agent configures the plugin (requests counted, generation recorded) or without the record.
func answer(t testing.TB, record bool) func() []byte {
	cache := filepath.Join(t.TempDir(), "credentials.json")
	req, want, err := bench.WriteCache(cache, 100)
	if err != nil {
		t.Fatal(err)
	}
	cfg := provider.Config{CachePath: cache, MaxCacheDuration: time.Minute}
	if record {
		cfg.Record, cfg.Generation = true, "bench"
	}
	var out bytes.Buffer
	run := func() []byte {
		out.Reset()
		if err := provider.Run(cfg, bytes.NewReader(req), &out); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	if got := run(); !bytes.Contains(got, want) {
		t.Fatalf("answer %s, want %s in it", got, want)
	}
	return func() []byte { return run() }
}

// One answer from a 100-registry cache: reading and decoding the cache (a few allocations, not
// a few per registry), one lookup, the answer, the record.
func TestAnswerAllocationBudget(t *testing.T) {
	run := answer(t, true)
	allocbudget.Check(t, "one plugin answer", 48, func() { run() })
}

func BenchmarkAnswer(b *testing.B) {
	for _, record := range []bool{true, false} {
		b.Run(fmt.Sprintf("record=%t", record), func(b *testing.B) {
			run := answer(b, record)
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}
