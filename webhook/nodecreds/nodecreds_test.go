package nodecreds_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/nodesecret"
	"github.com/pullpass/pullpass/webhook/nodecreds"
)

const ns = "pullpass"

var secretsGR = schema.GroupResource{Resource: "secrets"}

// store is a Store in a map; after each write, check sees every shard as it is then.
type store struct {
	secrets map[string]*corev1.Secret
	rv      int
	writes  int
	check   func(map[string]*corev1.Secret)
	getErr  error
}

func newStore() *store { return &store{secrets: map[string]*corev1.Secret{}} }

func (s *store) Get(_ context.Context, name string) (*corev1.Secret, error) {
	if s.getErr != nil {
		return nil, s.getErr
	}
	if sec, ok := s.secrets[name]; ok {
		return sec.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(secretsGR, name)
}

func (s *store) put(sec *corev1.Secret) *corev1.Secret {
	s.rv++
	s.writes++
	sec = sec.DeepCopy()
	sec.ResourceVersion = strconv.Itoa(s.rv)
	s.secrets[sec.Name] = sec
	if s.check != nil {
		s.check(s.secrets)
	}
	return sec.DeepCopy()
}

func (s *store) Create(_ context.Context, sec *corev1.Secret) (*corev1.Secret, error) {
	if _, ok := s.secrets[sec.Name]; ok {
		return nil, apierrors.NewAlreadyExists(secretsGR, sec.Name)
	}
	return s.put(sec), nil
}

func (s *store) Update(_ context.Context, sec *corev1.Secret) (*corev1.Secret, error) {
	if cur, ok := s.secrets[sec.Name]; !ok || cur.ResourceVersion != sec.ResourceVersion {
		return nil, apierrors.NewConflict(secretsGR, sec.Name, errors.New("stale"))
	}
	return s.put(sec), nil
}

func (s *store) Delete(_ context.Context, name string) error {
	delete(s.secrets, name)
	if s.check != nil {
		s.check(s.secrets)
	}
	return nil
}

// entries merges every shard.
func entries(secs map[string]*corev1.Secret) map[string]nodesecret.Entry {
	out := map[string]nodesecret.Entry{}
	for _, s := range secs {
		for k, v := range s.Data {
			if k == nodesecret.FormatKey {
				continue
			}
			e, err := nodesecret.Decode(k, v)
			if err != nil {
				panic(err)
			}
			out[k] = e
		}
	}
	return out
}

// sources are source Secrets by name; err, when set, is every read's answer.
type sources struct {
	secrets map[string]*corev1.Secret
	err     error
}

func (s *sources) Secret(_ context.Context, namespace, name string) (*corev1.Secret, error) {
	if s.err != nil {
		return nil, s.err
	}
	if sec, ok := s.secrets[namespace+"/"+name]; ok {
		return sec, nil
	}
	return nil, apierrors.NewNotFound(secretsGR, name)
}

func (s *sources) set(name, user, pass string, rv int) {
	data, _ := dockerconfig.ForHost(strings.TrimSuffix(name, "-src")+".example.com", user, pass).Marshal()
	s.secrets[ns+"/"+name] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: strconv.Itoa(rv)},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
}

type registries []*v1alpha1.Registry

func (r *registries) List() []*v1alpha1.Registry { return *r }

func clusterRegistry(name, srcNamespace, src string) *v1alpha1.Registry {
	return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 3}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{name + ".example.com"}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: srcNamespace, Name: src}}}}
}

type fixture struct {
	store *store
	srcs  *sources
	regs  *registries
	now   time.Time
	w     *nodecreds.Writer
}

