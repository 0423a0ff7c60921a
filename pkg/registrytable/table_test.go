package registrytable_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1/crd"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

func reg(name string, hosts ...string) *v1alpha1.Registry {
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.RegistrySpec{
			Hosts: hosts,
			Auth:  v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: name, Namespace: "pullpass"}},
		},
	}
}

func TestBuildSkipsInvalidRegistries(t *testing.T) {
	bad := reg("bad", "ftp://ghcr.io")
	noAuth := reg("no-auth", "quay.io")
	noAuth.Spec.Auth = v1alpha1.RegistryAuth{}
	table := registrytable.Build([]*v1alpha1.Registry{reg("good", "ghcr.io"), bad, noAuth})
	if n := len(table.Skipped()); n != 2 {
		t.Fatalf("skipped %d, want 2: %v", n, table.Skipped())
	}
	m, ok, err := table.Lookup("ghcr.io/org/app:v1")
	if err != nil || !ok || m.Registry.Name != "good" || m.Pattern != "ghcr.io" {
		t.Fatalf("Lookup = %+v, %t, %v", m, ok, err)
	}
	if _, ok, _ := table.Lookup("quay.io/x"); ok {
		t.Fatal("an invalid registry served an image")
	}
	if _, _, err := table.Lookup("Bad/Image"); err == nil {
		t.Fatal("Lookup of an invalid image gave no error")
	}
}

// Docker Hub's every spelling in a Registry serves Docker Hub images.
func TestDockerHubSpellingsServeDockerHub(t *testing.T) {
	for _, host := range []string{"docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"} {
		table := registrytable.Build([]*v1alpha1.Registry{reg("hub", host)})
		if s := table.Skipped(); len(s) > 0 {
			t.Fatalf("%s: %v", host, s)
		}
		for _, img := range []string{"nginx", "docker.io/library/nginx", "yourname/app", "index.docker.io/yourname/postgres:16"} {
			m, ok, err := table.Lookup(img)
			if err != nil || !ok || m.Registry.Name != "hub" || m.Pattern != "docker.io" {
				t.Errorf("host %q, image %q: %+v, %t, %v", host, img, m, ok, err)
			}
		}
	}
}

func TestLookupNormalizesDockerHub(t *testing.T) {
	table := registrytable.Build([]*v1alpha1.Registry{reg("hub", "docker.io"), reg("hub-org", "docker.io/myorg")})
	for img, want := range map[string]string{
		"nginx":                          "hub",
		"library/nginx:1":                "hub",
		"index.docker.io/library/nginx":  "hub",
		"registry-1.docker.io/myorg/app": "hub-org",
		"myorg/app":                      "hub-org",
		"docker.io/myorg/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": "hub-org",
	} {
		m, ok, err := table.Lookup(img)
		if err != nil || !ok || m.Registry.Name != want {
			t.Errorf("Lookup(%q) = %v, %t, %v; want %s", img, m.Registry, ok, err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := reg("ok", "ghcr.io")
	ok.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	if err := registrytable.Validate(ok); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
	badSel := reg("sel", "ghcr.io")
	badSel.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Near"}}}
	two := reg("two", "ghcr.io")
	two.Spec.Auth.DockerHub = &v1alpha1.DockerHubSource{SecretRef: v1alpha1.SecretReference{Name: "a", Namespace: "b"}}
	scope := reg("scope", "ghcr.io")
	scope.Spec.Scope = "Global"
	var many []string
	for i := range 65 {
		many = append(many, fmt.Sprintf("h%d.io", i))
	}
	badRegion := reg("region", "ghcr.io")
	badRegion.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{Region: "Europe"}}
	badRole := reg("role", "ghcr.io")
	badRole.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{RoleARN: "arn:aws:iam::123:user/me"}}
	badKeys := reg("keys", "ghcr.io")
	badKeys.Spec.Auth = v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: &v1alpha1.SecretReference{Name: "Aws", Namespace: "pullpass"}}}
	badNS := reg("ns", "ghcr.io")
	badNS.Spec.Auth.SecretRef.Namespace = "a.b"
	hubNoName := reg("hub", "ghcr.io")
	hubNoName.Spec.Auth = v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: v1alpha1.SecretReference{Namespace: "pullpass"}}}
	for _, tt := range []struct {
		r    *v1alpha1.Registry
		want string
	}{
		{badSel, "spec.namespaceSelector"},
		{two, "exactly one credential source"},
		{scope, "spec.scope"},
		{reg("", "ghcr.io"), "metadata.name"},
		{reg("nohosts"), "spec.hosts is empty"},
		{reg("pat", "ghcr.io", "a?b"), "spec.hosts[1]"},
		{reg("many", many...), "at most 64"},
		{reg("long", strings.Repeat("a", 510)+".io"), "longer than 512"},
		{reg("dup", "ghcr.io", "quay.io", "ghcr.io"), `spec.hosts[2]: duplicate "ghcr.io"`},
		{badRegion, "spec.auth.ecr.region"},
		{badRole, "spec.auth.ecr.roleARN"},
		{badKeys, "spec.auth.ecr.accessKeySecretRef.name"},
		{badNS, "spec.auth.secretRef.namespace"},
		{hubNoName, "spec.auth.dockerHub.secretRef: name and namespace are required"},
	} {
		if err := registrytable.Validate(tt.r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%s) = %v, want an error naming %q", tt.r.Name, err, tt.want)
		}
	}
}

