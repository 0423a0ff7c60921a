package bench

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/registryclient"
	"github.com/pullpass/pullpass/pkg/registrywatch"
	"github.com/pullpass/pullpass/webhook/nodecreds"
)

// writeNodeCredentials runs, in this process, what the controller's leader runs for the nodes:
// the node Secret of ns written from the Registry table and the Secrets of ns, on every change.
// The agent under measurement reads only that Secret, as a deployed agent does.
func writeNodeCredentials(ctx context.Context, kube kubernetes.Interface, regs registryclient.Interface, ns string, log *slog.Logger) (stop func(), _ error) {
	ctx, cancel := context.WithCancel(ctx)
	table := registrywatch.New(regs, log)
	factory := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithNamespace(ns))
	secrets := factory.Core().V1().Secrets()
	w, err := nodecreds.New(nodecreds.Config{Store: nodecreds.Secrets{API: kube.CoreV1().Secrets(ns)}, Registries: table,
		Sources: listerSecrets{secrets.Lister()}, Namespace: ns, Logger: log})
	if err != nil {
		cancel()
		return nil, err
	}
	kick := func(any) { w.Kick() }
	handler := cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(_, n any) { kick(n) }, DeleteFunc: kick}
	table.AddHandler(handler)
	_, _ = secrets.Informer().AddEventHandler(handler)
	var wg sync.WaitGroup
	wg.Go(func() { table.Run(ctx) })
	factory.Start(ctx.Done())
	wg.Go(func() {
		if cache.WaitForCacheSync(ctx.Done(), table.HasSynced, secrets.Informer().HasSynced) {
			w.Run(ctx)
		}
	})
	return func() { cancel(); wg.Wait(); factory.Shutdown() }, nil
}

// listerSecrets reads sources from an informer, as the controller's caches do.
type listerSecrets struct{ lister corelisters.SecretLister }

func (l listerSecrets) Secret(_ context.Context, namespace, name string) (*corev1.Secret, error) {
	return l.lister.Secrets(namespace).Get(name)
}
