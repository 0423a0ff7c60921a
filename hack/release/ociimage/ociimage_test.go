package ociimage

import (
	"archive/tar"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestPushedIndexHasEveryPlatformBaseAndLabels(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writeFile(t, dir+"/ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	for _, arch := range []string{"amd64", "arm64"} {
		writeFile(t, dir+"/"+arch+"/pullpass-agent", "agent-"+arch)
		writeFile(t, dir+"/"+arch+"/pullpass-credential-provider", "plugin-"+arch)
	}
	labels := map[string]string{"org.opencontainers.image.version": "v1.2.3", "org.opencontainers.image.revision": "abc"}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/pullpass/pullpass-agent:v1.2.3"
	cfg := Config{
		Ref: ref, Binaries: []string{"pullpass-agent", "pullpass-credential-provider"},
		Platforms: map[string]string{"linux/amd64": dir + "/amd64", "linux/arm64": dir + "/arm64"},
		CABundle:  dir + "/ca.crt", Labels: labels, Created: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC),
		Options: []remote.Option{remote.WithTransport(srv.Client().Transport)},
	}
	digest, err := Push(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(parsed, cfg.Options...)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := idx.Digest(); got != digest {
		t.Errorf("tag points at %s, Push said %s", got, digest)
	}
	im, _ := idx.IndexManifest()
	if im.Annotations["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("index annotations %v", im.Annotations)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d manifests, want 2", len(im.Manifests))
	}
	for _, d := range im.Manifests {
		arch := d.Platform.Architecture
		img, _ := idx.Image(d.Digest)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != arch || cf.Config.User != "65532:65532" ||
			cf.Config.Entrypoint[0] != "/pullpass-agent" || cf.Config.Labels["org.opencontainers.image.revision"] != "abc" {
			t.Errorf("%s config: os %s arch %s user %q entrypoint %v labels %v", arch, cf.OS, cf.Architecture, cf.Config.User, cf.Config.Entrypoint, cf.Config.Labels)
		}
		files := filesOf(t, img)
		for path, want := range map[string]string{
			"pullpass-agent": "agent-" + arch, "pullpass-credential-provider": "plugin-" + arch,
			"etc/ssl/certs/ca-certificates.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		} {
			if files[path] != want {
				t.Errorf("%s: %s holds %q, want %q", arch, path, files[path], want)
			}
		}
		if !strings.Contains(files["etc/passwd"], "nonroot:x:65532:65532:") || !strings.Contains(files["etc/group"], "nonroot:x:65532:") {
			t.Errorf("%s: no nonroot user: passwd %q group %q", arch, files["etc/passwd"], files["etc/group"])
		}
	}
}

func TestBadConfigIsRefusedWithEveryReason(t *testing.T) {
	_, err := Build(Config{Ref: "UPPER/x", Platforms: map[string]string{"linux": "."}})
	for _, want := range []string{"invalid configuration", "ref", "no binaries", `platform "linux"`, "no CA bundle", "no creation time"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}

func filesOf(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
}
