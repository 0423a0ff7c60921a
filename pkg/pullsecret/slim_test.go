package pullsecret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/secrets"
)

func tenantSecret(i int, size int) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fake-%d", i), Namespace: "tenant",
			Labels: map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRole: secrets.RolePullSecret, secrets.LabelRegistry: "x"}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: bytes.Repeat([]byte{'a'}, size), "other": bytes.Repeat([]byte{'b'}, size)},
	}
}

// A Secret anyone labels managed-by pullpass costs the cache its metadata, whatever its size; a
// pull secret keeps a digest that UpToDate compares as it compared the data.
func TestSlimKeepsOnlyWhatPullpassReads(t *testing.T) {
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ghcr"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"ghcr.io"}}}
	want, err := pullsecret.Build("shop", reg, userpass.Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	cached, _ := pullsecret.Slim(want.DeepCopy())
	c := cached.(*corev1.Secret)
	if c.Data != nil || strings.Contains(fmt.Sprint(c.Labels, c.Annotations), `"p"`) {
		t.Fatalf("the cached pull secret holds data %v, labels %v: want only a digest", c.Data, c.Labels)
	}
	if !pullsecret.UpToDate(c, want) {
		t.Fatal("a cached pull secret is not up to date with what it was built from")
	}
	other, _ := pullsecret.Build("shop", reg, userpass.Credentials{Username: "u", Password: "rotated"})
	if pullsecret.UpToDate(c, other) {
		t.Fatal("a cached pull secret is up to date with another password")
	}
	if pullsecret.Trimmed(c) {
		t.Fatal("a pull secret's labels were trimmed")
	}

	// What a write sends: want's data and labels, never the cache's digest.
	w := c.DeepCopy()
	pullsecret.CopyInto(w, other)
	if len(w.Labels) != len(other.Labels) || !bytes.Equal(w.Data[corev1.DockerConfigJsonKey], other.Data[corev1.DockerConfigJsonKey]) {
		t.Fatalf("a write of the cached secret would send labels %q", w.Labels)
	}

	big := tenantSecret(0, 1<<20)
	big.Labels["noise"] = strings.Repeat("x", 60)
	big.Annotations = map[string]string{"huge": strings.Repeat("y", 200<<10), pullsecret.AnnotationExpiresAt: "2026-12-06T12:00:00Z"}
	out, _ := pullsecret.Slim(big)
	s := out.(*corev1.Secret)
	if n := len(s.Data[corev1.DockerConfigJsonKey]) + len(s.Data["other"]); n != 0 {
		t.Fatalf("a tenant's Secret keeps %d bytes of data in the cache", n)
	}
	if !pullsecret.Trimmed(s) || s.Annotations["huge"] != "" || s.Labels["noise"] != "" ||
		s.Labels[secrets.LabelRole] != secrets.RolePullSecret || s.Annotations[pullsecret.AnnotationExpiresAt] == "" {
		t.Fatalf("labels %v, annotations %d bytes: want pullpass's own only, and marked trimmed", s.Labels, len(fmt.Sprint(s.Annotations)))
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/s", Obj: big}
	if out, err := pullsecret.Slim(tomb); err != nil || out != any(tomb) {
		t.Fatalf("tombstone: %v, %v", out, err)
	}
}

// A digest label that came from the API server is a tenant's: it must not make a Secret whose data
// differs look up to date.
func TestSlimIgnoresADigestFromTheAPIServer(t *testing.T) {
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ghcr"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"ghcr.io"}}}
	want, _ := pullsecret.Build("shop", reg, userpass.Credentials{Username: "u", Password: "p"})
	cached, _ := pullsecret.Slim(want.DeepCopy())
	forged := want.DeepCopy()
	forged.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{}}`)
	for k, v := range cached.(*corev1.Secret).Labels {
		forged.Labels[k] = v // every label of the genuine cached secret, its digest too
	}
	out, _ := pullsecret.Slim(forged)
	if pullsecret.UpToDate(out.(*corev1.Secret), want) {
		t.Fatal("a Secret with other data is up to date through a digest label it came with")
	}
	noData := want.DeepCopy()
	noData.Data = nil
	for k, v := range cached.(*corev1.Secret).Labels {
		noData.Labels[k] = v
	}
	out, _ = pullsecret.Slim(noData)
	if got := out.(*corev1.Secret); len(got.Labels) != len(want.Labels) || pullsecret.UpToDate(got, want) {
		t.Fatalf("a Secret with no data kept labels %q", out.(*corev1.Secret).Labels)
	}
}

// Each pull secret's copy of the strings all of them repeat is replaced by one shared copy.
func TestSlimSharesRepeatedStrings(t *testing.T) {
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ghcr"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"ghcr.io"}}}
	var cached []*corev1.Secret
	for _, ns := range []string{"a", "b"} {
		s, _ := pullsecret.Build(ns, reg, userpass.Credentials{Username: "u", Password: "p"})
		decoded := decode(t, s) // as the informer gets it: every string a copy of its own
		out, _ := pullsecret.Slim(decoded)
		cached = append(cached, out.(*corev1.Secret))
	}
	a, b := cached[0], cached[1]
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	if !same(a.Name, b.Name) || !same(a.Labels[secrets.LabelRegistry], b.Labels[secrets.LabelRegistry]) ||
		!same(a.Labels[secrets.LabelManagedBy], secrets.ManagedByValue) || !same(string(a.Type), string(corev1.SecretTypeDockerConfigJson)) {
		t.Fatal("the pull secrets of two namespaces hold copies of their name, registry, label or type")
	}
	if reflect.ValueOf(a.Labels).UnsafePointer() != reflect.ValueOf(b.Labels).UnsafePointer() {
		t.Fatal("the pull secrets of one registry in two namespaces hold a labels map each")
	}
	for k := range a.Labels {
		if k == secrets.LabelRole && !same(k, secrets.LabelRole) {
			t.Fatal("the role label's key is a copy")
		}
	}
}

func decode(t testing.TB, s *corev1.Secret) *corev1.Secret {
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out corev1.Secret
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// cacheHeap reports, for the cache's old transform (managedFields dropped) and Slim in the same
// run, the heap a store takes once fill has added objects to it through the transform, as the
// informer does with each object it decodes from the watch.
func cacheHeap(b *testing.B, fill func(add func(*corev1.Secret))) {
	for _, tc := range []struct {
		name      string
		transform func(any) (any, error)
	}{
		{"managedFields-dropped", func(o any) (any, error) { o.(*corev1.Secret).ManagedFields = nil; return o, nil }},
		{"slim", pullsecret.Slim},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				store := cache.NewStore(cache.MetaNamespaceKeyFunc)
				fill(func(s *corev1.Secret) {
					obj, _ := tc.transform(decode(b, s)) // decoded, as from the watch
					_ = store.Add(obj)
				})
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-heap")
				runtime.KeepAlive(store)
			}
		})
	}
}

// BenchmarkCacheOfTenantSecrets: the heap a replica's cache of managed-by Secrets takes with
// 1,000 tenant Secrets of 1 MiB (two 512 KiB keys), Slim against the managedFields-only
// transform it replaced, in the same run. Run: go test ./pkg/pullsecret -run '^$' -bench CacheOf -benchtime 1x
func BenchmarkCacheOfTenantSecrets(b *testing.B) {
	cacheHeap(b, func(add func(*corev1.Secret)) {
		for i := range 1000 {
			add(tenantSecret(i, 512<<10))
		}
	})
}

// BenchmarkCacheOfPullSecrets: the same for 10,000 namespaces × 5 registries (50,000 pull
// secrets as pullpass writes them, ECR-sized tokens, two host patterns each).
func BenchmarkCacheOfPullSecrets(b *testing.B) {
	var regs []*v1alpha1.Registry
	for r := range 5 {
		regs = append(regs, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("registry-%d", r)},
			Spec: v1alpha1.RegistrySpec{Hosts: []string{fmt.Sprintf("r%d.example.com", r), fmt.Sprintf("mirror-%d.example.com/team", r)}}})
	}
	creds := userpass.Credentials{Username: "AWS", Password: strings.Repeat("t", 1800)}
	cacheHeap(b, func(add func(*corev1.Secret)) {
		for ns := range 10000 {
			for _, reg := range regs {
				s, _ := pullsecret.Build(fmt.Sprintf("namespace-%05d", ns), reg, creds)
				add(s)
			}
		}
	})
}
