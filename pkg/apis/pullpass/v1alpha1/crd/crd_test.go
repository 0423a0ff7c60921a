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
	// A source is never one of pullpass's own Secrets (#24): the webhook's TLS Secret, pull secrets.
	{"secret is the webhook's TLS Secret", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Name = "pullpass-webhook-tls" },
		`spec.auth.secretRef: Invalid value: names starting pullpass- are pullpass's own Secrets`},
	{"secret is a pull secret", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef = ref("pullpass-ghcr.io", "team") },
		`spec.auth.secretRef: Invalid value: names starting pullpass- are pullpass's own Secrets`},
	{"dockerHub secret is the webhook's TLS Secret", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: *ref("pullpass-webhook-tls", "pullpass")}}
	}, `spec.auth.dockerHub.secretRef: Invalid value: names starting pullpass- are pullpass's own Secrets`},
	{"ecr keys are the webhook's TLS Secret", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: ref("pullpass-webhook-tls", "pullpass")}}
	}, `spec.auth.ecr.accessKeySecretRef: Invalid value: names starting pullpass- are pullpass's own Secrets`},
	{"secret name with pullpass inside", func(r *v1alpha1.Registry) { r.Spec.Auth.SecretRef.Name = "my-pullpass-creds" }, ""},
	{"ecr keys without namespace", func(r *v1alpha1.Registry) {
		r.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: ref("aws", "")}}
	}, `spec.auth.ecr.accessKeySecretRef.namespace in body should be at least 1 chars long`},

	// scope.
	{"scope Cluster", func(r *v1alpha1.Registry) { r.Spec.Scope = v1alpha1.ScopeCluster }, ""},
	{"scope unknown", func(r *v1alpha1.Registry) { r.Spec.Scope = "Everywhere" }, `spec.scope: Unsupported value: "Everywhere": supported values: "Namespaced", "Cluster"`},

	// delivery and serviceAccounts.
	{"delivery Node", func(r *v1alpha1.Registry) { r.Spec.Delivery = v1alpha1.DeliveryNode }, ""},
	{"delivery PullSecret", func(r *v1alpha1.Registry) { r.Spec.Delivery = v1alpha1.DeliveryPullSecret }, ""},
	{"delivery unknown", func(r *v1alpha1.Registry) { r.Spec.Delivery = "Carrier" }, `spec.delivery: Unsupported value: "Carrier": supported values: "PullSecret", "Node"`},
	{"Cluster delivered by Node", func(r *v1alpha1.Registry) {
		r.Spec.Scope, r.Spec.Delivery = v1alpha1.ScopeCluster, v1alpha1.DeliveryNode
	}, ""},
	{"Cluster delivered by PullSecret", func(r *v1alpha1.Registry) {
		r.Spec.Scope, r.Spec.Delivery = v1alpha1.ScopeCluster, v1alpha1.DeliveryPullSecret
	}, `scope Cluster is served by the node agents: delivery must be Node or unset`},
	{"service accounts by name", func(r *v1alpha1.Registry) {
		r.Spec.Delivery = v1alpha1.DeliveryNode
		r.Spec.ServiceAccounts = &v1alpha1.ServiceAccountSelector{Names: []string{"builder", "web.v2"}}
	}, ""},
	{"service accounts by annotation", func(r *v1alpha1.Registry) {
		r.Spec.Delivery = v1alpha1.DeliveryNode
		r.Spec.ServiceAccounts = &v1alpha1.ServiceAccountSelector{Annotated: true}
	}, ""},
	{"service accounts empty", func(r *v1alpha1.Registry) {
		r.Spec.Delivery = v1alpha1.DeliveryNode
		r.Spec.ServiceAccounts = &v1alpha1.ServiceAccountSelector{}
	}, `spec.serviceAccounts: Invalid value: name service accounts or set annotated`},
	{"service accounts bad name", func(r *v1alpha1.Registry) {
		r.Spec.Delivery = v1alpha1.DeliveryNode
		r.Spec.ServiceAccounts = &v1alpha1.ServiceAccountSelector{Names: []string{"Builder"}}
	}, `spec.serviceAccounts.names[0] in body should match`},
	{"service accounts with pull secrets", func(r *v1alpha1.Registry) {
		r.Spec.ServiceAccounts = &v1alpha1.ServiceAccountSelector{Names: []string{"builder"}}
	}, `serviceAccounts needs scope Namespaced and delivery Node`},
	{"service accounts with Cluster", func(r *v1alpha1.Registry) {
		r.Spec.Scope, r.Spec.Delivery = v1alpha1.ScopeCluster, v1alpha1.DeliveryNode
		r.Spec.ServiceAccounts = &v1alpha1.ServiceAccountSelector{Names: []string{"builder"}}
	}, `serviceAccounts needs scope Namespaced and delivery Node`},

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

	// pullThrough: formats of upstream and prefix, and what a cache asks of spec.hosts.
	{"pullThrough ECR", pullThrough(ecrHost, "docker.io", "docker-hub"), ""},
	{"pullThrough Harbor project, host path under the prefix", pullThrough("harbor.example.com/myproject", "docker.io", "myproject"), ""},
	{"pullThrough GitLab", pullThrough("gitlab.example.com", "docker.io", "group/dependency_proxy/containers"), ""},
	{"pullThrough at the root, with ports", pullThrough("mirror.internal:5000", "registry.example.com:5000", ""), ""},
	{"pullThrough root path pattern", pullThrough("mirror.internal/", "ghcr.io", ""), ""},
	{"pullThrough of localhost", pullThrough("mirror.internal", "localhost:5000", "local"), ""},
	{"pullThrough Cluster scope", func(r *v1alpha1.Registry) {
		pullThrough(ecrHost, "docker.io", "docker-hub")(r)
		r.Spec.Scope = v1alpha1.ScopeCluster
	}, ""},
	{"pullThrough without upstream", pullThrough(ecrHost, "", "docker-hub"), `spec.pullThrough.upstream: Invalid value: "": spec.pullThrough.upstream in body should be at least 1 chars long`},
	{"pullThrough upstream with scheme", pullThrough(ecrHost, "https://docker.io", "docker-hub"), `spec.pullThrough.upstream: Invalid value: "https://docker.io": must be a registry host as images name it`},
	{"pullThrough upstream with path", pullThrough(ecrHost, "ghcr.io/org", "ghcr"), `spec.pullThrough.upstream: Invalid value: "ghcr.io/org": must be a registry host`},
	{"pullThrough upstream upper case", pullThrough(ecrHost, "Docker.io", "hub"), `must be a registry host as images name it, with an optional port (docker.io, ghcr.io, registry.example.com:5000): lower case, no scheme, path or '*'`},
	{"pullThrough upstream glob", pullThrough(ecrHost, "*.io", "hub"), `spec.pullThrough.upstream: Invalid value: "*.io": must be a registry host`},
	{"pullThrough upstream single label", pullThrough(ecrHost, "mirror", "hub"), `spec.pullThrough.upstream: Invalid value: "mirror": must be a registry host`},
	{"pullThrough upstream Docker Hub alias", pullThrough(ecrHost, "index.docker.io", "hub"), `spec.pullThrough.upstream: Invalid value: "index.docker.io": Docker Hub is written docker.io`},
	{"pullThrough prefix leading slash", pullThrough(ecrHost, "docker.io", "/docker-hub"), `spec.pullThrough.prefix: Invalid value: "/docker-hub": must be a repository path`},
	{"pullThrough prefix trailing slash", pullThrough(ecrHost, "docker.io", "docker-hub/"), `spec.pullThrough.prefix: Invalid value: "docker-hub/": must be a repository path`},
	{"pullThrough prefix upper case", pullThrough(ecrHost, "docker.io", "Docker-Hub"), `spec.pullThrough.prefix: Invalid value: "Docker-Hub": must be a repository path`},
	{"pullThrough prefix of 200", pullThrough(ecrHost, "docker.io", strings.Repeat("a", 200)), ""},
	{"pullThrough prefix of 201", pullThrough(ecrHost, "docker.io", strings.Repeat("a", 201)), `spec.pullThrough.prefix: Too long: may not be more than 200 bytes`},
	{"pullThrough two hosts", func(r *v1alpha1.Registry) {
		pullThrough(ecrHost, "docker.io", "docker-hub")(r)
		r.Spec.Hosts = append(r.Spec.Hosts, "ghcr.io")
	}, `spec: Invalid value: pullThrough needs exactly one host in spec.hosts, without '*': the cache's host, which images are rewritten to`},
	{"pullThrough glob host", pullThrough("*.dkr.ecr.eu-west-1.amazonaws.com", "docker.io", "docker-hub"), `pullThrough needs exactly one host in spec.hosts, without '*'`},
	{"pullThrough host images cannot name", pullThrough("reg_1.example.com", "docker.io", "hub"), `spec: Invalid value: pullThrough: spec.hosts[0] must be a host images can name`},
	{"pullThrough pasted host", pullThrough("https://harbor.example.com", "docker.io", "hub"), `spec.hosts[0] must be a host images can name, written host[:port][/path] with no scheme`},
	{"pullThrough single-label host", pullThrough("mirror/hub", "docker.io", "hub"), `pullThrough: spec.hosts[0] must be a host images can name`},
	{"pullThrough of itself", pullThrough("ghcr.io", "ghcr.io", "mirror"), `spec: Invalid value: pullThrough.upstream is the cache's own host`},
	{"pullThrough on Docker Hub", pullThrough("index.docker.io/me", "ghcr.io", "me"), `spec: Invalid value: pullThrough: a cache cannot be on Docker Hub (spec.hosts[0])`},
	{"pullThrough host path outside the prefix", pullThrough("harbor.example.com/other", "docker.io", "myproject"), `spec: Invalid value: pullThrough: the cache's images (HOST/PREFIX/...) must be matched by spec.hosts[0], so its path must begin pullThrough.prefix`},
	{"pullThrough host path at the root", pullThrough("harbor.example.com/x", "docker.io", ""), `so its path must begin pullThrough.prefix`},
	{"pullThrough delivered by the node", func(r *v1alpha1.Registry) {
		pullThrough(ecrHost, "docker.io", "docker-hub")(r)
		r.Spec.Scope, r.Spec.Delivery = v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode
	}, `spec: Invalid value: pullThrough: a cache delivered by the node (scope Namespaced, delivery Node) has no pull secret`},
	{"pullThrough of Cluster scope delivered by the node", func(r *v1alpha1.Registry) {
		pullThrough(ecrHost, "docker.io", "docker-hub")(r)
		r.Spec.Scope, r.Spec.Delivery = v1alpha1.ScopeCluster, v1alpha1.DeliveryNode
	}, ""},
}

