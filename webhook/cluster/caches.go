package cluster

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/registryclient"
	"github.com/pullpass/pullpass/pkg/registrywatch"
	"github.com/pullpass/pullpass/pkg/secrets"
	"github.com/pullpass/pullpass/pkg/slim"
)

// Caches are the informers both binaries read: every namespace; pullpass's own secrets in every
// namespace; the secrets of the namespaces sources may be in (pullpass's, and those allowed); the
// registry table. Nothing else is watched, and no other Secret is ever read. managedFields are
// dropped: at 10,000 namespaces they are most of what the caches would hold.
type Caches struct {
	Namespaces corev1informers.NamespaceInformer
	Managed    corev1informers.SecretInformer
	// Sources are the source namespaces' Secret informers, in AllSourceNamespaces' order.
	Sources     []cache.SharedIndexInformer
	Table       *registrywatch.Watcher
	PullSecrets *pullsecret.Ensurer

	factories []informers.SharedInformerFactory
}

// NewCaches builds the caches; Start starts them.
func NewCaches(kube kubernetes.Interface, registries registryclient.Interface, o *Options, log *slog.Logger) *Caches {
	nsFactory := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithTransform(slim.Namespace))
	// Any tenant can label a Secret managed-by pullpass: of those, the cache keeps only what
	// pullpass reads (pullsecret.Slim).
	managedFactory := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithTransform(pullsecret.Slim),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.LabelSelector = secrets.LabelManagedBy + "=" + secrets.ManagedByValue
		}))
	c := &Caches{
		Namespaces: nsFactory.Core().V1().Namespaces(),
		Managed:    managedFactory.Core().V1().Secrets(),
		Table:      registrywatch.New(registries, log.With("component", "registries")),
		factories:  []informers.SharedInformerFactory{nsFactory, managedFactory},
	}
	sourceListers := pullsecret.SourceListers{}
	for _, ns := range o.AllSourceNamespaces() {
		f := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithNamespace(ns), informers.WithTransform(slim.DropManagedFields))
		inf := f.Core().V1().Secrets()
		sourceListers[ns] = inf.Lister()
		c.Sources = append(c.Sources, inf.Informer())
		c.factories = append(c.factories, f)
	}
	c.PullSecrets = &pullsecret.Ensurer{
		Managed: c.Managed.Lister(), Sources: sourceListers, Client: kube, Log: log.With("component", "pullsecrets"),
		Resolver: &credentials.Resolver{NewECR: ecr.NewAPI, ECREndpoint: o.ECREndpoint},
	}
	// Informers are built lazily by their factories: build them now, so Start starts them.
	c.Namespaces.Informer()
	c.Managed.Informer()
	return c
}

// Start starts every informer until ctx ends.
func (c *Caches) Start(ctx context.Context) {
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	go c.Table.Run(ctx)
}

// Synced reports whether every cache holds its first list.
func (c *Caches) Synced() bool {
	if !c.Table.HasSynced() || !c.Namespaces.Informer().HasSynced() || !c.Managed.Informer().HasSynced() {
		return false
	}
	for _, inf := range c.Sources {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// Shutdown waits for the informers' goroutines to end (after ctx given to Start ended).
func (c *Caches) Shutdown() {
	for _, f := range c.factories {
		f.Shutdown()
	}
}
