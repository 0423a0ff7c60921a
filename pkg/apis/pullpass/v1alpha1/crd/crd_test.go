package crd_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrytable"
	"github.com/pullpass/pullpass/pkg/testenv"
)

var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

func registry(name string) *v1alpha1.Registry {
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.RegistrySpec{
			Hosts: []string{"ghcr.io"},
			Auth:  v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "creds", Namespace: "pullpass"}},
		},
	}
}

func ref(name, namespace string) *v1alpha1.SecretReference {
	return &v1alpha1.SecretReference{Name: name, Namespace: namespace}
}

func selector(exprs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: exprs}
}

// Each case runs through the API server and through registrytable.Validate (the offline check of
// `pullpass explain` and the table builder): both accept it or both refuse it, and the API
// server's refusal names the field and says what is wrong, as a user of kubectl reads it.
type validationCase struct {
	name   string
	mutate func(*v1alpha1.Registry)
	// refused is the API server's message (a substring); empty when the object is accepted.
	refused string
}

var cases = []validationCase{
	// hosts: the pattern, its limits, a set.
	{"host", func(r *v1alpha1.Registry) {}, ""},
	{"host glob, port, path", func(r *v1alpha1.Registry) {
		r.Spec.Hosts = []string{"*.azurecr.io", "localhost:5000/team", "*-docker.pkg.dev", "reg_1.example.com", "x.io/a/b-c_d.e"}
	}, ""},
	{"no hosts", func(r *v1alpha1.Registry) { r.Spec.Hosts = nil }, `spec.hosts: Required value`},
	{"empty hosts", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{} }, `spec.hosts: Invalid value: 0: spec.hosts in body should have at least 1 items`},
	{"64 hosts", func(r *v1alpha1.Registry) { r.Spec.Hosts = hosts(64) }, ""},
	{"65 hosts", func(r *v1alpha1.Registry) { r.Spec.Hosts = hosts(65) }, `spec.hosts: Too many: 65: must have at most 64 items`},
	{"duplicate host", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr.io", "quay.io", "ghcr.io"} }, `spec.hosts[2]: Duplicate value: "ghcr.io"`},
	{"host of 512", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{strings.Repeat("a", 509) + ".io"} }, ""},
	{"host of 513", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{strings.Repeat("a", 510) + ".io"} }, `spec.hosts[0]: Too long: may not be more than 512 bytes`},
	{"empty host", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{""} }, `spec.hosts[0] in body should match`},
	{"pasted URLs and Docker Hub's names", func(r *v1alpha1.Registry) {
		r.Spec.Hosts = []string{"https://index.docker.io/v1/", "registry-1.docker.io", "http://registry.example.org/", "https://localhost:5443/v2/team/"}
	}, ""},
	{"other scheme", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ftp://ghcr.io"} }, `spec.hosts[0]: Invalid value: "ftp://ghcr.io": spec.hosts[0] in body should match`},
	{"scheme, no host", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"https:///v1/"} }, `spec.hosts[0]: Invalid value: "https:///v1/": spec.hosts[0] in body should match`},
	{"question mark", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"reg?.io"} }, `spec.hosts[0] in body should match`},
	{"bracket", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"[ab].io"} }, `spec.hosts[0] in body should match`},
	{"glob in port", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr.io:*"} }, `spec.hosts[0] in body should match`},
	{"empty port", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr.io:"} }, `spec.hosts[0] in body should match`},
	{"empty label", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr..io"} }, `spec.hosts[0] in body should match`},
	{"space in path", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr.io/a b"} }, `spec.hosts[0] in body should match`},
	{"upper case path", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"ghcr.io/Org"} }, `spec.hosts[0] in body should match`},
	{"user info", func(r *v1alpha1.Registry) { r.Spec.Hosts = []string{"user@ghcr.io"} }, `spec.hosts[0] in body should match`},

	// auth: exactly one source (CEL), and each source's fields.
	{"no source", func(r *v1alpha1.Registry) { r.Spec.Auth = v1alpha1.RegistryAuth{} }, `spec.auth: Invalid value: exactly one credential source must be set (secretRef, ecr or dockerHub)`},
	{"two sources", func(r *v1alpha1.Registry) { r.Spec.Auth.ECR = &v1alpha1.ECRSource{} }, `spec.auth: Invalid value: exactly one credential source must be set`},
	{"three sources", func(r *v1alpha1.Registry) {
		r.Spec.Auth.ECR = &v1alpha1.ECRSource{}
		r.Spec.Auth.DockerHub = &v1alpha1.DockerHubSource{SecretRef: *ref("hub", "pullpass")}
	}, `exactly one credential source must be set`},
	{"ecr alone", func(r *v1alpha1.Registry) { r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{}} }, ""},
	{"dockerHub alone", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: *ref("hub", "pullpass")}}
	}, ""},
	{"secret without namespace", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Namespace = "" }, `spec.auth.secretRef.namespace: Invalid value: "": spec.auth.secretRef.namespace in body should be at least 1 chars long`},
	{"secret without name", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Name = "" }, `spec.auth.secretRef.name: Invalid value: "": spec.auth.secretRef.name in body should be at least 1 chars long`},
	{"secret name dotted", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Name = "a.b-c" }, ""},
	{"secret name upper case", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Name = "Creds" }, `spec.auth.secretRef.name in body should match`},
	{"secret name of 253", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Name = strings.Repeat("a", 253) }, ""},
	{"secret name of 254", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Name = strings.Repeat("a", 254) }, `spec.auth.secretRef.name: Too long: may not be more than 253 bytes`},
	{"secret namespace dotted", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Namespace = "a.b" }, `spec.auth.secretRef.namespace in body should match`},
	{"secret namespace of 64", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Namespace = strings.Repeat("a", 64) }, `spec.auth.secretRef.namespace: Too long: may not be more than 63 bytes`},
	{"dockerHub secret without name", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: *ref("", "pullpass")}}
	}, `spec.auth.dockerHub.secretRef.name in body should be at least 1 chars long`},
	{"ecr region", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{Region: "us-gov-west-1"}}
	}, ""},
	{"ecr bad region", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{Region: "Europe"}}
	}, `spec.auth.ecr.region in body should match`},
	{"ecr role", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{RoleARN: "arn:aws-cn:iam::123456789012:role/puller"}}
	}, ""},
	{"ecr bad role", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{RoleARN: "arn:aws:iam::123:user/me"}}
	}, `spec.auth.ecr.roleARN in body should match`},
	{"ecr keys", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: ref("aws", "pullpass")}}
	}, ""},
	{"ecr keys without namespace", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: ref("aws", "")}}
	}, `spec.auth.ecr.accessKeySecretRef.namespace in body should be at least 1 chars long`},

	// scope.
	{"scope Cluster", func(r *v1alpha1.Registry) { r.Spec.Scope = v1alpha1.ScopeCluster }, ""},
	{"scope unknown", func(r *v1alpha1.Registry) { r.Spec.Scope = "Everywhere" }, `spec.scope: Unsupported value: "Everywhere": supported values: "Namespaced", "Cluster"`},

	// namespaceSelector (CEL for what LabelSelectorAsSelector refuses).
	{"selector", func(r *v1alpha1.Registry) {
		r.Spec.NamespaceSelector = &metav1.LabelSelector{
			MatchLabels: map[string]string{"team": "a"},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}},
				{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"batch"}},
				{Key: "pullpass.io/enabled", Operator: metav1.LabelSelectorOpExists},
				{Key: "legacy", Operator: metav1.LabelSelectorOpDoesNotExist},
			},
		}
	}, ""},
	{"selector bad operator", func(r *v1alpha1.Registry) {
		r.Spec.NamespaceSelector = selector(metav1.LabelSelectorRequirement{Key: "k", Operator: "Near", Values: []string{"v"}})
	}, `spec.namespaceSelector: Invalid value: matchExpressions: operator must be In, NotIn, Exists or DoesNotExist`},
	{"selector In without values", func(r *v1alpha1.Registry) {
		r.Spec.NamespaceSelector = selector(metav1.LabelSelectorRequirement{Key: "k", Operator: metav1.LabelSelectorOpIn})
	}, `spec.namespaceSelector: Invalid value: matchExpressions: In and NotIn need values, Exists and DoesNotExist take none`},
	{"selector Exists with values", func(r *v1alpha1.Registry) {
		r.Spec.NamespaceSelector = selector(metav1.LabelSelectorRequirement{Key: "k", Operator: metav1.LabelSelectorOpExists, Values: []string{"v"}})
	}, `matchExpressions: In and NotIn need values, Exists and DoesNotExist take none`},
}

