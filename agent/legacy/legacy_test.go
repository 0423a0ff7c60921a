package legacy_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/agent/legacy"
	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
)

func writer(t *testing.T) (*legacy.Writer, string) {
	t.Helper()
	d := t.TempDir()
	path := filepath.Join(d, "config.json")
	w, err := legacy.New(legacy.Config{Path: path, OwnedPath: filepath.Join(d, "owned.json")})
	if err != nil {
		t.Fatal(err)
	}
	return w, path
}

func read(t *testing.T, path string) *dockerconfig.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dockerconfig.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKeepsWhatItDoesNotOwn(t *testing.T) {
	w, path := writer(t)
	foreign := `{"auths":{"other.example.com":{"auth":"b3RoZXI6c2VjcmV0"},"taken.example.com":{"auth":"b3duZXI6cw=="}},"credsStore":"none"}`
	if err := os.WriteFile(path, []byte(foreign), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err := w.Write(ctx, []nodecache.Entry{
		{Registry: "a", Hosts: []string{"a.example.com", "*.a.example.com"}, Username: "ua", Password: "pa"},
		{Registry: "t", Hosts: []string{"taken.example.com"}, Username: "ut", Password: "pt"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := read(t, path)
	if e, _ := c.Lookup("other.example.com"); e.Username != "other" || e.Password != "secret" {
		t.Fatalf("foreign entry changed: %v", e)
	}
	if e := c.Auths["taken.example.com"]; e.Username != "owner" {
		t.Fatalf("a key someone else wrote was taken over: %v", e)
	}
	if e := c.Auths["*.a.example.com"]; e.Username != "ua" || e.Password != "pa" {
		t.Fatalf("pullpass entry = %v", e)
	}
	data, _ := os.ReadFile(path)
	var top map[string]json.RawMessage
	_ = json.Unmarshal(data, &top)
	if string(top["credsStore"]) != `"none"` {
		t.Fatalf("an unknown field was lost: %s", data)
	}

	// The registry goes: its entries go, the others stay.
	if err := w.Write(ctx, nil); err != nil {
		t.Fatal(err)
	}
	c = read(t, path)
	if _, ok := c.Auths["a.example.com"]; ok {
		t.Fatal("a removed registry's entry stayed")
	}
	if len(c.Auths) != 2 {
		t.Fatalf("auths %v, want the two foreign ones", c.Hosts())
	}
}

func TestNoFileLeftWhenNothingIsLeft(t *testing.T) {
	w, path := writer(t)
	ctx := context.Background()
	if err := w.Write(ctx, []nodecache.Entry{{Registry: "a", Hosts: []string{"a.example.com"}, Username: "u", Password: "p"}}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config not written 0600: %v %v", st, err)
	}
	if err := w.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("an empty config was left behind: %v", err)
	}
}

func TestUnreadableFileIsLeftAlone(t *testing.T) {
	w, path := writer(t)
	bad := `{"auths":{"x":{"auth":"not base64!"}}}`
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	err := w.Write(context.Background(), []nodecache.Entry{{Registry: "a", Hosts: []string{"a.example.com"}, Username: "u", Password: "p"}})
	if err == nil || !strings.Contains(err.Error(), "left as it is") {
		t.Fatalf("err = %v, want a clear refusal", err)
	}
	if strings.Contains(err.Error(), "not base64!") {
		t.Fatalf("the error quotes the file: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != bad {
		t.Fatalf("file changed: %s", data)
	}
}

// With nothing of pullpass's to write, someone else's file is left byte for byte.
func TestNothingToWriteLeavesTheFileAlone(t *testing.T) {
	w, path := writer(t)
	foreign := "{\n  \"auths\": {\"other.example.com\": {\"auth\": \"b3RoZXI6c2VjcmV0\"}}\n}\n"
	if err := os.WriteFile(path, []byte(foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != foreign {
		t.Fatalf("the file was rewritten:\n%s", data)
	}
}
