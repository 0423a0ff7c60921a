// Package provider is the kubelet image credential provider plugin (KEP-2133), API versions
// credentialprovider.kubelet.k8s.io/v1 and v1beta1. It answers from the node agent's cache only,
// with no network call.
package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	credv1beta1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1beta1"

	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/nodecache"
)

// Config configures the plugin.
type Config struct {
	CachePath string
	// MaxCacheDuration bounds how long the kubelet may keep an answer (default 5 min); it is
	// also never longer than the credentials' own life.
	MaxCacheDuration time.Duration
	Now              func() time.Time
}

// Run answers one CredentialProviderRequest from stdin on stdout.
func Run(cfg Config, stdin io.Reader, stdout io.Writer) error {
	if cfg.MaxCacheDuration == 0 {
		cfg.MaxCacheDuration = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	data, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return errors.New("the request is not JSON")
	}
	if tm.Kind != "CredentialProviderRequest" {
		return fmt.Errorf("kind %q, want CredentialProviderRequest", tm.Kind)
	}
	var img string
	switch tm.APIVersion {
	case credv1.SchemeGroupVersion.String():
		var req credv1.CredentialProviderRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return fmt.Errorf("decoding the %s request: %w", tm.APIVersion, err)
		}
		img = req.Image
	case credv1beta1.SchemeGroupVersion.String():
		var req credv1beta1.CredentialProviderRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return fmt.Errorf("decoding the %s request: %w", tm.APIVersion, err)
		}
		img = req.Image
	default:
		return fmt.Errorf("apiVersion %q is not served (v1 and v1beta1 are)", tm.APIVersion)
	}
	if img == "" {
		return errors.New("the request names no image")
	}
	auth, ttl, err := lookup(cfg, img)
	if err != nil {
		return err
	}
	var resp any
	switch tm.APIVersion {
	case credv1.SchemeGroupVersion.String():
		r := &credv1.CredentialProviderResponse{
			TypeMeta:      metav1.TypeMeta{Kind: "CredentialProviderResponse", APIVersion: tm.APIVersion},
			CacheKeyType:  credv1.RegistryPluginCacheKeyType,
			CacheDuration: &metav1.Duration{Duration: ttl},
			Auth:          map[string]credv1.AuthConfig{},
		}
		for k, v := range auth {
			r.Auth[k] = credv1.AuthConfig{Username: v[0], Password: v[1]}
		}
		resp = r
	default:
		r := &credv1beta1.CredentialProviderResponse{
			TypeMeta:      metav1.TypeMeta{Kind: "CredentialProviderResponse", APIVersion: tm.APIVersion},
			CacheKeyType:  credv1beta1.RegistryPluginCacheKeyType,
			CacheDuration: &metav1.Duration{Duration: ttl},
			Auth:          map[string]credv1beta1.AuthConfig{},
		}
		for k, v := range auth {
			r.Auth[k] = credv1beta1.AuthConfig{Username: v[0], Password: v[1]}
		}
		resp = r
	}
	return json.NewEncoder(stdout).Encode(resp)
}

// lookup finds the credentials for an image: auth keyed by the matching host pattern (the kubelet
// matches those keys with the same rules), and how long the kubelet may cache them.
func lookup(cfg Config, img string) (map[string][2]string, time.Duration, error) {
	ref, err := image.Parse(img)
	if err != nil {
		return nil, 0, fmt.Errorf("the request's image: %w", err)
	}
	f, err := nodecache.Read(cfg.CachePath)
	if errors.Is(err, nodecache.ErrNoCache) {
		// The agent has not written yet: no credentials, briefly cached.
		return map[string][2]string{}, 10 * time.Second, nil
	}
	if err != nil {
		return nil, 0, err
	}
	now := cfg.Now()
	var entries []match.Entry[nodecache.Entry]
	for _, e := range f.Entries {
		if !e.ExpiresAt.IsZero() && !e.ExpiresAt.After(now) {
			continue // expired: never served
		}
		for _, h := range e.Hosts {
			p, err := match.ParsePattern(h)
			if err != nil {
				continue
			}
			entries = append(entries, match.Entry[nodecache.Entry]{Name: e.Registry, Pattern: p, Value: e})
		}
	}
	m, ok := match.NewTable(entries).Lookup(ref.Repository())
	if !ok {
		return map[string][2]string{}, cfg.MaxCacheDuration, nil
	}
	ttl := cfg.MaxCacheDuration
	if !m.Value.ExpiresAt.IsZero() {
		// Never outlive the token; leave a margin for clock skew and the pull itself.
		if left := m.Value.ExpiresAt.Sub(now) - time.Minute; left < ttl {
			ttl = max(left, time.Second)
		}
	}
	return map[string][2]string{m.Pattern.String(): {m.Value.Username, m.Value.Password}}, ttl, nil
}
