// Package issuer keeps the cluster's service account issuer and its public keys beside the node
// cache (satoken.Keys), for the plugin to verify the tokens the kubelet hands it. It reads them
// from the API server's OIDC discovery endpoints, which every service account may read
// (system:service-account-issuer-discovery), at start and then periodically: the API server
// publishes a new key before it signs with it, so a rotation reaches the node in time.
package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullpass/pullpass/agent/satoken"
)

// Discovery paths of the API server.
const (
	ConfigurationPath = "/.well-known/openid-configuration"
	JWKSPath          = "/openid/v1/jwks"
)

// Getter reads a path of the API server (the REST client's AbsPath).
type Getter interface {
	Get(ctx context.Context, path string) ([]byte, error)
}

// Config configures a Keeper.
type Config struct {
	API Getter
	// Path is the keys file (satoken.KeysPath of the cache).
	Path string
	// Node is this node's name: tokens bound to pods of other nodes are refused.
	Node string
	// Refresh is the time between two reads (default 10 min); a failed read is tried again
	// sooner (RetryAfter, default 10 s).
	Refresh, RetryAfter time.Duration
	Logger              *slog.Logger
	Now                 func() time.Time
}

// Keeper writes the keys file.
type Keeper struct {
	cfg  Config
	last []byte // the keys as last written, without FetchedAt
}

// New returns a Keeper.
func New(cfg Config) (*Keeper, error) {
	if cfg.API == nil || cfg.Path == "" {
		return nil, errors.New("invalid configuration: API and path are required")
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = 10 * time.Minute
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Keeper{cfg: cfg}, nil
}

// Run syncs at start and every Refresh until ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	for {
		wait := k.cfg.Refresh
		if err := k.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			k.cfg.Logger.Error("reading the service account issuer's keys; the plugin keeps the last ones it has", "err", err)
			wait = k.cfg.RetryAfter
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Sync reads the issuer and its keys and writes them when they changed.
func (k *Keeper) Sync(ctx context.Context) error {
	raw, err := k.cfg.API.Get(ctx, ConfigurationPath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", ConfigurationPath, err)
	}
	var disc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(raw, &disc); err != nil || disc.Issuer == "" {
		return fmt.Errorf("%s names no issuer", ConfigurationPath)
	}
	raw, err = k.cfg.API.Get(ctx, JWKSPath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", JWKSPath, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return fmt.Errorf("%s is not a key set: %w", JWKSPath, err)
	}
	set.Keys = publicSigningKeys(set.Keys)
	if len(set.Keys) == 0 {
		return fmt.Errorf("%s has no public signing key", JWKSPath)
	}
	keys := satoken.Keys{Version: satoken.KeysVersion, Issuer: disc.Issuer, JWKS: set, Node: k.cfg.Node}
	same, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	if _, statErr := os.Stat(k.cfg.Path); statErr == nil && bytes.Equal(same, k.last) {
		return nil
	}
	keys.FetchedAt = k.cfg.Now()
	if err := satoken.WriteKeys(k.cfg.Path, keys); err != nil {
		return err
	}
	k.last = same
	k.cfg.Logger.Info("service account issuer keys written", "path", k.cfg.Path, "issuer", disc.Issuer, "keys", len(set.Keys))
	return nil
}

// publicSigningKeys keeps the keys fit to verify a signature.
func publicSigningKeys(keys []jose.JSONWebKey) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range keys {
		if key.Valid() && key.IsPublic() && (key.Use == "" || key.Use == "sig") {
			out = append(out, key)
		}
	}
	return out
}
