package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// PullSecrets makes sure a registry's pull secret is in a namespace, with the credentials its
// source holds now. Reads come from informers; it writes only when a secret is missing or stale.
type PullSecrets struct {
	// Managed lists the secrets pullpass owns, in every namespace.
	Managed corelisters.SecretLister
	// Sources lists secrets in pullpass's own namespace, where registry sources usually are.
	Sources         corelisters.SecretLister
	SourceNamespace string
	Client          kubernetes.Interface
	Log             *slog.Logger
	// Resolver turns credential sources into credentials; New... fills it when nil.
	Resolver *credentials.Resolver

	// built caches each registry's pull secret content by the versions it was built from, so
	// the hot path neither parses the source nor encodes JSON while nothing changes.
	built        sync.Map // registry name -> builtSecret
	resolverOnce sync.Once
}

type builtSecret struct {
	registryVersion, credsVersion string
	secret                        *corev1.Secret // namespace left empty
}

// Secret implements credentials.SecretGetter: pullpass's own namespace from the informer, any
// other with a live read.
func (p *PullSecrets) Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	if namespace == p.SourceNamespace && p.Sources != nil {
		if s, err := p.Sources.Secrets(namespace).Get(name); err == nil {
			return s, nil
		}
	}
	return p.Client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (p *PullSecrets) resolver() *credentials.Resolver {
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

// Ensure implements inject.SecretEnsurer.
func (p *PullSecrets) Ensure(ctx context.Context, namespace string, reg *v1alpha1.Registry, dryRun bool) (string, error) {
	name := pullsecret.Name(reg.Name)
	tmpl, err := p.Desired(ctx, reg)
	if tmpl == nil {
		return "", err
	}
	have, err := p.Managed.Secrets(namespace).Get(name)
	if err == nil && pullsecret.UpToDate(have, tmpl) {
		return name, nil
	}
	if dryRun {
		return name, nil
	}
	want := tmpl.DeepCopy()
	want.Namespace = namespace
	return name, p.write(ctx, want)
}

// Desired returns the registry's pull secret, without a namespace, from the cache when neither
// the registry nor its credentials changed since it was built. With a *credentials.StaleError it
// also returns the secret of the last good credentials.
func (p *PullSecrets) Desired(ctx context.Context, reg *v1alpha1.Registry) (*corev1.Secret, error) {
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
	s, berr := pullsecret.Build("", reg, secrets.Credentials{Username: creds.Username, Password: creds.Password})
	if berr != nil {
		return nil, berr
	}
	p.built.Store(reg.Name, builtSecret{registryVersion: reg.ResourceVersion, credsVersion: creds.Version, secret: s})
	return s, err
}

// isStale reports a *credentials.StaleError. Its own function so that the target errors.As
// needs escapes only on the error path, not on every admission.
func isStale(err error) bool {
	var stale *credentials.StaleError
	return errors.As(err, &stale)
}

// ExpiresAt returns when a registry's current credentials expire (zero: they do not).
func (p *PullSecrets) ExpiresAt(ctx context.Context, reg *v1alpha1.Registry) time.Time {
	creds, _ := p.resolver().Resolve(ctx, reg)
	return creds.ExpiresAt
}

// Forget drops what is cached for a removed registry.
func (p *PullSecrets) Forget(name string) {
	p.built.Delete(name)
	p.resolver().Forget(name)
}

// NextRefresh returns when the registry's credentials are due again (zero: on change only).
func (p *PullSecrets) NextRefresh(name string) time.Time { return p.resolver().NextRefresh(name) }

// write creates or updates the secret, going to the API server for the truth: the cache may
// lag, and other replicas may be writing the same secret.
func (p *PullSecrets) write(ctx context.Context, want *corev1.Secret) error {
	api := p.Client.CoreV1().Secrets(want.Namespace)
	_, err := api.Create(ctx, want, metav1.CreateOptions{FieldManager: "pullpass-webhook"})
	if err == nil {
		p.Log.Info("created pull secret", "namespace", want.Namespace, "secret", want.Name)
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating secret %s/%s: %w", want.Namespace, want.Name, err)
	}
	cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading secret %s/%s: %w", want.Namespace, want.Name, err)
	}
	if !secrets.Owned(cur) {
		return fmt.Errorf("secret %s/%s exists and %w", want.Namespace, want.Name, secrets.ErrNotOwned)
	}
	if pullsecret.UpToDate(cur, want) {
		return nil
	}
	cur.Type, cur.Data, cur.Labels = want.Type, want.Data, want.Labels
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "pullpass-webhook"}); err != nil {
		if apierrors.IsConflict(err) {
			return nil // another replica wrote it a moment ago, from the same source
		}
		return fmt.Errorf("updating secret %s/%s: %w", want.Namespace, want.Name, err)
	}
	p.Log.Info("updated pull secret", "namespace", want.Namespace, "secret", want.Name)
	return nil
}
