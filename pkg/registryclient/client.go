// Package registryclient is a typed client for pullpass.io/v1alpha1 Registry objects.
package registryclient

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// Scheme knows the pullpass types.
var Scheme = runtime.NewScheme()

func init() {
	if err := v1alpha1.AddToScheme(Scheme); err != nil {
		panic(err)
	}
}

// Interface is what callers of the Registry API use; tests may fake it.
type Interface interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*v1alpha1.Registry, error)
	List(ctx context.Context, opts metav1.ListOptions) (*v1alpha1.RegistryList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Create(ctx context.Context, r *v1alpha1.Registry, opts metav1.CreateOptions) (*v1alpha1.Registry, error)
	Update(ctx context.Context, r *v1alpha1.Registry, opts metav1.UpdateOptions) (*v1alpha1.Registry, error)
	UpdateStatus(ctx context.Context, r *v1alpha1.Registry, opts metav1.UpdateOptions) (*v1alpha1.Registry, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*v1alpha1.Registry, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// Client talks to the API server.
type Client struct {
	rest rest.Interface
}

var _ Interface = (*Client)(nil)

// New builds a client from a rest.Config.
func New(cfg *rest.Config) (*Client, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &v1alpha1.SchemeGroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(Scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	return &Client{rest: rc}, nil
}

var paramCodec = runtime.NewParameterCodec(Scheme)

func (c *Client) Get(ctx context.Context, name string, opts metav1.GetOptions) (*v1alpha1.Registry, error) {
	out := &v1alpha1.Registry{}
	err := c.rest.Get().Resource(v1alpha1.Resource).Name(name).VersionedParams(&opts, paramCodec).Do(ctx).Into(out)
	return out, err
}

func (c *Client) List(ctx context.Context, opts metav1.ListOptions) (*v1alpha1.RegistryList, error) {
	out := &v1alpha1.RegistryList{}
	err := c.rest.Get().Resource(v1alpha1.Resource).VersionedParams(&opts, paramCodec).Do(ctx).Into(out)
	return out, err
}

func (c *Client) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rest.Get().Resource(v1alpha1.Resource).VersionedParams(&opts, paramCodec).Watch(ctx)
}

func (c *Client) Create(ctx context.Context, r *v1alpha1.Registry, opts metav1.CreateOptions) (*v1alpha1.Registry, error) {
	out := &v1alpha1.Registry{}
	err := c.rest.Post().Resource(v1alpha1.Resource).VersionedParams(&opts, paramCodec).Body(r).Do(ctx).Into(out)
	return out, err
}

func (c *Client) Update(ctx context.Context, r *v1alpha1.Registry, opts metav1.UpdateOptions) (*v1alpha1.Registry, error) {
	out := &v1alpha1.Registry{}
	err := c.rest.Put().Resource(v1alpha1.Resource).Name(r.Name).VersionedParams(&opts, paramCodec).Body(r).Do(ctx).Into(out)
	return out, err
}

func (c *Client) UpdateStatus(ctx context.Context, r *v1alpha1.Registry, opts metav1.UpdateOptions) (*v1alpha1.Registry, error) {
	out := &v1alpha1.Registry{}
	err := c.rest.Put().Resource(v1alpha1.Resource).Name(r.Name).SubResource("status").VersionedParams(&opts, paramCodec).Body(r).Do(ctx).Into(out)
	return out, err
}

func (c *Client) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*v1alpha1.Registry, error) {
	out := &v1alpha1.Registry{}
	err := c.rest.Patch(pt).Resource(v1alpha1.Resource).Name(name).SubResource(subresources...).VersionedParams(&opts, paramCodec).Body(data).Do(ctx).Into(out)
	return out, err
}

func (c *Client) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return c.rest.Delete().Resource(v1alpha1.Resource).Name(name).Body(&opts).Do(ctx).Error()
}
