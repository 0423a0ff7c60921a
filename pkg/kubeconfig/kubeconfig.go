// Package kubeconfig loads the API server connection of pullpass's in-cluster binaries.
package kubeconfig

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/pkg/registryclient"
)

// Load returns the in-cluster config when path is empty and the binary runs in a pod, else the
// kubeconfig at path (or the default loading rules' when empty).
func Load(path string) (*rest.Config, error) {
	if path == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// Clients are the API clients of pullpass's in-cluster binaries.
type Clients struct {
	Config     *rest.Config
	Kube       kubernetes.Interface
	Registries registryclient.Interface
}

// NewClients loads the config at path (see Load) and builds the clients, identified as
// userAgent; qps and burst are left at client-go's defaults when zero.
func NewClients(path, userAgent string, qps float32, burst int) (*Clients, error) {
	cfg, err := Load(path)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = userAgent
	if qps > 0 {
		cfg.QPS, cfg.Burst = qps, burst
	}
	return ClientsFor(cfg)
}

// ClientsFor builds the clients of a loaded config.
func ClientsFor(cfg *rest.Config) (*Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	regs, err := registryclient.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Clients{Config: cfg, Kube: kube, Registries: regs}, nil
}
