package cluster

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// Namespaces answers from an informer's lister, and asks the API server only for a namespace
// the informer has not seen yet: one created a moment before its first pod.
type Namespaces struct {
	Lister corelisters.NamespaceLister
	Client kubernetes.Interface
}

// Namespace returns a namespace.
func (n *Namespaces) Namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns, err := n.Lister.Get(name)
	if err == nil {
		return ns, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	return n.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
}