// offlineSays is what registrytable.Validate says of some refused cases (a substring).
var offlineSays = map[string]string{
	"pullThrough without upstream":             "spec.pullThrough.upstream: Required value",
	"pullThrough upstream with scheme":         "must be a registry host as images name it",
	"pullThrough upstream with path":           "must be a registry host",
	"pullThrough upstream upper case":          "lower case, no scheme, path or '*'",
	"pullThrough upstream glob":                "must be a registry host",
	"pullThrough upstream single label":        "must be a registry host",
	"pullThrough upstream Docker Hub alias":    "Docker Hub is written docker.io",
	"pullThrough prefix leading slash":         "must be a repository path",
	"pullThrough prefix trailing slash":        "must be a repository path",
	"pullThrough prefix upper case":            "must be a repository path",
	"pullThrough prefix of 201":                "spec.pullThrough.prefix: Too long",
	"pullThrough two hosts":                    "pullThrough needs exactly one host in spec.hosts",
	"pullThrough glob host":                    "without '*'",
	"pullThrough host images cannot name":      "spec.hosts[0] must be a host images can name",
	"pullThrough pasted host":                  "written host[:port][/path] with no scheme",
	"pullThrough single-label host":            "must be a host images can name",
	"pullThrough of itself":                    "pullThrough.upstream is the cache's own host",
	"pullThrough on Docker Hub":                "a cache cannot be on Docker Hub",
	"pullThrough host path outside the prefix": "so its path must begin pullThrough.prefix",
	"pullThrough host path at the root":        "so its path must begin pullThrough.prefix",
	"pullThrough delivered by the node":        "a cache delivered by the node",
}

