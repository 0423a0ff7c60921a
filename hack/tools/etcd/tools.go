//go:build tools

// Package etcd pins the etcd server the kind node image built here runs (e2e/kind/node-image.sh):
// the version kubeadm of the pinned Kubernetes expects (cmd/kubeadm/app/constants).
package etcd

import _ "go.etcd.io/etcd/server/v3"