func newFixture(t *testing.T, mutate ...func(*nodecreds.Config)) *fixture {
	t.Helper()
	f := &fixture{store: newStore(), srcs: &sources{secrets: map[string]*corev1.Secret{}}, regs: &registries{},
		now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	cfg := nodecreds.Config{Store: f.store, Registries: f.regs, Sources: f.srcs, Namespace: ns, Reserved: []string{"webhook-tls"},
		KeepLastGood: time.Hour, Now: func() time.Time { return f.now }, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	var err error
	if f.w, err = nodecreds.New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) sync(t *testing.T) map[string]nodesecret.Entry {
	t.Helper()
	if err := f.w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	return entries(f.store.secrets)
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	if _, err := nodecreds.New(nodecreds.Config{}); err == nil || !strings.HasPrefix(err.Error(), "invalid configuration: ") {
		t.Fatalf("New(empty) = %v, want an invalid configuration error", err)
	}
}

// No node-served registry: the node Secret is written all the same, empty, so the agents tell
// "nothing to serve" from "not written yet".
func TestEmptyNodeSecretIsWritten(t *testing.T) {
	f := newFixture(t)
	f.sync(t)
	s, ok := f.store.secrets[nodesecret.Name]
	if !ok {
		t.Fatal("no node secret written")
	}
	if len(s.Data) != 1 || string(s.Data[nodesecret.FormatKey]) != nodesecret.FormatVersion || s.Type != corev1.SecretTypeOpaque || !maps.Equal(s.Labels, nodesecret.Labels()) {
		t.Fatalf("node secret = type %s labels %v, %d keys; want an Opaque pullpass secret with its format alone", s.Type, s.Labels, len(s.Data))
	}
	writes := f.store.writes
	f.sync(t)
	if f.store.writes != writes {
		t.Fatal("an unchanged sync wrote the node secret again")
	}
}

// A Cluster-scope registry's credentials reach the node Secret; a rotation replaces them; a
// source deleted or emptied withdraws them at once.
func TestStaticCredentialsFollowTheSource(t *testing.T) {
	f := newFixture(t)
	f.srcs.set("app-src", "u", "p1", 1)
	*f.regs = append(*f.regs, clusterRegistry("app", ns, "app-src"))
	got := f.sync(t)
	if e := got["app"]; e.Username != "u" || e.Password != "p1" || e.Source.Name != "app-src" || e.Version != "secret/1" || e.Generation != 3 ||
		e.Spec == nil || !slices.Equal(e.Spec.Hosts, []string{"app.example.com"}) || e.Spec.Scope != v1alpha1.ScopeCluster {
		t.Fatalf("entry = %v (password %q, spec %+v), want u/p1 from app-src for the Registry's spec at generation 3", e, e.Password, e.Spec)
	}
	f.srcs.set("app-src", "u", "p2", 2)
	if e := f.sync(t)["app"]; e.Password != "p2" {
		t.Fatalf("after rotation the password is %q, want p2", e.Password)
	}
	f.srcs.secrets[ns+"/app-src"].Data = map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}
	f.srcs.secrets[ns+"/app-src"].ResourceVersion = "3"
	// The registry stays listed for the nodes (they report it unserved), with no credentials.
	if e, ok := f.sync(t)["app"]; !ok || e.HasCredentials() || e.Password != "" || e.Spec == nil {
		t.Fatalf("an emptied source's entry is %v (listed %t), want its spec and no credentials", e, ok)
	}
	f.srcs.set("app-src", "u", "p3", 4)
	f.sync(t)
	delete(f.srcs.secrets, ns+"/app-src")
	if e := f.sync(t)["app"]; e.HasCredentials() || e.Password != "" || e.Spec == nil {
		t.Fatalf("a deleted source's entry is %v, want its spec and no credentials", e)
	}
}

// A source that cannot be read now keeps the last good entry for KeepLastGood, then loses it.
func TestUnreadableSourceKeepsLastGoodForABoundedTime(t *testing.T) {
	f := newFixture(t)
	f.srcs.set("app-src", "u", "p1", 1)
	*f.regs = append(*f.regs, clusterRegistry("app", ns, "app-src"))
	f.sync(t)
	f.srcs.err = apierrors.NewServiceUnavailable("etcd is slow")
	for _, after := range []time.Duration{0, 59 * time.Minute} {
		f.now = f.now.Add(after)
		if e := f.sync(t)["app"]; e.Password != "p1" {
			t.Fatalf("%v into the failure the entry is %v, want the last good one", after, e)
		}
	}
	f.now = f.now.Add(time.Minute)
	if e := f.sync(t)["app"]; e.HasCredentials() || e.Password != "" {
		t.Fatalf("an hour into the failure the entry is still %v", e)
	}
}

// A spec change while the source cannot be read: with the same hosts and source the last good
// credentials take the new spec (a narrower namespace selector reaches the nodes at once); with
// other hosts the entry stays as it was, its credentials with the spec they were resolved for (a
// docker config's hosts chose them).
func TestLastGoodKeepsItsOwnSpec(t *testing.T) {
	f := newFixture(t)
	f.srcs.set("app-src", "u", "p1", 1)
	reg := clusterRegistry("app", ns, "app-src")
	*f.regs = append(*f.regs, reg)
	f.sync(t)
	f.srcs.err = apierrors.NewServiceUnavailable("etcd is slow")
	reg.Spec.Scope, reg.Spec.Delivery, reg.Generation = v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode, 4
	reg.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	if e := f.sync(t)["app"]; e.Password != "p1" || e.Generation != 4 || e.Spec.NamespaceSelector == nil {
		t.Fatalf("entry = %v, generation %d, spec %+v; want p1 with the narrower spec of generation 4", e, e.Generation, e.Spec)
	}
	reg.Spec.Hosts, reg.Generation = []string{"other.example.com"}, 5
	if e := f.sync(t)["app"]; e.Password != "p1" || e.Generation != 4 || !slices.Equal(e.Spec.Hosts, []string{"app.example.com"}) {
		t.Fatalf("entry = %v, generation %d, spec %+v; want the last good one at generation 4, for app.example.com", e, e.Generation, e.Spec)
	}
	f.srcs.err = nil
	f.srcs.secrets[ns+"/app-src"].Data[corev1.DockerConfigJsonKey], _ = dockerconfig.ForHost("other.example.com", "u", "p2").Marshal()
	if e := f.sync(t)["app"]; e.Password != "p2" || e.Generation != 5 || !slices.Equal(e.Spec.Hosts, []string{"other.example.com"}) {
		t.Fatalf("entry = %v, generation %d, spec %+v; want p2 at generation 5, for other.example.com", e, e.Generation, e.Spec)
	}
}

// An entry an older controller wrote (no spec) is kept while the source cannot be read, with the
// Registry's spec, if it was resolved for the Registry's generation (its hosts): agents that need
// a spec are not left with nothing to serve, nor given credentials chosen for other hosts.
func TestLastGoodFromAnOlderControllerGetsTheSpec(t *testing.T) {
	f := newFixture(t)
	other := nodesecret.Encode(nodesecret.Entry{Username: "u", Password: "p0", Source: nodesecret.SourceRef{Namespace: ns, Name: "other-src"}, Version: "1", Generation: 2})
	f.store.put(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: nodesecret.Name, Labels: nodesecret.Labels()},
		Data: map[string][]byte{"other": other}})
	*f.regs = append(*f.regs, clusterRegistry("other", ns, "other-src")) // generation 3
	f.srcs.err = apierrors.NewServiceUnavailable("etcd is slow")
	if e := f.sync(t)["other"]; e.HasCredentials() || e.Password != "" {
		t.Fatalf("entry = %v; an older controller's entry of generation 2 kept for generation 3", e)
	}
	f = newFixture(t)
	old := nodesecret.Encode(nodesecret.Entry{Username: "u", Password: "p0", Source: nodesecret.SourceRef{Namespace: ns, Name: "app-src"}, Version: "1", Generation: 3})
	f.store.put(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: nodesecret.Name, Labels: nodesecret.Labels()},
		Data: map[string][]byte{"app": old}})
	*f.regs = append(*f.regs, clusterRegistry("app", ns, "app-src"))
	f.srcs.err = apierrors.NewServiceUnavailable("etcd is slow")
	if e := f.sync(t)["app"]; e.Password != "p0" || e.Spec == nil || e.Generation != 3 {
		t.Fatalf("entry = %v, spec %+v, generation %d; want the older entry with the Registry's spec", e, e.Spec, e.Generation)
	}
}

