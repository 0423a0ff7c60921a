package slim_test

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/slim"
)

func TestDropManagedFields(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: map[string]string{"a": "b"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "pullpass-webhook", Operation: metav1.ManagedFieldsOperationUpdate}}},
		Data: map[string][]byte{"k": []byte("v")}}
	out, err := slim.DropManagedFields(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Secret)
	if got.ManagedFields != nil || got.Name != "s" || got.Labels["a"] != "b" || string(got.Data["k"]) != "v" {
		t.Fatalf("got %+v: want the same secret without managedFields", got)
	}
	// A tombstone passes unchanged.
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/s", Obj: s}
	if out, err := slim.DropManagedFields(tomb); err != nil || out != any(tomb) {
		t.Fatalf("tombstone: %v, %v", out, err)
	}
}

// A cached namespace keeps all that pullpass reads of it (name, labels, its own annotations,
// deletion, phase) and nothing else.
func TestNamespaceKeepsWhatPullpassReads(t *testing.T) {
	now := metav1.Now()
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", UID: "u1", ResourceVersion: "7", DeletionTimestamp: &now,
			Labels: map[string]string{corev1.LabelMetadataName: "shop", "team": "a"},
			Annotations: map[string]string{"pullpass.io/inject": "enabled", "pullpass.io/pull-through": "disabled",
				"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)},
			Finalizers:    []string{"example.com/hold"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec:   corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating, Conditions: []corev1.NamespaceCondition{{Type: "NamespaceDeletionContentFailure"}}},
	}
	out, err := slim.Namespace(ns)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Namespace)
	want := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", UID: "u1", ResourceVersion: "7", DeletionTimestamp: &now,
			Labels:      map[string]string{corev1.LabelMetadataName: "shop", "team": "a"},
			Annotations: map[string]string{"pullpass.io/inject": "enabled", "pullpass.io/pull-through": "disabled"}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if unsafe.StringData(got.Labels[corev1.LabelMetadataName]) != unsafe.StringData(got.Name) {
		t.Fatal("the metadata.name label holds a copy of the name")
	}
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other", Annotations: map[string]string{"pullpass.io/inject": "enabled", "pullpass.io/pull-through": "disabled", "x": "y"}}}
	out2, _ := slim.Namespace(other)
	if reflect.ValueOf(out2.(*corev1.Namespace).Annotations).UnsafePointer() != reflect.ValueOf(got.Annotations).UnsafePointer() {
		t.Fatal("two namespaces with the same pullpass annotations hold a map each")
	}
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain", Annotations: map[string]string{"a": "b"}}}
	out, _ = slim.Namespace(plain)
	if a := out.(*corev1.Namespace).Annotations; a != nil {
		t.Fatalf("annotations %v: want none", a)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "shop", Obj: ns}
	if out, err := slim.Namespace(tomb); err != nil || out != any(tomb) {
		t.Fatalf("tombstone: %v, %v", out, err)
	}
}

// The table gives one copy of each string, and starts over at its bound.
func TestStringsShareAndStayBounded(t *testing.T) {
	tab := slim.NewStrings(2)
	a1 := tab.Intern(string([]byte("registry-a")))
	a2 := tab.Intern(string([]byte("registry-a")))
	if unsafe.StringData(a1) != unsafe.StringData(a2) {
		t.Fatal("two copies of the same string")
	}
	tab.Intern("b")
	c := string([]byte("c"))
	if got := tab.Intern(c); unsafe.StringData(got) != unsafe.StringData(c) || tab.Len() != 1 {
		t.Fatalf("past its bound the table holds %d strings: want it started over with the new one", tab.Len())
	}
}

// Equal maps share one copy; different ones, even built to collide, do not; the table starts
// over at its bound.
func TestMapsShareEqualMapsOnly(t *testing.T) {
	tab := slim.NewMaps(3)
	a := tab.Intern(map[string]string{"app.kubernetes.io/managed-by": "pullpass", "pullpass.io/registry": "ghcr"})
	b := tab.Intern(map[string]string{"pullpass.io/registry": "ghcr", "app.kubernetes.io/managed-by": "pullpass"})
	if reflect.ValueOf(a).UnsafePointer() != reflect.ValueOf(b).UnsafePointer() {
		t.Fatal("two equal maps were not shared")
	}
	x := tab.Intern(map[string]string{"a": "x\x00b\x00y"})
	y := tab.Intern(map[string]string{"a": "x", "b": "y"})
	if len(x) != 1 || len(y) != 2 {
		t.Fatalf("maps built to collide were taken for each other: %q, %q", x, y)
	}
	z := map[string]string{"c": "d"}
	if got := tab.Intern(z); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(z).UnsafePointer() || tab.Len() != 1 {
		t.Fatalf("past its bound the table holds %d maps: want it started over with the new one", tab.Len())
	}
	if got := tab.Intern(nil); got != nil {
		t.Fatal("nil map interned")
	}
}
