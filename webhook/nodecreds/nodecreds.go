// Package nodecreds writes what the node agents serve into pullpass's own node Secret
// (pkg/nodesecret): each node-served registry's spec with its resolved static credentials, or the
// AWS keys its agents fetch ECR tokens with. The controller's leader runs it. The agents then read
// that one Secret (a few shards past the API server's size limit) by name, under a Role the chart
// fixes, and nothing else: no Role is rewritten per source, no Registry can give the nodes any
// other Secret, and the nodes do not watch the Registries.
//
// A source that cannot be read now keeps its last good entry for KeepLastGood (as the keeper
// keeps pull secrets); a source that says something else (gone, emptied, moved where nodes may
// not be served from, one of pullpass's own) has its entry withdrawn at the next write.
package nodecreds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/nodeaccess"
	"github.com/pullpass/pullpass/pkg/nodesecret"
	"github.com/pullpass/pullpass/pkg/registrytable"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// Store reads and writes the node Secrets in pullpass's namespace (Secrets in production).
type Store interface {
	Get(ctx context.Context, name string) (*corev1.Secret, error)
	Create(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error)
	Update(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error)
	Delete(ctx context.Context, name string) error
}

// Secrets is a Store over the API server.
type Secrets struct{ API typedcorev1.SecretInterface }

var _ Store = Secrets{}

const fieldManager = "pullpass-controller"

func (s Secrets) Get(ctx context.Context, name string) (*corev1.Secret, error) {
	return s.API.Get(ctx, name, metav1.GetOptions{})
}
func (s Secrets) Create(ctx context.Context, sec *corev1.Secret) (*corev1.Secret, error) {
	return s.API.Create(ctx, sec, metav1.CreateOptions{FieldManager: fieldManager})
}
func (s Secrets) Update(ctx context.Context, sec *corev1.Secret) (*corev1.Secret, error) {
	return s.API.Update(ctx, sec, metav1.UpdateOptions{FieldManager: fieldManager})
}
func (s Secrets) Delete(ctx context.Context, name string) error {
	return s.API.Delete(ctx, name, metav1.DeleteOptions{})
}

// Registries lists the cached Registry objects.
type Registries interface {
	List() []*v1alpha1.Registry
}

