package refresher_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
)

type namespaces map[string]map[string]string // name -> labels

func (n namespaces) List() []*corev1.Namespace {
	var out []*corev1.Namespace
	for name, l := range n {
		out = append(out, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}})
	}
	return out
}

func nodeDelivered(reg *v1alpha1.Registry, sel map[string]string) *v1alpha1.Registry {
	reg.Spec.Delivery = v1alpha1.DeliveryNode
	if sel != nil {
		reg.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: sel}
	}
	return reg
}

func grants(t *testing.T, cache string) map[string]nodegrant.Grant {
	t.Helper()
	f, err := nodegrant.Read(nodegrant.Path(cache))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]nodegrant.Grant{}
	for _, g := range f.Grants {
		out[g.Registry] = g
	}
	return out
}

// Namespaced registries delivered by the node go to the grants file with the namespaces their
// selector selects now, never to the Cluster cache; a namespace that loses its label leaves the
// grant at the next sync.
func TestGrantsFollowNamespaceLabels(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "credentials.json")
	regs := registries{
		registry("everyone", v1alpha1.ScopeCluster, "quay.io"),
		nodeDelivered(registry("team", v1alpha1.ScopeNamespaced, "ghcr.io/team"), map[string]string{"pullpass.io/team": "yes"}),
		nodeDelivered(registry("all-ns", v1alpha1.ScopeNamespaced, "nvcr.io"), nil),
		registry("webhook-only", v1alpha1.ScopeNamespaced, "registry.gitlab.com"),
		nodeDelivered(&v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ecr-roles"}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com"}, Scope: v1alpha1.ScopeNamespaced,
			Auth:            v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{}},
			ServiceAccounts: &v1alpha1.ServiceAccountSelector{Names: []string{"web", "builder"}, Annotated: true},
		}}, nil),
	}
	ns := namespaces{"a": {"pullpass.io/team": "yes"}, "b": {"pullpass.io/team": "no"}, "c": nil}
	res := &resolver{creds: map[string]userpass.Credentials{
		"everyone": {Username: "u0", Password: "p0"}, "team": {Username: "u1", Password: "p1"}, "all-ns": {Username: "u2", Password: "p2"},
		"webhook-only": {Username: "u3", Password: "p3"},
	}, errs: map[string]error{"ecr-roles": errors.New("no credentials of the node's own")}}
	s := &sink{}
	r, err := refresher.New(refresher.Config{Registries: &regs, Resolver: res, CachePath: cache, Namespaces: ns, Sinks: []refresher.Sink{s},
		Now: func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	r.Sync(context.Background())

	file, err := nodecache.Read(cache)
	if err != nil || len(file.Entries) != 1 || file.Entries[0].Registry != "everyone" {
		t.Fatalf("the Cluster cache holds %v (%v), want only the Cluster registry", file.Entries, err)
	}
	g := grants(t, cache)
	if len(g) != 3 {
		t.Fatalf("grants %v, want team, all-ns and ecr-roles", g)
	}
	if team := g["team"]; team.AllNamespaces || !slices.Equal(team.Namespaces, []string{"a"}) || team.Password != "p1" {
		t.Fatalf("team grant %+v namespaces %v", team, team.Namespaces)
	}
	if all := g["all-ns"]; !all.AllNamespaces || all.Password != "p2" {
		t.Fatalf("all-ns grant %+v", all)
	}
	roles := g["ecr-roles"]
	if roles.Password != "" || roles.ECR == nil || roles.ECR.Region != "eu-west-1" || roles.ServiceAccounts == nil ||
		!slices.Equal(roles.ServiceAccounts.Names, []string{"builder", "web"}) || !roles.ServiceAccounts.Annotated {
		t.Fatalf("ECR grant without the node's credentials %+v", roles)
	}
	// The kubelet's config must match the grants' hosts too.
	last := s.calls[len(s.calls)-1]
	var hosts []string
	for _, e := range last {
		hosts = append(hosts, e.Hosts...)
	}
	if !slices.Contains(hosts, "ghcr.io/team") || !slices.Contains(hosts, "quay.io") || slices.Contains(hosts, "registry.gitlab.com") {
		t.Fatalf("sinks got hosts %v", hosts)
	}

	ns["a"] = map[string]string{"pullpass.io/team": "gone"}
	ns["c"] = map[string]string{"pullpass.io/team": "yes"}
	r.Sync(context.Background())
	if team := grants(t, cache)["team"]; !slices.Equal(team.Namespaces, []string{"c"}) {
		t.Fatalf("after relabelling, team serves %v, want [c]", team.Namespaces)
	}
	ns["c"] = nil
	r.Sync(context.Background())
	if team := grants(t, cache)["team"]; len(team.Namespaces) != 0 || team.AllNamespaces {
		t.Fatalf("no namespace selected, team serves %+v", team)
	}
}

// Without a namespace lister (legacy mode writes the kubelet's config.json, for every pod), a
// Namespaced registry delivered by the node is not served at all.
func TestNoGrantsWithoutNamespaces(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "credentials.json")
	regs := registries{nodeDelivered(registry("team", v1alpha1.ScopeNamespaced, "ghcr.io/team"), nil)}
	res := &resolver{creds: map[string]userpass.Credentials{"team": {Username: "u", Password: "p"}}}
	s := &sink{}
	r, err := refresher.New(refresher.Config{Registries: &regs, Resolver: res, CachePath: cache, Sinks: []refresher.Sink{s}})
	if err != nil {
		t.Fatal(err)
	}
	r.Sync(context.Background())
	if file, err := nodecache.Read(cache); err != nil || len(file.Entries) != 0 {
		t.Fatalf("cache %v, %v", file.Entries, err)
	}
	if len(s.calls) != 1 || len(s.calls[0]) != 0 {
		t.Fatalf("sinks got %v", s.calls)
	}
	if _, err := nodegrant.Read(nodegrant.Path(cache)); !errors.Is(err, nodegrant.ErrNoFile) {
		t.Fatalf("a grants file was written: %v", err)
	}
}

