//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

func registry(name string, hosts ...string) *v1alpha1.Registry {
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.RegistrySpec{
			Hosts: hosts,
			Auth:  v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "s", Namespace: "pullpass"}},
		},
	}
}

// The CRD's schema rejects bad objects at the API server, and pullpass's own Validate (used for
// offline files) agrees with it object for object.
func TestRegistryCRDValidation(t *testing.T) {
	e := framework.Load(t)
	e.InstallCRD(t)
	ctx := framework.Context(t, 2*time.Minute)

	good := registry("crd-good", "ghcr.io", "*.azurecr.io", "localhost:5000/team", "*-docker.pkg.dev",
		"https://index.docker.io/v1/", "registry-1.docker.io", "http://registry.example.org/", "https://localhost:5443/v2/team/")
	created, err := e.Registries.Create(ctx, good, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a valid registry was refused: %v", err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(ctx, good.Name, metav1.DeleteOptions{}) })
	if created.Spec.Scope != v1alpha1.ScopeNamespaced {
		t.Fatalf("scope defaulted to %q, want Namespaced", created.Spec.Scope)
	}

	bad := map[string]struct {
		mutate  func(*v1alpha1.Registry)
		wantMsg string
	}{
		"no hosts":         {func(r *v1alpha1.Registry) { r.Spec.Hosts = nil }, "spec.hosts"},
		"empty hosts":      {func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{} }, "spec.hosts"},
		"no auth source":   {func(r *v1alpha1.Registry) { r.Spec.Auth = v1alpha1.RegistryAuth{} }, "exactly one credential source"},
		"two auth sources": {func(r *v1alpha1.Registry) { r.Spec.Auth.ECR = &v1alpha1.ECRSource{} }, "exactly one credential source"},
		"other scheme":     {func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ftp://ghcr.io"} }, "spec.hosts[0]"},
		"scheme, no host":  {func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"https:///v1/"} }, "spec.hosts[0]"},
		"question mark":    {func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"reg?.io"} }, "spec.hosts[0]"},
		"glob in port":     {func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr.io:*"} }, "spec.hosts[0]"},
		"empty label":      {func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr..io"} }, "spec.hosts[0]"},
		"space":            {func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr.io/a b"} }, "spec.hosts[0]"},
		"bad scope":        {func(r *v1alpha1.Registry) { r.Spec.Scope = "Everywhere" }, "spec.scope"},
		"secret no ns":     {func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Namespace = "" }, "namespace"},
	}
	for name, tt := range bad {
		t.Run(name, func(t *testing.T) {
			r := registry("crd-bad", "ghcr.io")
			tt.mutate(r)
			if _, err := e.Registries.Create(ctx, r, metav1.CreateOptions{}); err == nil {
				_ = e.Registries.Delete(ctx, r.Name, metav1.DeleteOptions{})
				t.Fatal("the API server accepted it")
			} else if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("refused with %q, want a message naming %q", err, tt.wantMsg)
			}
			if err := registrytable.Validate(r); err == nil {
				t.Fatal("the API server refused it, but registrytable.Validate accepts it")
			}
		})
	}
}

// `kubectl get registries` shows hosts, scope, ready and expiry.
func TestRegistryPrinterColumns(t *testing.T) {
	e := framework.Load(t)
	e.InstallCRD(t)
	ctx := framework.Context(t, time.Minute)
	r := registry("crd-columns", "ghcr.io")
	if _, err := e.Registries.Create(ctx, r, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(ctx, r.Name, metav1.DeleteOptions{}) })

	raw, err := e.Kube.CoreV1().RESTClient().Get().AbsPath("/apis/pullpass.io/v1alpha1/registries", r.Name).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(ctx).Raw()
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			cols = append(cols, c.Name)
		}
	}
	if got, want := strings.Join(cols, ","), "Name,Hosts,Scope,Ready,Expires,Age"; got != want {
		t.Fatalf("columns %s, want %s", got, want)
	}
	if len(table.Rows) != 1 || table.Rows[0].Cells[1] != `["ghcr.io"]` || table.Rows[0].Cells[2] != "Namespaced" {
		t.Fatalf("row %v", table.Rows)
	}
}