// Only what nodes may serve is written: credentials from sources in pullpass's namespace that are
// not its own; Namespaced registries delivered by pull secrets have no entry; ECR registries on
// the node's identity, and registries whose source the nodes may not be served from, have their
// spec and no credentials.
func TestOnlyNodeSourcesAreWritten(t *testing.T) {
	f := newFixture(t)
	f.srcs.set("webhook-tls", "u", "p", 1)
	f.srcs.set("pullpass-webhook-tls", "u", "p", 1)
	f.srcs.set("ok-src", "u", "p", 1)
	f.srcs.secrets["other/elsewhere"] = f.srcs.secrets[ns+"/ok-src"]
	namespaced := clusterRegistry("namespaced", ns, "ok-src")
	namespaced.Spec.Scope = v1alpha1.ScopeNamespaced
	nodeIdentity := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ecr"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"123456789012.dkr.ecr.us-east-1.amazonaws.com"}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{}}}}
	*f.regs = append(*f.regs, clusterRegistry("tls", ns, "webhook-tls"), clusterRegistry("own", ns, "pullpass-webhook-tls"),
		clusterRegistry("elsewhere", "other", "elsewhere"), namespaced, nodeIdentity, clusterRegistry("ok", ns, "ok-src"))
	got := f.sync(t)
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, []string{"ecr", "elsewhere", "ok", "tls"}) {
		t.Fatalf("entries for %v, want every valid Cluster-scope registry", names)
	}
	for name, e := range got {
		if e.Spec == nil || e.HasCredentials() != (name == "ok") || (name != "ok" && (e.Password != "" || e.AWS != nil)) {
			t.Errorf("entry of %s = %v; want its spec, with credentials for ok alone", name, e)
		}
	}
}

