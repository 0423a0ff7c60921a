package slim_test

import (
	"testing"

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
