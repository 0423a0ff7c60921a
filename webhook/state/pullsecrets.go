package state

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
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

	// built caches each registry's pull secret content by the versions it was built from, so
	// the hot path neither parses the source nor encodes JSON while nothing changes.
	built sync.Map // registry name -> builtSecret
}

type builtSecret struct {
	registryVersion, sourceVersion string
	secret                         *corev1.Secret // namespace left empty
}

// Ensure implements inject.SecretEnsurer.
func (p *PullSecrets) Ensure(ctx context.Context, namespace string, reg *v1alpha1.Registry, dryRun bool) (string, error) {
	name := pullsecret.Name(reg.Name)
	tmpl, err := p.Desired(ctx, reg)
	if err != nil {
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
// the registry nor its source changed since it was built.
func (p *PullSecrets) Desired(ctx context.Context, reg *v1alpha1.Registry) (*corev1.Secret, error) {
	src, err := p.source(ctx, reg)
	if err != nil {
		return nil, err
	}
	if v, ok := p.built.Load(reg.Name); ok {
		b := v.(builtSecret)
		if b.registryVersion == reg.ResourceVersion && b.sourceVersion == src.ResourceVersion && reg.ResourceVersion != "" && src.ResourceVersion != "" {
			return b.secret, nil
		}
	}
	creds, err := secrets.FromSecret(src, reg.Spec.Hosts)
	if err != nil {
		return nil, err
	}
	s, err := pullsecret.Build("", reg, creds)
	if err != nil {
		return nil, err
	}
	p.built.Store(reg.Name, builtSecret{registryVersion: reg.ResourceVersion, sourceVersion: src.ResourceVersion, secret: s})
	return s, nil
}

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

// source reads the registry's source secret.
func (p *PullSecrets) source(ctx context.Context, reg *v1alpha1.Registry) (*corev1.Secret, error) {
	ref := reg.Spec.Auth.SecretRef
	if ref == nil {
		return nil, fmt.Errorf("registry %s: credential source %v is not served by the webhook yet", reg.Name, reg.Spec.Auth.Sources())
	}
	var src *corev1.Secret
	var err error
	if ref.Namespace == p.SourceNamespace && p.Sources != nil {
		src, err = p.Sources.Secrets(ref.Namespace).Get(ref.Name)
	}
	if src == nil {
		// Not in the watched namespace, or not seen yet: ask the API server.
		src, err = p.Client.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("registry %s: source secret %s/%s: %w", reg.Name, ref.Namespace, ref.Name, err)
	}
	return src, nil
}
