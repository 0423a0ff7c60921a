// Package ociimage builds pullpass's release images without a Docker engine: for each platform,
// a base layer made here (a CA bundle, /etc/passwd and /etc/group with the non-root user) and a
// layer of that platform's static binaries, with OCI labels, gathered in one image index.
package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user and group every image runs as unless the pod says otherwise (the chart
// runs the agent as root, explicitly), as distroless's nonroot.
const NonRoot = 65532

// CABundlePath is where the CA bundle lands in the image: Go's crypto/x509 looks there first.
const CABundlePath = "etc/ssl/certs/ca-certificates.crt"

// Config describes one image index.
type Config struct {
	// Ref is where the index is pushed, e.g. registry.example.com/pullpass/pullpass-webhook:v1.2.3.
	Ref string
	// Binaries are the file names in each platform's directory; the first is the entrypoint.
	Binaries []string
	// Platforms maps "os/arch" to the directory holding that platform's Binaries.
	Platforms map[string]string
	// CABundle is the PEM bundle the image trusts (Debian's ca-certificates).
	CABundle string
	// Labels are the config's labels and the index's annotations (org.opencontainers.image.*).
	Labels map[string]string
	// Created is the image's creation time and every file's mtime.
	Created time.Time
	// Options reach the registry (auth, transport); the default keychain (DOCKER_CONFIG) if nil.
	Options []remote.Option
}

func (c *Config) validate() error {
	var errs []error
	if _, err := name.ParseReference(c.Ref); err != nil {
		errs = append(errs, fmt.Errorf("ref %q: %w", c.Ref, err))
	}
	if len(c.Binaries) == 0 {
		errs = append(errs, errors.New("no binaries"))
	}
	if len(c.Platforms) == 0 {
		errs = append(errs, errors.New("no platforms"))
	}
	for p := range c.Platforms {
		if _, err := v1.ParsePlatform(p); err != nil || !strings.Contains(p, "/") {
			errs = append(errs, fmt.Errorf("platform %q: want os/arch", p))
		}
	}
	if c.CABundle == "" {
		errs = append(errs, errors.New("no CA bundle"))
	}
	if c.Created.IsZero() {
		errs = append(errs, errors.New("no creation time"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}

// Build makes the index of cfg without pushing it.
func Build(cfg Config) (v1.ImageIndex, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(cfg.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle: %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", cfg.CABundle)
	}
	base, err := layerOf(cfg.Created, baseFiles(ca))
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.Annotations(idx, cfg.Labels).(v1.ImageIndex)
	for _, p := range slices.Sorted(maps.Keys(cfg.Platforms)) {
		platform, _ := v1.ParsePlatform(p)
		img, err := platformImage(cfg, *platform, cfg.Platforms[p], base)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: platform}})
	}
	return idx, nil
}

// Push builds the index of cfg and pushes it; it returns the index's digest.
func Push(ctx context.Context, cfg Config) (v1.Hash, error) {
	idx, err := Build(cfg)
	if err != nil {
		return v1.Hash{}, err
	}
	ref, _ := name.ParseReference(cfg.Ref)
	opts := append([]remote.Option{remote.WithContext(ctx)}, cfg.Options...)
	if len(cfg.Options) == 0 {
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", cfg.Ref, err)
	}
	return idx.Digest()
}

func platformImage(cfg Config, platform v1.Platform, dir string, base v1.Layer) (v1.Image, error) {
	var files []file
	for _, b := range cfg.Binaries {
		data, err := os.ReadFile(filepath.Join(dir, b))
		if err != nil {
			return nil, fmt.Errorf("binary: %w", err)
		}
		files = append(files, file{name: b, mode: 0o755, data: data})
	}
	bins, err := layerOf(cfg.Created, files)
	if err != nil {
		return nil, fmt.Errorf("binaries layer: %w", err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), base, bins)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	cf.Created = v1.Time{Time: cfg.Created}
	user := strconv.Itoa(NonRoot)
	cf.Config = v1.Config{
		User:       user + ":" + user,
		Entrypoint: []string{"/" + cfg.Binaries[0]},
		Env:        []string{"PATH=/", "SSL_CERT_FILE=/" + CABundlePath},
		Labels:     cfg.Labels,
	}
	return mutate.ConfigFile(img, cf)
}

type file struct {
	name string
	mode int64
	data []byte // nil: a directory
}

// baseFiles: the CA bundle, and root, nonroot and nobody as distroless has them (a home and a
// writable /tmp for the non-root user; Go's os/user reads /etc/passwd).
func baseFiles(ca []byte) []file {
	n := strconv.Itoa(NonRoot)
	return []file{
		{name: "etc", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:" + n + ":\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:" + n + ":" + n + ":nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/ssl", mode: 0o755},
		{name: "etc/ssl/certs", mode: 0o755},
		{name: CABundlePath, mode: 0o644, data: ca},
		{name: "home", mode: 0o755},
		{name: "home/nonroot", mode: 0o700},
		{name: "tmp", mode: 0o1777},
	}
}

// layerOf writes files into a tar layer with fixed owners and times, so the same inputs give
// the same digest (the base layer is shared by every image and platform).
func layerOf(mtime time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Format: tar.FormatPAX}
		if f.data == nil {
			h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if f.name == "home/nonroot" {
			h.Uid, h.Gid = NonRoot, NonRoot
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
