package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/pkg/version"
)

func TestVersion(t *testing.T) {
	want := version.Get()
	for _, tc := range []struct {
		name    string
		program string
		args    []string
	}{
		{"pullpass version", "pullpass", []string{"version"}},
		{"kubectl pullpass version", "/root/.krew/bin/kubectl-pullpass", []string{"version"}},
		{"pullpass --version", "pullpass", []string{"--version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.program, tc.args, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, nil)
			if code != ExitOK || out.String() != want.Line("pullpass")+"\n" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 0 and %q", code, out.String(), errOut.String(), want.Line("pullpass"))
			}
		})
	}
}

func TestVersionJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), "pullpass", []string{"version", "-o", "json"}, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, nil)
	var got version.Info
	if code != ExitOK || json.Unmarshal(out.Bytes(), &got) != nil || got != version.Get() {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	code = run(context.Background(), "pullpass", []string{"version", "-o", "yaml"}, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, nil)
	if code != ExitBadInput || !strings.Contains(errOut.String(), "the only format is json") {
		t.Fatalf("-o yaml: exit %d, stderr %q", code, errOut.String())
	}
}
