package dockerconfig_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/pkg/dockerconfig"
)

const secret = "s3cr3t-Passw0rd"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, host, user, pass, token string
	}{
		{"docker login to hub", `{"auths":{"https://index.docker.io/v1/":{"auth":"` + b64("bob:"+secret) + `"}}}`, "docker.io", "bob", secret, ""},
		{"hub by alias", `{"auths":{"https://index.docker.io/v1/":{"auth":"` + b64("bob:"+secret) + `"}}}`, "index.docker.io", "bob", secret, ""},
		{"plain host", `{"auths":{"ghcr.io":{"username":"bob","password":"` + secret + `"}}}`, "ghcr.io", "bob", secret, ""},
		{"scheme and host", `{"auths":{"https://ghcr.io":{"auth":"` + b64("bob:"+secret) + `"}}}`, "ghcr.io", "bob", secret, ""},
		{"host with port", `{"auths":{"localhost:5443":{"auth":"` + b64("u:"+secret) + `"}}}`, "localhost:5443", "u", secret, ""},
		{"password with colons", `{"auths":{"r.io":{"auth":"` + b64("u:a:b:c") + `"}}}`, "r.io", "u", "a:b:c", ""},
		{"gcr json key", `{"auths":{"gcr.io":{"auth":"` + b64(`_json_key:{"type":"service_account"}`) + `"}}}`, "gcr.io", "_json_key", `{"type":"service_account"}`, ""},
		{"both forms agree", `{"auths":{"r.io":{"username":"u","password":"p","auth":"` + b64("u:p") + `"}}}`, "r.io", "u", "p", ""},
		{"unpadded base64", `{"auths":{"r.io":{"auth":"` + strings.TrimRight(b64("u:pw"), "=") + `"}}}`, "r.io", "u", "pw", ""},
		{"identity token", `{"auths":{"acr.azurecr.io":{"auth":"` + b64("00000000-0000-0000-0000-000000000000:") + `","identitytoken":"tok"}}}`, "acr.azurecr.io", "00000000-0000-0000-0000-000000000000", "", "tok"},
		{"legacy dockercfg", `{"r.io":{"auth":"` + b64("u:p") + `","email":"a@b"}}`, "r.io", "u", "p", ""},
		{"extra fields kept", `{"auths":{"r.io":{"auth":"` + b64("u:p") + `"}},"credsStore":"desktop","HttpHeaders":{"X":"y"}}`, "r.io", "u", "p", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := dockerconfig.Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			e, ok := cfg.Lookup(tt.host)
			if !ok {
				t.Fatalf("Lookup(%q): not found in %v", tt.host, cfg.Hosts())
			}
			if e.Username != tt.user || e.Password != tt.pass || e.IdentityToken != tt.token {
				t.Fatalf("Lookup(%q) = %q/%q/%q, want %q/%q/%q", tt.host, e.Username, e.Password, e.IdentityToken, tt.user, tt.pass, tt.token)
			}
			// Marshal then Parse gives the same entry back.
			out, err := cfg.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			again, err := dockerconfig.Parse(out)
			if err != nil {
				t.Fatalf("Parse(Marshal): %v", err)
			}
			e2, ok := again.Lookup(tt.host)
			if !ok || e2.Username != e.Username || e2.Password != e.Password || e2.IdentityToken != e.IdentityToken {
				t.Fatalf("round trip lost the entry: %s", out)
			}
			if strings.Contains(tt.in, "credsStore") && !strings.Contains(string(out), `"credsStore":"desktop"`) {
				t.Fatalf("Marshal dropped credsStore: %s", out)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, wantErr, wantKey string
	}{
		{"not json", `{"auths": ` + secret, "not valid JSON", ""},
		{"array", `[1,2]`, "not a JSON object", ""},
		{"null", `null`, "not a JSON object", ""},
		{"auths not object", `{"auths":"` + secret + `"}`, `"auths" is not an object`, ""},
		{"entry not object", `{"auths":{"r.io":"` + secret + `"}}`, "not an object", "r.io"},
		{"bad base64", `{"auths":{"r.io":{"auth":"` + secret + `!!"}}}`, "not valid base64", "r.io"},
		{"no colon", `{"auths":{"r.io":{"auth":"` + b64(secret) + `"}}}`, "no colon", "r.io"},
		{"disagreeing", `{"auths":{"r.io":{"username":"x","auth":"` + b64("u:"+secret) + `"}}}`, "disagrees", "r.io"},
		{"number field", `{"auths":{"r.io":{"password":12}}}`, "not an object with string fields", "r.io"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dockerconfig.Parse([]byte(tt.in))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Fatalf("error %q, want it to contain %q", msg, tt.wantErr)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, b64(secret)) || strings.Contains(msg, "s3cr") {
				t.Fatalf("error leaks the secret: %q", msg)
			}
			var ee *dockerconfig.EntryError
			if tt.wantKey != "" && (!errors.As(err, &ee) || ee.Key != tt.wantKey) {
				t.Fatalf("error %q does not name key %q", msg, tt.wantKey)
			}
		})
	}
}

func TestNormalizeKey(t *testing.T) {
	for in, want := range map[string]string{
		"https://index.docker.io/v1/": "docker.io",
		"index.docker.io":             "docker.io",
		"registry-1.docker.io":        "docker.io",
		"docker.io":                   "docker.io",
		"https://ghcr.io":             "ghcr.io",
		"http://localhost:5000/v2/":   "localhost:5000",
		"quay.io/org":                 "quay.io/org",
		"https://r.example.com/team/": "r.example.com/team",
	} {
		if got := dockerconfig.NormalizeKey(in); got != want {
			t.Errorf("NormalizeKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAuthEntryNeverPrintsPassword(t *testing.T) {
	e := dockerconfig.AuthEntry{Username: "u", Password: secret, Auth: b64("u:" + secret)}
	for _, s := range []string{fmt.Sprint(e), fmt.Sprintf("%v %+v %#v %s", e, e, e, e)} {
		if strings.Contains(s, secret) || strings.Contains(s, b64("u:"+secret)) {
			t.Fatalf("formatted entry leaks the secret: %s", s)
		}
	}
}

func TestForHost(t *testing.T) {
	out, err := dockerconfig.ForHost("localhost:5443", "u", secret).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"auths":{"localhost:5443":{"username":"u","password":"` + secret + `","auth":"` + b64("u:"+secret) + `"}}}`
	if string(out) != want {
		t.Fatalf("Marshal = %s\nwant      %s", out, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"auths":{"https://index.docker.io/v1/":{"auth":"` + b64("u:p") + `"}}}`))
	f.Add([]byte(`{"r.io":{"auth":"` + b64("u:p") + `"}}`))
	f.Add([]byte(`{"auths":{"r.io":{"username":"u","password":"p"}},"credsStore":"x"}`))
	f.Add([]byte(`{"auths":{"r.io":{"auth":"!!"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := dockerconfig.Parse(data)
		if err != nil {
			return
		}
		out, err := cfg.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed config: %v", err)
		}
		again, err := dockerconfig.Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(x))): %v\n%s", err, out)
		}
		for k, e := range cfg.Auths {
			e2 := again.Auths[k]
			if e2.Username != e.Username || e2.Password != e.Password || e2.IdentityToken != e.IdentityToken {
				t.Fatalf("entry %q changed in a round trip", k)
			}
		}
	})
}
