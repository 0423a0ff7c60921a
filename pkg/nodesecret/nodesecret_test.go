package nodesecret

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

func entry() Entry {
	return Entry{
		Spec: &v1alpha1.RegistrySpec{Hosts: []string{"registry.example.com", "*.example.com"}, Scope: v1alpha1.ScopeCluster,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: "team", Name: "pull"}}},
		Username: "user", Password: "s3cret-password", Source: SourceRef{Namespace: "team", Name: "pull"}, Version: "42", Generation: 3,
	}
}

// A sync reads each entry in two halves, its spec (List) and its credentials (Entry): together
// they are the whole entry, and each leaves the other half out.
func TestDecodeHalvesMakeTheEntry(t *testing.T) {
	for _, e := range []Entry{entry(), {Username: "u", Password: "p", Source: SourceRef{Namespace: "a", Name: "b"}}, // an older controller's
		{Spec: entry().Spec, AWS: &AWSKeys{AccessKeyID: "AKIA", SecretAccessKey: "k"}, Source: SourceRef{Namespace: "a", Name: "keys"}}} {
		b := Encode(e)
		whole, err := Decode("r", b)
		if err != nil || !reflect.DeepEqual(whole, e) {
			t.Fatalf("Decode = %v, %v; want %v", whole, err, e)
		}
		creds, err := DecodeCredentials("r", b)
		if err != nil || creds.Spec != nil {
			t.Fatalf("DecodeCredentials = %v, %v; want no spec", creds, err)
		}
		spec, generation, err := DecodeSpec("r", b)
		if err != nil {
			t.Fatal(err)
		}
		creds.Spec, creds.Generation = spec, generation
		if !reflect.DeepEqual(creds, e) {
			t.Fatalf("the halves make %v, want %v", creds, e)
		}
	}
}

// Entries that are not JSON: an error that names the registry and never quotes the value.
func TestDecodeErrorsNeverQuoteTheValue(t *testing.T) {
	for _, b := range []string{`{"password":"s3cret-password"`, `{"password":"s3cret-password","spec":{"hosts":5}`, `s3cret-password`} { // not JSON, truncated
		_, err1 := Decode("r", []byte(b))
		_, err2 := DecodeCredentials("r", []byte(b))
		_, _, err3 := DecodeSpec("r", []byte(b))
		for _, err := range []error{err1, err2, err3} {
			if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "registry r") {
				t.Fatalf("%q: error %v; want one naming the registry, without the value", b, err)
			}
		}
	}
}

// A spec of the wrong shape fails the whole entry and its spec (List leaves the registry out),
// not its credentials: DecodeCredentials skips the spec unread.
func TestMisshapenSpecFailsTheSpecOnly(t *testing.T) {
	b := []byte(`{"spec":{"hosts":5},"username":"u","password":"s3cret-password","source":{"namespace":"a","name":"b"}}`)
	if _, err := Decode("r", b); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Decode: %v; want an error without the value", err)
	}
	if _, _, err := DecodeSpec("r", b); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("DecodeSpec: %v; want an error without the value", err)
	}
	if e, err := DecodeCredentials("r", b); err != nil || e.Password != "s3cret-password" || e.Spec != nil {
		t.Fatalf("DecodeCredentials = %v, %v; want the credentials", e, err)
	}
}

// The halves allocate less than the whole, once a sync for every registry.
func TestDecodeHalvesAllocateLess(t *testing.T) {
	b := Encode(entry())
	whole := testing.AllocsPerRun(100, func() { _, _ = Decode("r", b) })
	creds := testing.AllocsPerRun(100, func() { _, _ = DecodeCredentials("r", b) })
	spec := testing.AllocsPerRun(100, func() { _, _, _ = DecodeSpec("r", b) })
	if creds >= whole || spec >= whole {
		t.Fatalf("allocations: whole %v, credentials %v, spec %v; want each half under the whole", whole, creds, spec)
	}
	t.Logf("allocations: whole %v, credentials %v, spec %v", whole, creds, spec)
}
