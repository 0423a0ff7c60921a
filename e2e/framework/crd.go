package framework

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1/crd"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRD creates or updates the Registry CRD and waits until the API server serves it.
func (e *Env) InstallCRD(t testing.TB) {
	t.Helper()
	if err := installCRD(Context(t, 2*time.Minute), e); err != nil {
		t.Fatal(err)
	}
}

func installCRD(ctx context.Context, e *Env) error {
	dyn, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(crd.Registries, &obj.Object); err != nil {
		return fmt.Errorf("CRD manifest: %w", err)
	}
	api := dyn.Resource(crdGVR)
	cur, err := api.Get(ctx, obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, obj, metav1.CreateOptions{})
	case err == nil:
		obj.SetResourceVersion(cur.GetResourceVersion())
		_, err = api.Update(ctx, obj, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("installing the Registry CRD: %w", err)
	}
	for {
		cur, err := api.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					// The discovery cache of the API server may lag the condition by a moment.
					if _, err := e.Registries.List(ctx, metav1.ListOptions{Limit: 1}); err == nil {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Registry CRD was not established: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