// An agent restarted while the registries cannot be listed keeps its grants as the file holds
// them: their hosts stay with the sinks (the kubelet's matchImages), their credentials until
// KeepLastGood has passed; an ECR grant (the service accounts' own roles) stays.
func TestRestartWithUnlistableRegistriesKeepsTheGrants(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "credentials.json")
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var listErr error
	regs := registries{nodeDelivered(registry("team", v1alpha1.ScopeNamespaced, "ghcr.io/team"), nil),
		nodeDelivered(registry("ecr-roles", v1alpha1.ScopeNamespaced, "123456789012.dkr.ecr.eu-west-1.amazonaws.com"), nil)}
	regs[1].Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{}}
	res := &resolver{creds: map[string]userpass.Credentials{"team": {Username: "u", Password: "p"}},
		errs: map[string]error{"ecr-roles": errors.New("no credentials of the node's own")}}
	start := func() (*refresher.Refresher, *sink) {
		s := &sink{}
		r, err := refresher.New(refresher.Config{Registries: listing{&regs, &listErr}, Resolver: res, CachePath: cache, Namespaces: namespaces{"a": nil},
			Sinks: []refresher.Sink{s}, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return r, s
	}
	r, _ := start()
	r.Sync(context.Background())
	if g := grants(t, cache); g["team"].Password != "p" || g["ecr-roles"].ECR == nil {
		t.Fatalf("grants %v, want team's and ecr-roles'", g)
	}

	listErr = errors.New("node secret pullpass/pullpass-node-credentials is not readable yet")
	r, s := start()
	r.Sync(context.Background())
	if g := grants(t, cache); g["team"].Password != "p" || g["ecr-roles"].ECR == nil {
		t.Fatalf("after a restart the grants are %v, want them as they were", g)
	}
	var hosts []string
	for _, e := range s.calls[len(s.calls)-1] {
		hosts = append(hosts, e.Hosts...)
	}
	if !slices.Contains(hosts, "ghcr.io/team") || !slices.Contains(hosts, "123456789012.dkr.ecr.eu-west-1.amazonaws.com") {
		t.Fatalf("the sinks got hosts %v, want the grants' too", hosts)
	}
	now = now.Add(time.Hour)
	r.Sync(context.Background())
	if g := grants(t, cache); g["team"].Password != "" || g["ecr-roles"].ECR == nil {
		t.Fatalf("an hour on the grants are %v, want team's credentials gone and ecr-roles' grant kept", g)
	}
}

// Listed again after the node Secret became unreadable, the registries last listed are resolved
// as sources that cannot be read: each keeps its last good credentials.
func TestRegistriesLastListedKeepTheirCredentials(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "credentials.json")
	regs := []*v1alpha1.Registry{registry("a", v1alpha1.ScopeCluster, "a.example.com")}
	var listErr error
	res := &resolver{creds: map[string]userpass.Credentials{"a": {Username: "u", Password: "pa"}}, errs: map[string]error{}}
	r, err := refresher.New(refresher.Config{Registries: listFunc(func() ([]*v1alpha1.Registry, error) { return regs, listErr }),
		Resolver: res, CachePath: cache})
	if err != nil {
		t.Fatal(err)
	}
	r.Sync(context.Background())
	listErr = errors.New("node secret pullpass/pullpass-node-credentials is not readable yet")
	res.errs["a"] = apierrors.NewServiceUnavailable("not readable")
	r.Sync(context.Background())
	if file, err := nodecache.Read(cache); err != nil || len(file.Entries) != 1 || file.Entries[0].Password != "pa" {
		t.Fatalf("cache %v, %v; want a's last good credentials", file.Entries, err)
	}
}

// listFunc lists what it returns.
type listFunc func() ([]*v1alpha1.Registry, error)

func (f listFunc) List() ([]*v1alpha1.Registry, error) { return f() }