const ecrHost = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"

func pullThrough(host, upstream, prefix string) func(*v1alpha1.Registry) {
	return func(r *v1alpha1.Registry) {
		r.Spec.Hosts = []string{host}
		r.Spec.PullThrough = &v1alpha1.PullThrough{Upstream: upstream, Prefix: prefix}
	}
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
			if want := offlineSays[tt.name]; want != "" && (goErr == nil || !strings.Contains(goErr.Error(), want)) {
				t.Errorf("registrytable.Validate said\n  %v\nwant it to say\n  %s", goErr, want)
			}
		})
	}
}

// A name is the pullpass.io/registry label value of the registry's pull secrets: one longer than
// a label value may be is refused, saying why; 63 characters are taken.
func TestNameAtMost63(t *testing.T) {
	env := controlPlane.Env(t)
	if _, err := env.Registries.Create(t.Context(), registry(strings.Repeat("a", 64)), metav1.CreateOptions{}); err == nil {
		_ = env.Registries.Delete(t.Context(), strings.Repeat("a", 64), metav1.DeleteOptions{})
		t.Fatal("a name of 64 characters was accepted")
	} else if want := "metadata.name: at most 63 characters: the name is the value of the pullpass.io/registry label"; !strings.Contains(err.Error(), want) {
		t.Fatalf("the API server said\n  %v\nwant it to say\n  %s", err, want)
	}
	env.CreateRegistry(t, registry(strings.Repeat("b", 63)))
}

