package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestFixSpec(t *testing.T) {
	tests := []struct {
		name, in string
		ownAdj   int
		want     string
	}{
		{"lowering the score is dropped", `{"process":{"oomScoreAdj":-998}}`, 0, `{"process":{}}`},
		{"raising it is kept", `{"process":{"oomScoreAdj":1000}}`, 0, `{"process":{"oomScoreAdj":1000}}`},
		{"capabilities outside the bounding set are dropped",
			`{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"],"effective":["CAP_SYS_RESOURCE"]}}}`, 0,
			`{"process":{"capabilities":{"bounding":["CAP_CHOWN"],"effective":[]}}}`},
		{"nothing to do leaves the file alone", `{"process": {"args": ["x"]}}`, 0, `{"process": {"args": ["x"]}}`},
	}
	bounding := capsOf(0x1fffeffffff) // every capability but CAP_SYS_RESOURCE (24)
	if bounding["CAP_SYS_RESOURCE"] || !bounding["CAP_SYS_ADMIN"] {
		t.Fatalf("capsOf: %v", bounding)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, []byte(tt.in), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := fixSpec(path, tt.ownAdj, bounding); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if !jsonEqual(t, string(got), tt.want) {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func TestFixProcessFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "process.json")
	if err := os.WriteFile(path, []byte(`{"args":["cat"],"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_KILL"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fixProcessFile(path, 0, capsOf(0x1fffeffffff)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !jsonEqual(t, string(got), `{"args":["cat"],"capabilities":{"bounding":["CAP_KILL"]}}`) {
		t.Fatalf("got %s", got)
	}
}