// Config configures a Writer.
type Config struct {
	Store      Store
	Registries Registries
	// Sources reads source Secrets (the controller's caches).
	Sources credentials.SecretGetter
	// Namespace is pullpass's: node-served sources are read from it only, and the node
	// Secrets live in it.
	Namespace string
	// Reserved names pullpass's own Secrets in Namespace that no entry is ever made of,
	// whatever a Registry names (the webhook's TLS Secret).
	Reserved []string
	// KeepLastGood bounds how long an entry stays while its source cannot be read (default 1 h),
	// counted from the first failure this writer saw.
	KeepLastGood time.Duration
	// ShardBytes is the most one node Secret holds (default 768 KiB, under the API server's
	// 1 MiB per object): past it, entries go on in the next shard (nodesecret.MaxShards).
	ShardBytes int
	// Resync bounds the time between two syncs (default 1 min).
	Resync  time.Duration
	Metrics Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// maxSecretBytes is the most data the API server takes in one Secret.
const maxSecretBytes = 1 << 20

// DefaultShardBytes leaves room under the API server's 1 MiB for the object's metadata and
// the entries a move between shards briefly holds twice.
const DefaultShardBytes = 768 << 10

func (c *Config) defaults() error {
	if c.Store == nil || c.Registries == nil || c.Sources == nil || c.Namespace == "" {
		return errors.New("store, registries, sources and namespace are required")
	}
	if c.KeepLastGood <= 0 {
		c.KeepLastGood = time.Hour
	}
	if c.ShardBytes <= 0 {
		c.ShardBytes = DefaultShardBytes
	}
	if c.ShardBytes > maxSecretBytes {
		return fmt.Errorf("shard bytes %d over the API server's %d per Secret", c.ShardBytes, maxSecretBytes)
	}
	if c.Resync <= 0 {
		c.Resync = time.Minute
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Writer keeps the node Secrets.
type Writer struct {
	cfg      Config
	resolver *credentials.Resolver
	kick     chan struct{}

	failingSince credentials.FailingSince
	known        map[string]bool // the registries served at the last sync
}

// New returns a Writer.
func New(cfg Config) (*Writer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return &Writer{cfg: cfg, resolver: &credentials.Resolver{Secrets: cfg.Sources}, kick: make(chan struct{}, 1)}, nil
}

// Kick asks for a sync soon (a Registry or a source changed). It never blocks.
func (w *Writer) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run syncs at start, on every Kick and every Resync, retrying failures with a growing delay,
// until ctx ends.
func (w *Writer) Run(ctx context.Context) {
	retry := time.Second
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer.C:
		}
		wait := w.cfg.Resync
		if err := w.Sync(ctx); err != nil && ctx.Err() == nil {
			w.cfg.Logger.Error("writing the node credentials", "err", err)
			wait, retry = retry, min(2*retry, w.cfg.Resync)
		} else {
			retry = time.Second
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// Sync resolves every node-served registry and writes the node Secrets where they changed.
func (w *Writer) Sync(ctx context.Context) error {
	have, err := w.read(ctx)
	if err != nil {
		w.cfg.Metrics.Write(err)
		return err
	}
	previous := map[string][]byte{}
	for _, s := range have {
		if s != nil {
			for k, v := range s.Data {
				previous[k] = v
			}
		}
	}
	entries := map[string][]byte{}
	served := map[string]bool{}
	for _, reg := range w.cfg.Registries.List() {
		if !nodeaccess.ServedByNode(reg) || registrytable.Validate(reg) != nil {
			continue
		}
		served[reg.Name] = true
		entries[reg.Name] = w.entry(ctx, reg, previous[reg.Name])
	}
	w.forgetUnserved(served)
	shards, dropped := w.shard(entries)
	if len(dropped) > 0 {
		w.cfg.Logger.Error("the node credentials pass every shard: these registries are not served by the nodes",
			"shards", nodesecret.MaxShards, "shardBytes", w.cfg.ShardBytes, "registries", dropped)
	}
	err = w.write(ctx, have, shards)
	w.cfg.Metrics.Write(err)
	if err == nil {
		w.cfg.Metrics.Entries(len(entries)-len(dropped), len(shards))
	}
	return err
}

// read gets every shard from the API server (nil: not there).
func (w *Writer) read(ctx context.Context) ([]*corev1.Secret, error) {
	out := make([]*corev1.Secret, nodesecret.MaxShards)
	for i := range out {
		s, err := w.cfg.Store.Get(ctx, nodesecret.ShardName(i))
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading node secret %s/%s: %w", w.cfg.Namespace, nodesecret.ShardName(i), err)
		case !secrets.Owned(s) || s.Labels[secrets.LabelRole] != nodesecret.RoleNodeCredentials:
			return nil, fmt.Errorf("node secret %s/%s is not pullpass's (labels %s=%s, %s=%s expected): not writing over it",
				w.cfg.Namespace, s.Name, secrets.LabelManagedBy, secrets.ManagedByValue, secrets.LabelRole, nodesecret.RoleNodeCredentials)
		default:
			out[i] = s
		}
	}
	return out, nil
}

// entry is a registry's encoded entry: its spec, with the credentials resolved now, or the
// previous entry while the source cannot be read (for KeepLastGood), or none. An ECR registry
// without keys has none: its agents fetch tokens with the node's own identity.
func (w *Writer) entry(ctx context.Context, reg *v1alpha1.Registry, prev []byte) []byte {
	bare := nodesecret.Entry{Spec: &reg.Spec, Generation: reg.Generation}
	a := reg.Spec.Auth
	if a.ECR != nil && a.ECR.AccessKeySecretRef == nil {
		return nodesecret.Encode(bare)
	}
	e, err := w.resolve(ctx, reg)
	switch {
	case err == nil:
		w.failingSince.Record(reg.Name, time.Time{})
		e.Spec, e.Generation = bare.Spec, bare.Generation
		return nodesecret.Encode(e)
	case credentials.Unavailable(err):
		since := w.failingSince.Record(reg.Name, w.cfg.Now())
		if kept, ok := lastGood(reg, prev); ok && w.cfg.Now().Sub(since) < w.cfg.KeepLastGood {
			w.cfg.Logger.Warn("source unavailable; the nodes keep the last good credentials", "registry", reg.Name,
				"failingSince", since, "until", since.Add(w.cfg.KeepLastGood), "err", err)
			return kept
		}
		w.cfg.Logger.Error("no credentials for the nodes", "registry", reg.Name, "failingSince", since, "err", err)
	default:
		w.failingSince.Record(reg.Name, time.Time{})
		if _, had := lastGood(reg, prev); had {
			w.cfg.Logger.Warn("source no longer gives credentials; withdrawing them from the nodes", "registry", reg.Name, "err", err)
		} else {
			// Every sync says it again: the keeper's status of the Registry says it once.
			w.cfg.Logger.Debug("no credentials for the nodes", "registry", reg.Name, "err", err)
		}
	}
	return nodesecret.Encode(bare)
}

// lastGood is the previous entry kept while a source cannot be read, if it has credentials. Its
// credentials were resolved for its spec's hosts and source (a docker config's hosts chose them):
// with the same hosts and source the entry takes the current spec (a narrower namespace selector
// reaches the nodes at once); with others it stays as it was. One an older controller wrote
// without a spec is kept only for the generation it was resolved for.
func lastGood(reg *v1alpha1.Registry, prev []byte) ([]byte, bool) {
	if prev == nil {
		return nil, false
	}
	e, err := nodesecret.Decode(reg.Name, prev)
	if err != nil || !e.HasCredentials() {
		return nil, false
	}
	switch {
	case e.Spec == nil && e.Generation != 0 && e.Generation != reg.Generation:
		return nil, false
	case e.Spec == nil || (slices.Equal(e.Spec.Hosts, reg.Spec.Hosts) && reflect.DeepEqual(e.Spec.Auth, reg.Spec.Auth)):
		e.Spec, e.Generation = &reg.Spec, reg.Generation
		return nodesecret.Encode(e), true
	}
	return prev, true
}

// errNotNodeSource says a Registry's source is not where the nodes may be served from.
var errNotNodeSource = errors.New("is not a source the nodes may be served from: node-served registries read Secrets of pullpass's namespace only")

// resolve reads a registry's source into its entry.
func (w *Writer) resolve(ctx context.Context, reg *v1alpha1.Registry) (nodesecret.Entry, error) {
	refs := reg.Spec.Auth.SecretRefs()
	if len(refs) != 1 {
		return nodesecret.Entry{}, fmt.Errorf("registry %s: no source secret", reg.Name)
	}
	ref := refs[0]
	if ref.Namespace != w.cfg.Namespace || slices.Contains(w.cfg.Reserved, ref.Name) {
		return nodesecret.Entry{}, fmt.Errorf("registry %s: secret %s/%s %w", reg.Name, ref.Namespace, ref.Name, errNotNodeSource)
	}
	src := nodesecret.SourceRef{Namespace: ref.Namespace, Name: ref.Name}
	if reg.Spec.Auth.ECR != nil {
		return w.awsKeys(ctx, reg, src)
	}
	c, err := w.resolver.Resolve(ctx, reg)
	if err != nil {
		return nodesecret.Entry{}, err
	}
	return nodesecret.Entry{Username: c.Username, Password: c.Password, Source: src, Version: c.Version}, nil
}

// awsKeys reads an ECR registry's keys (as credentials.Resolver does before it fetches a token).
func (w *Writer) awsKeys(ctx context.Context, reg *v1alpha1.Registry, src nodesecret.SourceRef) (nodesecret.Entry, error) {
	if secrets.Reserved(src.Name) {
		return nodesecret.Entry{}, fmt.Errorf("registry %s: AWS keys secret %s/%s %w", reg.Name, src.Namespace, src.Name, secrets.ErrNotASource)
	}
	s, err := w.cfg.Sources.Secret(ctx, src.Namespace, src.Name)
	if err != nil {
		return nodesecret.Entry{}, fmt.Errorf("registry %s: AWS keys secret %s/%s: %w", reg.Name, src.Namespace, src.Name, err)
	}
	if err := secrets.CheckSource(s); err != nil {
		return nodesecret.Entry{}, fmt.Errorf("registry %s: AWS keys secret: %w", reg.Name, err)
	}
	keys := nodesecret.AWSKeys{AccessKeyID: string(s.Data["aws_access_key_id"]), SecretAccessKey: string(s.Data["aws_secret_access_key"]),
		SessionToken: string(s.Data["aws_session_token"])}
	if keys.AccessKeyID == "" || keys.SecretAccessKey == "" {
		return nodesecret.Entry{}, fmt.Errorf("registry %s: AWS keys secret %s/%s needs aws_access_key_id and aws_secret_access_key", reg.Name, src.Namespace, src.Name)
	}
	return nodesecret.Entry{AWS: &keys, Source: src, Version: s.ResourceVersion}, nil
}

// forgetUnserved drops what is kept of registries no longer served. Only Sync calls it.
func (w *Writer) forgetUnserved(served map[string]bool) {
	w.failingSince.Forget(func(name string) bool { return served[name] })
	for name := range w.known {
		if !served[name] {
			w.resolver.Forget(name)
		}
	}
	w.known = served
}

// shard spreads the entries, in name order, over as few shards as hold them within ShardBytes
// each (at least one, empty when there are none: the agents tell "nothing served" from "not
// written yet" by it). It returns the registries that fit in no shard.
func (w *Writer) shard(entries map[string][]byte) ([]map[string][]byte, []string) {
	// The first shard says the entries' format: an agent reads a shard without it as an older
	// controller's, not as "no registries".
	shards := []map[string][]byte{{nodesecret.FormatKey: []byte(nodesecret.FormatVersion)}}
	size := len(nodesecret.FormatKey) + len(nodesecret.FormatVersion)
	var dropped []string
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		n := len(name) + len(entries[name])
		if n > w.cfg.ShardBytes {
			dropped = append(dropped, name) // fits in no shard (a huge namespace selector): not the others' loss
			continue
		}
		if size+n > w.cfg.ShardBytes && len(shards[len(shards)-1]) > 0 {
			if len(shards) == nodesecret.MaxShards {
				dropped = append(dropped, name)
				continue
			}
			shards, size = append(shards, map[string][]byte{}), 0
		}
		shards[len(shards)-1][name] = entries[name]
		size += n
	}
	return shards, dropped
}

// write makes the shards what want says, writing only those that change. An entry that moves
// from one shard to another is first written to its new shard while its old one still holds it,
// so no agent ever sees it gone; shards no longer needed are deleted last.
func (w *Writer) write(ctx context.Context, have []*corev1.Secret, want []map[string][]byte) error {
	where := map[string]int{}
	for i, data := range want {
		for name := range data {
			where[name] = i
		}
	}
	// Phase one: each shard as wanted, plus what it holds now that moves elsewhere.
	for i, data := range want {
		staged, size := maps.Clone(data), 0
		if have[i] != nil {
			for name, v := range have[i].Data {
				if j, ok := where[name]; ok && j != i {
					staged[name] = v
				}
			}
		}
		for name, v := range staged {
			size += len(name) + len(v)
		}
		if size > maxSecretBytes {
			staged = data // too much moves at once to hold it twice: the agents may miss it a moment
		}
		if err := w.put(ctx, have, i, staged); err != nil {
			return err
		}
	}
	// Phase two: the moved entries leave their old shards.
	for i, data := range want {
		if err := w.put(ctx, have, i, data); err != nil {
			return err
		}
	}
	for i := len(want); i < len(have); i++ {
		if have[i] == nil {
			continue
		}
		if err := w.cfg.Store.Delete(ctx, have[i].Name); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting node secret %s/%s: %w", w.cfg.Namespace, have[i].Name, err)
		}
		w.cfg.Logger.Info("node secret no longer needed: deleted", "secret", w.cfg.Namespace+"/"+have[i].Name)
		have[i] = nil
	}
	return nil
}

// put writes shard i with data unless it holds that already, and records what it holds in have.
func (w *Writer) put(ctx context.Context, have []*corev1.Secret, i int, data map[string][]byte) error {
	cur := have[i]
	if cur != nil && maps.EqualFunc(cur.Data, data, bytes.Equal) {
		return nil
	}
	name := nodesecret.ShardName(i)
	var (
		written *corev1.Secret
		err     error
	)
	if cur == nil {
		written, err = w.cfg.Store.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.cfg.Namespace, Name: name,
			Labels: nodesecret.Labels()}, Type: corev1.SecretTypeOpaque, Data: data})
	} else {
		cur = cur.DeepCopy()
		cur.Data = data
		// A write of another term in between is refused by the resourceVersion: the next sync
		// reads again.
		written, err = w.cfg.Store.Update(ctx, cur)
	}
	if err != nil {
		return fmt.Errorf("writing node secret %s/%s: %w", w.cfg.Namespace, name, err)
	}
	have[i] = written
	w.cfg.Logger.Info("node secret written", "secret", w.cfg.Namespace+"/"+name, "registries", len(data))
	return nil
}