// offlineOnlyCases are accepted by the API server and refused by Validate alone: CEL cannot
// afford the check (regexes over metav1.LabelSelector's keys and values, which have no length
// limits, exceed the CRD's cost budget over 100 times). The table builder skips such a registry.
var offlineOnlyCases = []validationCase{
	{"selector bad key", func(r *v1alpha1.Registry) {
		r.Spec.NamespaceSelector = selector(metav1.LabelSelectorRequirement{Key: "a b", Operator: metav1.LabelSelectorOpExists})
	}, ""},
	{"selector bad label value", func(r *v1alpha1.Registry) {
		r.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a/b"}}
	}, ""},
}

func hosts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("h%d.example.com", i)
	}
	return out
}

func TestSchemaAndValidateAgree(t *testing.T) {
	env := controlPlane.Env(t)
	for i, tt := range append(cases, offlineOnlyCases...) {
		offlineOnly := i >= len(cases)
		t.Run(tt.name, func(t *testing.T) {
			r := registry(fmt.Sprintf("case-%d", i))
			tt.mutate(r)
			_, apiErr := env.Registries.Create(t.Context(), r, metav1.CreateOptions{})
			if apiErr == nil {
				_ = env.Registries.Delete(t.Context(), r.Name, metav1.DeleteOptions{})
			}
			goErr := registrytable.Validate(r)
			switch {
			case tt.refused == "" && apiErr != nil:
				t.Errorf("the API server refused it: %v", apiErr)
			case tt.refused != "" && apiErr == nil:
				t.Errorf("the API server accepted it, want %q", tt.refused)
			case tt.refused != "" && !strings.Contains(apiErr.Error(), tt.refused):
				t.Errorf("the API server said\n  %v\nwant it to say\n  %s", apiErr, tt.refused)
			}
			if (goErr == nil) != (tt.refused == "" && !offlineOnly) {
				t.Errorf("registrytable.Validate = %v, the API server's answer: %v", goErr, apiErr)
			}
		})
	}
}

