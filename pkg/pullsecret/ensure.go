package pullsecret

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// Ensurer makes sure a registry's pull secret is in a namespace, with the credentials its
// source holds now. Reads come from informers; it writes only when a secret is missing or stale.
type Ensurer struct {
	// Managed lists the secrets pullpass owns, in every namespace.
	Managed corelisters.SecretLister
	// Sources lists the secrets of each namespace registry sources may be in (pullpass's own,
	// and those the chart allows), from informers. A source anywhere else is refused.
	Sources SourceListers
	Client  kubernetes.Interface
	Log     *slog.Logger
	// Resolver turns credential sources into credentials; New... fills it when nil.
	Resolver *credentials.Resolver
	Now      func() time.Time // time.Now when nil

	// built caches each registry's pull secret content by the versions it was built from, so
	// the hot path neither parses the source nor encodes JSON while nothing changes.
	built        sync.Map // registry name -> builtSecret
	resolverOnce sync.Once
}

type builtSecret struct {
	registryVersion, credsVersion string
	secret                        *corev1.Secret // namespace left empty
}

// SourceListers lists secrets by namespace, one informer per namespace sources may be in.
type SourceListers map[string]corelisters.SecretLister

// Secret implements credentials.SecretGetter from the informers, and only for the namespaces
// sources may be in.
func (p *Ensurer) Secret(_ context.Context, namespace, name string) (*corev1.Secret, error) {
	l, ok := p.Sources[namespace]
	if !ok {
		allowed := make([]string, 0, len(p.Sources))
		for ns := range p.Sources {
			allowed = append(allowed, ns)
		}
		slices.Sort(allowed)
		return nil, &credentials.NamespaceNotAllowedError{Namespace: namespace, Allowed: allowed}
	}
	return l.Secrets(namespace).Get(name)
}

func (p *Ensurer) resolver() *credentials.Resolver {
	p.resolverOnce.Do(func() {
		if p.Resolver == nil {
			p.Resolver = &credentials.Resolver{NewECR: ecr.NewAPI}
		}
		if p.Resolver.Secrets == nil {
			p.Resolver.Secrets = p
		}
	})
	return p.Resolver
}

// Ensure implements inject.SecretEnsurer. Admission only makes pull secrets that are missing
// (or whose credentials have expired): keeping existing ones fresh is the keeper's job alone, so
// replicas holding different ECR tokens never overwrite each other's, and a pod admitted at
// steady state costs no API write at all.
func (p *Ensurer) Ensure(ctx context.Context, namespace string, reg *v1alpha1.Registry, dryRun bool) (string, error) {
	name := Name(reg.Name)
	have, present := p.present(namespace, reg.Name)
	if present {
		return name, nil
	}
	tmpl, err := p.Desired(ctx, reg)
	if tmpl == nil {
		return "", err
	}
	if dryRun {
		return name, nil
	}
	want := tmpl.DeepCopy()
	want.Namespace = namespace
	if have != nil && Trimmed(have) {
		have = nil // the cache cut its labels or annotations: write over a fresh read
	}
	return name, p.write(ctx, have, want)
}

// Present implements inject's check for pull secrets already in place: from the cache only.
func (p *Ensurer) Present(namespace string, reg *v1alpha1.Registry) bool {
	_, ok := p.present(namespace, reg.Name)
	return ok
}

// present returns the cached pull secret of registry in namespace (nil if none), and whether
// it is the registry's own and usable.
func (p *Ensurer) present(namespace, registry string) (*corev1.Secret, bool) {
	have, err := p.Managed.Secrets(namespace).Get(Name(registry))
	if err != nil {
		return nil, false
	}
	return have, Is(have, registry) && Usable(have, p.now())
}

func (p *Ensurer) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Desired returns the registry's pull secret, without a namespace, from the cache when neither
// the registry nor its credentials changed since it was built. With a *credentials.StaleError it
// also returns the secret of the last good credentials.
func (p *Ensurer) Desired(ctx context.Context, reg *v1alpha1.Registry) (*corev1.Secret, error) {
	creds, err := p.resolver().Resolve(ctx, reg)
	if err != nil && !isStale(err) {
		return nil, err
	}
	if v, ok := p.built.Load(reg.Name); ok {
		b := v.(builtSecret)
		if b.registryVersion == reg.ResourceVersion && b.credsVersion == creds.Version && reg.ResourceVersion != "" && creds.Version != "secret/" {
			return b.secret, err
		}
	}
	s, berr := Build("", reg, creds)
	if berr != nil {
		return nil, berr
	}
	SetExpiresAt(s, creds.ExpiresAt)
	p.built.Store(reg.Name, builtSecret{registryVersion: reg.ResourceVersion, credsVersion: creds.Version, secret: s})
	return s, err
}

// isStale reports a *credentials.StaleError. Its own function so that the target errors.As
// needs escapes only on the error path, not on every admission.
func isStale(err error) bool {
	var stale *credentials.StaleError
	return errors.As(err, &stale)
}

// Credentials returns a registry's current credentials, from the same cache as Desired: the
// verifier logs in with exactly what the pull secrets hold.
func (p *Ensurer) Credentials(ctx context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error) {
	return p.resolver().Resolve(ctx, reg)
}

// ExpiresAt returns when a registry's current credentials expire (zero: they do not).
func (p *Ensurer) ExpiresAt(ctx context.Context, reg *v1alpha1.Registry) time.Time {
	creds, _ := p.resolver().Resolve(ctx, reg)
	return creds.ExpiresAt
}

// Forget drops what is cached for a removed registry.
func (p *Ensurer) Forget(name string) {
	p.built.Delete(name)
	p.resolver().Forget(name)
}

// NextRefresh returns when the registry's credentials are due again (zero: on change only).
func (p *Ensurer) NextRefresh(name string) time.Time { return p.resolver().NextRefresh(name) }

// write creates the secret, or mends an owned one whose credentials expired (have, from the
// cache, when it holds one). It goes to the API server for the truth: the cache may lag, and
// other replicas may be writing the same secret.
func (p *Ensurer) write(ctx context.Context, have, want *corev1.Secret) error {
	api := p.Client.CoreV1().Secrets(want.Namespace)
	cur := have
	if cur == nil {
		_, err := api.Create(ctx, want, metav1.CreateOptions{FieldManager: "pullpass-webhook"})
		if err == nil {
			p.Log.Info("created pull secret", "namespace", want.Namespace, "secret", want.Name)
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating secret %s/%s: %w", want.Namespace, want.Name, err)
		}
		if cur, err = api.Get(ctx, want.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("reading secret %s/%s: %w", want.Namespace, want.Name, err)
		}
	}
	if !Is(cur, want.Labels[secrets.LabelRegistry]) {
		return fmt.Errorf("secret %s/%s exists and %w", want.Namespace, want.Name, secrets.ErrNotOwned)
	}
	if Usable(cur, p.now()) {
		return nil // another replica made it a moment ago; the keeper keeps it fresh
	}
	next := cur.DeepCopy()
	CopyInto(next, want)
	if _, err := api.Update(ctx, next, metav1.UpdateOptions{FieldManager: "pullpass-webhook"}); err != nil {
		if apierrors.IsConflict(err) {
			return nil // another writer got there first
		}
		return fmt.Errorf("updating secret %s/%s: %w", want.Namespace, want.Name, err)
	}
	p.Log.Info("renewed expired pull secret", "namespace", want.Namespace, "secret", want.Name)
	return nil
}