// A registry's pull secrets are named pullpass-NAME: a name that would make them one of
// pullpass's own Secrets (the webhook's TLS, the node credentials and their shards) is refused,
// saying why; names that only look alike are taken.
func TestNameOfPullpassOwnSecretRefused(t *testing.T) {
	env := controlPlane.Env(t)
	for _, name := range []string{"webhook-tls", "node-credentials", "node-credentials-1", "node-credentials-3"} {
		if _, err := env.Registries.Create(t.Context(), registry(name), metav1.CreateOptions{}); err == nil {
			_ = env.Registries.Delete(t.Context(), name, metav1.DeleteOptions{})
			t.Errorf("%s was accepted", name)
		} else if want := "pullpass-webhook-tls and pullpass-node-credentials[-N] are pullpass's own Secrets"; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: the API server said\n  %v\nwant it to say\n  %s", name, err, want)
		}
	}
	for _, name := range []string{"webhook-tls-2", "node-credentials-x", "my-node-credentials"} {
		env.CreateRegistry(t, registry(name))
	}
}

// The scope defaults to Namespaced.
func TestScopeDefault(t *testing.T) {
	env := controlPlane.Env(t)
	if got := env.CreateRegistry(t, registry("defaulted")).Spec.Scope; got != v1alpha1.ScopeNamespaced {
		t.Fatalf("scope %q, want Namespaced", got)
	}
}

// `kubectl get registries` shows hosts, scope, ready and expiry; -o wide adds delivery, served,
// reason and namespaces.
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
		}, {
			Type: v1alpha1.ConditionServed, Status: metav1.ConditionTrue, Reason: "PullSecrets",
			Message: "pull secrets in 3 namespaces", LastTransitionTime: metav1.Now(),
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
	want := "Name:string:0 Hosts:string:0 Scope:string:0 Delivery:string:1 Ready:string:0 Served:string:1 Verified:string:0 Expires:date:0 Reason:string:1 Namespaces:integer:1 Age:date:0"
	if got := strings.Join(cols, " "); got != want {
		t.Fatalf("columns\n  %s\nwant\n  %s", got, want)
	}
	cells := fmt.Sprint(table.Rows[0].Cells[:10])
	if want := `[columns ["ghcr.io"] Namespaced <nil> False True Unauthorized <nil> AccessDenied 3]`; cells != want {
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