// The scope defaults to Namespaced.
func TestScopeDefault(t *testing.T) {
	env := controlPlane.Env(t)
	if got := env.CreateRegistry(t, registry("defaulted")).Spec.Scope; got != v1alpha1.ScopeNamespaced {
		t.Fatalf("scope %q, want Namespaced", got)
	}
}

// `kubectl get registries` shows hosts, scope, ready and expiry; -o wide adds reason and
// namespaces.
func TestPrinterColumns(t *testing.T) {
	env := controlPlane.Env(t)
	r := env.CreateRegistry(t, registry("columns"))
	r.Status = v1alpha1.RegistryStatus{
		Namespaces: 3,
		Conditions: []metav1.Condition{{
			Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "AccessDenied",
			Message: "denied", LastTransitionTime: metav1.Now(),
		}, {
			Type: v1alpha1.ConditionVerified, Status: metav1.ConditionFalse, Reason: "Unauthorized",
			Message: "login to ghcr.io refused", LastTransitionTime: metav1.Now(),
		}},
	}
	if _, err := env.Registries.UpdateStatus(t.Context(), r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	raw, err := env.Kube.CoreV1().RESTClient().Get().AbsPath("/apis/pullpass.io/v1alpha1/registries", r.Name).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(t.Context()).Raw()
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		cols = append(cols, fmt.Sprintf("%s:%s:%d", c.Name, c.Type, c.Priority))
	}
	want := "Name:string:0 Hosts:string:0 Scope:string:0 Ready:string:0 Verified:string:0 Expires:date:0 Reason:string:1 Namespaces:integer:1 Age:date:0"
	if got := strings.Join(cols, " "); got != want {
		t.Fatalf("columns\n  %s\nwant\n  %s", got, want)
	}
	cells := fmt.Sprint(table.Rows[0].Cells[:8])
	if want := `[columns ["ghcr.io"] Namespaced False Unauthorized <nil> AccessDenied 3]`; cells != want {
		t.Fatalf("row %s, want %s", cells, want)
	}
}

// Status is a subresource: an update of the object leaves it alone, and what the keeper writes
// there is checked too (a condition's reason is a CamelCase word).
func TestStatusSubresource(t *testing.T) {
	env := controlPlane.Env(t)
	r := env.CreateRegistry(t, registry("status"))
	r.Status.Namespaces = 7
	updated, err := env.Registries.Update(t.Context(), r, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Status.Namespaces != 0 {
		t.Fatal("an update of the object wrote its status")
	}
	updated.Status.Conditions = []metav1.Condition{{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "not a reason",
		LastTransitionTime: metav1.Now(),
	}}
	_, err = env.Registries.UpdateStatus(t.Context(), updated, metav1.UpdateOptions{})
	if err == nil || !strings.Contains(err.Error(), "status.conditions[0].reason") {
		t.Fatalf("a condition with a bad reason: %v, want a refusal naming status.conditions[0].reason", err)
	}
	updated.Status.Conditions[0].Reason = "CredentialsAvailable"
	if _, err := env.Registries.UpdateStatus(t.Context(), updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
