package controller

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrylogin"
	"github.com/pullpass/pullpass/pkg/registrywatch"
	"github.com/pullpass/pullpass/webhook/inject"
	"github.com/pullpass/pullpass/webhook/pullwatch"
	"github.com/pullpass/pullpass/webhook/verify"
)

// newLogin builds the registry login client, trusting --registry-ca-file besides the system's CAs.
func newLogin(o *Options) (*registrylogin.Client, error) {
	cfg := registrylogin.Config{Timeout: o.VerifyTimeout}
	if o.RegistryCAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(o.RegistryCAFile)
		if err != nil {
			return nil, fmt.Errorf("--registry-ca-file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--registry-ca-file %s holds no PEM certificate", o.RegistryCAFile)
		}
		cfg.RootCAs = pool
	}
	return registrylogin.New(cfg), nil
}

// watchForVerifier verifies a registry when its spec changes (not its status: the verifier's own
// writes must not start it again) and when a source secret it reads changes.
func watchForVerifier(v *verify.Verifier, table *registrywatch.Watcher, sources []cache.SharedIndexInformer) {
	table.AddHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if r, ok := obj.(*v1alpha1.Registry); ok {
				v.Enqueue(r.Name)
			}
		},
		UpdateFunc: func(o, n any) {
			or, ok1 := o.(*v1alpha1.Registry)
			nr, ok2 := n.(*v1alpha1.Registry)
			if ok1 && ok2 && or.Generation != nr.Generation {
				v.Enqueue(nr.Name)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if r, ok := obj.(*v1alpha1.Registry); ok {
				v.Enqueue(r.Name)
			}
		},
	})
	bySource := func(obj any) { forSourceOf(table, obj, v.Enqueue) }
	for _, inf := range sources {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: bySource,
			UpdateFunc: func(o, n any) {
				os, ok1 := o.(*corev1.Secret)
				ns, ok2 := n.(*corev1.Secret)
				if ok1 && ok2 && os.ResourceVersion == ns.ResourceVersion {
					return // a resync
				}
				bySource(n)
			},
			DeleteFunc: bySource,
		})
	}
}

// observeImage reports a failing pull's image to the verifier with the registry serving it,
// when the registry serves the pod's namespace (reaches): any other pod would choose the host a
// glob registry's credentials are sent to.
func observeImage(v *verify.Verifier, table *registrywatch.Watcher, reaches func(*v1alpha1.Registry, string) bool) func(namespace, img string) {
	return func(namespace, img string) {
		t := table.Table()
		if t == nil {
			return
		}
		if m, ok, err := t.Lookup(img); err == nil && ok && reaches(m.Registry, namespace) {
			v.Seen().Observe(m.Registry, m.Image)
		}
	}
}

// registryReaches is inject.Policy.RegistryReaches for a namespace named, read from the cache
// (a namespace not cached is reached by Cluster-scope registries only).
func registryReaches(policy inject.Policy, namespaces corelisters.NamespaceLister) func(*v1alpha1.Registry, string) bool {
	return func(reg *v1alpha1.Registry, namespace string) bool {
		ns, err := namespaces.Get(namespace)
		if err != nil {
			ns = nil
		}
		return policy.RegistryReaches(reg, ns)
	}
}

// newStuckPods builds the recreation of stuck pods, with its events recorder.
func newStuckPods(kube kubernetes.Interface, watcher *pullwatch.Watcher, namespaces corelisters.NamespaceLister, o *Options, m *Metrics, log *slog.Logger) (*verify.StuckPods, func(), error) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "pullpass"})
	s, err := verify.NewStuckPods(verify.StuckPodsConfig{
		Client: kube, Failing: watcher.Failing, Namespaces: namespaces, Default: o.RecreateStuckPods,
		Recorder: rec, Logger: log, Deleted: m.Recreated,
	})
	if err != nil {
		b.Shutdown()
		return nil, nil, err
	}
	return s, b.Shutdown, nil
}

// namespaceLabels reads a namespace's labels from the informer's cache (nil when not cached).
func namespaceLabels(l corelisters.NamespaceLister) func(string) map[string]string {
	return func(name string) map[string]string {
		if ns, err := l.Get(name); err == nil {
			return ns.Labels
		}
		return nil
	}
}