// TestCRDPatternAgreesWithParsePattern checks that the CRD's schema and ParsePattern accept the
// same host patterns, so what the API server lets in is what pullpass can use.
func TestCRDPatternAgreesWithParsePattern(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal(crd.Registries, &doc); err != nil {
		t.Fatal(err)
	}
	var pattern string
	walk(doc, func(path string, v any) {
		if strings.HasSuffix(path, ".hosts.items.pattern") {
			pattern = v.(string)
		}
	})
	if pattern == "" {
		t.Fatal("no pattern for spec.hosts items in the CRD")
	}
	re := regexp.MustCompile(pattern)
	inputs := []string{
		"ghcr.io", "*.azurecr.io", "localhost:5000", "localhost:5000/team", "*", "*:5000", "a.b.c.d.e",
		"europe-west1-docker.pkg.dev/p/r", "reg_1.example.com", "x.io/a/b-c_d.e~f",
		"https://ghcr.io", "http://ghcr.io/", "https://index.docker.io/v1/", "https://localhost:5443/v2/team",
		"", "ftp://ghcr.io", "HTTPS://ghcr.io", "https://", "https:///v1/", "https://https://ghcr.io", "ghcr.io:*", "ghcr.io:abc", "a..io", ".io", "io.", "a?b.io", "[ab].io",
		"ghcr.io/a b", "ghcr.io#x", "user@ghcr.io", "ghcr.io/x?y", `a\b.io`, "ghcr.io:", "/path", "ghcr.io//x",
	}
	for i := 0; i < 256; i++ {
		inputs = append(inputs, fmt.Sprintf("a%cb.io/p", rune(i)), fmt.Sprintf("ab.io/p%cq", rune(i)))
	}
	for _, in := range inputs {
		_, err := match.ParsePattern(in)
		if schemaOK, goOK := re.MatchString(in), err == nil; schemaOK != goOK {
			t.Errorf("%q: CRD schema accepts=%t, ParsePattern accepts=%t (%v)", in, schemaOK, goOK, err)
		}
	}
}

func walk(v any, f func(string, any)) {
	var rec func(string, any)
	rec = func(path string, v any) {
		f(path, v)
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				rec(path+"."+k, c)
			}
		case []any:
			for _, c := range t {
				rec(path, c)
			}
		}
	}
	rec("", v)
}
