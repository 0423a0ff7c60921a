package nodegrant_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/agent/nodegrant"
)

func TestAllows(t *testing.T) {
	g := nodegrant.Grant{Registry: "team", Namespaces: []string{"a", "c"},
		ServiceAccounts: &nodegrant.ServiceAccounts{Names: []string{"builder"}, Annotated: true}}
	tests := []struct {
		ns, sa, annotation string
		want               bool
	}{
		{"a", "builder", "", true},
		{"c", "builder", "", true},
		{"b", "builder", "", false},        // namespace not selected
		{"a", "web", "", false},            // service account not named, not annotated
		{"a", "web", "other, team", true},  // annotated with the registry's name
		{"a", "web", "other,teams", false}, // a name is a whole item
		{"b", "web", "team", false},        // the annotation never widens the namespaces
	}
	for _, tt := range tests {
		if got := g.Allows(tt.ns, tt.sa, tt.annotation); got != tt.want {
			t.Errorf("Allows(%q, %q, %q) = %v", tt.ns, tt.sa, tt.annotation, got)
		}
	}
	all := nodegrant.Grant{Registry: "x", AllNamespaces: true}
	if !all.Allows("any", "default", "") {
		t.Error("a grant of every namespace and service account refused one")
	}
	none := nodegrant.Grant{Registry: "x", Namespaces: []string{}}
	if none.Allows("a", "default", "") {
		t.Error("a grant selecting no namespace allowed one")
	}
}

func TestReadWrite(t *testing.T) {
	path := nodegrant.Path(filepath.Join(t.TempDir(), "credentials.json"))
	if _, err := nodegrant.Read(path); !errors.Is(err, nodegrant.ErrNoFile) {
		t.Fatalf("no file: %v", err)
	}
	if err := nodegrant.Write(path, nodegrant.File{Grants: []nodegrant.Grant{{Registry: "r", Namespaces: []string{"b", "a"}, Password: "leak-me"}}}); err != nil {
		t.Fatal(err)
	}
	f, err := nodegrant.Read(path)
	if err != nil || f.Grants[0].Namespaces[0] != "a" {
		t.Fatalf("read back %+v, %v (namespaces are sorted for the binary search)", f, err)
	}
	if s := f.Grants[0].String(); strings.Contains(s, "leak-me") {
		t.Fatalf("String prints the password: %s", s)
	}
	if err := os.WriteFile(path, []byte(`{"version":1,"grants":[{"password":"leak-me"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nodegrant.Read(path); err == nil || strings.Contains(err.Error(), "leak-me") {
		t.Fatalf("broken file: %v", err)
	}
}