// A cross-account ECR registry's keys go to the nodes, which fetch its tokens themselves.
func TestECRKeysAreWritten(t *testing.T) {
	f := newFixture(t)
	f.srcs.secrets[ns+"/keys"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keys", ResourceVersion: "7"},
		Data: map[string][]byte{"aws_access_key_id": []byte("AKIAEXAMPLE"), "aws_secret_access_key": []byte("s3cr3t")}}
	*f.regs = append(*f.regs, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ecr"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"123456789012.dkr.ecr.us-east-1.amazonaws.com"}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "keys"}}}}})
	e := f.sync(t)["ecr"]
	if e.AWS == nil || e.AWS.AccessKeyID != "AKIAEXAMPLE" || e.AWS.SecretAccessKey != "s3cr3t" || e.Version != "7" || e.Password != "" {
		t.Fatalf("entry = %v, want the keys of version 7", e)
	}
}

// Past ShardBytes the entries go on in the next shard; an entry that moves between shards is
// never missing from all of them, and a shard no longer needed is deleted.
func TestShards(t *testing.T) {
	f := newFixture(t, func(c *nodecreds.Config) { c.ShardBytes = 900 })
	want := map[string]bool{}
	f.store.check = func(secs map[string]*corev1.Secret) {
		got := entries(secs)
		for name := range want {
			if _, ok := got[name]; !ok {
				t.Errorf("after a write %s is in no shard", name)
			}
		}
	}
	for i := range 8 {
		name := fmt.Sprintf("r%d", i)
		f.srcs.set(name+"-src", "u", "p", 1)
		*f.regs = append(*f.regs, clusterRegistry(name, ns, name+"-src"))
	}
	if got := f.sync(t); len(got) != 8 {
		t.Fatalf("%d entries, want 8", len(got))
	}
	if len(f.store.secrets) < 2 {
		t.Fatalf("%d shards for 8 entries of ~230 bytes in 900-byte shards", len(f.store.secrets))
	}
	for _, s := range f.store.secrets {
		size := 0
		for k, v := range s.Data {
			size += len(k) + len(v)
		}
		if size > 900 {
			t.Errorf("shard %s holds %d bytes, over 900", s.Name, size)
		}
	}
	for i := range 8 {
		want[fmt.Sprintf("r%d", i)] = true
	}
	// r0 grows: entries move on to later shards, none missing meanwhile.
	f.srcs.set("r0-src", "u", strings.Repeat("x", 450), 2)
	f.sync(t)
	// Most go: the later shards are deleted, what stays moves back.
	*f.regs = (*f.regs)[:2]
	want = map[string]bool{"r0": true, "r1": true}
	got := f.sync(t)
	if len(got) != 2 {
		t.Fatalf("entries %v, want r0 and r1", slices.Sorted(maps.Keys(got)))
	}
	if len(f.store.secrets) != 2 {
		t.Fatalf("%d shards for r0 (~750 bytes) and r1 (~230), want 2", len(f.store.secrets))
	}
	*f.regs = (*f.regs)[1:]
	want = map[string]bool{"r1": true}
	f.sync(t)
	if _, ok := f.store.secrets[nodesecret.ShardName(1)]; ok || len(f.store.secrets) != 1 {
		t.Fatalf("shards %v, want %s alone", slices.Sorted(maps.Keys(f.store.secrets)), nodesecret.Name)
	}
}

// More than every shard holds: the first ones are served, the others not, and the sync says so
// in the log (never the credentials).
func TestPastEveryShard(t *testing.T) {
	f := newFixture(t, func(c *nodecreds.Config) { c.ShardBytes = 300 })
	for i := range nodesecret.MaxShards + 2 {
		name := fmt.Sprintf("r%d", i)
		f.srcs.set(name+"-src", "u", "p", 1)
		*f.regs = append(*f.regs, clusterRegistry(name, ns, name+"-src"))
	}
	if got := f.sync(t); len(got) != nodesecret.MaxShards {
		t.Fatalf("%d entries, want %d (one per shard)", len(got), nodesecret.MaxShards)
	}
}

// An entry larger than a shard (a Registry with a huge namespace selector) is the only one not
// served: the others are written.
func TestOversizeEntryAloneIsDropped(t *testing.T) {
	for _, tc := range []struct {
		shardBytes int
		want       []string
	}{{0, []string{"a", "b", "huge"}}, {2048, []string{"a", "b"}}} {
		f := newFixture(t, func(c *nodecreds.Config) { c.ShardBytes = tc.shardBytes })
		for _, name := range []string{"a", "b", "huge"} {
			f.srcs.set(name+"-src", "u", "p", 1)
			*f.regs = append(*f.regs, clusterRegistry(name, ns, name+"-src"))
		}
		(*f.regs)[2].Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team",
			Operator: metav1.LabelSelectorOpIn, Values: teams(40)}}}
		if got := slices.Sorted(maps.Keys(f.sync(t))); !slices.Equal(got, tc.want) {
			t.Fatalf("shards of %d bytes: entries %v, want %v", tc.shardBytes, got, tc.want)
		}
	}
}

// teams are n label values of 60 characters.
func teams(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("team-%055d", i)
	}
	return out
}

// A Secret of that name that is not pullpass's is never written over.
func TestForeignSecretIsLeftAlone(t *testing.T) {
	f := newFixture(t)
	f.store.secrets[nodesecret.Name] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: nodesecret.Name}}
	if err := f.w.Sync(t.Context()); err == nil {
		t.Fatal("Sync wrote over a Secret that is not pullpass's")
	}
}

// tlog sends the writer's log to the test's.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
