package credentials_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
)

type secretMap map[string]*corev1.Secret

func (m secretMap) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if s, ok := m[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, errors.New("not found")
}

func secret(name, rv string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "pullpass", ResourceVersion: rv}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func ecrRegistry(hosts ...string) *v1alpha1.Registry {
	return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ecr"}, Spec: v1alpha1.RegistrySpec{
		Hosts: hosts,
		Auth: v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{
			AccessKeySecretRef: &v1alpha1.SecretReference{Name: "aws", Namespace: "pullpass"},
		}},
	}}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// ECR tokens are cached, refreshed at about half their life, and the last good one is kept
// while a refresh fails, until it expires.
func TestResolveECRRefreshAndKeepLastGood(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	clk := &clock{t: time.Now().Truncate(time.Second)}
	srv := ecrtest.New(ecrtest.Reply{Username: "AWS", Password: "token-1", ExpiresAt: clk.t.Add(12 * time.Hour)})
	defer srv.Close()
	var regions []string
	r := &credentials.Resolver{
		Secrets: secretMap{"pullpass/aws": secret("aws", "1", map[string]string{"aws_access_key_id": "AKIA", "aws_secret_access_key": "sk"})},
		NewECR: func(ctx context.Context, c ecr.ClientConfig) (ecr.API, error) {
			regions = append(regions, c.Region)
			c.MaxAttempts = 1
			return ecr.NewAPI(ctx, c)
		},
		ECREndpoint: srv.URL,
		Now:         clk.now,
	}
	reg := ecrRegistry("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
	c, err := r.Resolve(context.Background(), reg)
	if err != nil || c.Password != "token-1" || c.Username != "AWS" {
		t.Fatalf("first resolve: %v, %v", c, err)
	}
	if len(regions) != 1 || regions[0] != "eu-west-1" {
		t.Fatalf("regions %v, want the host's eu-west-1", regions)
	}
	refresh := r.NextRefresh("ecr")
	if d := refresh.Sub(clk.t); d < 5*time.Hour+24*time.Minute || d > 6*time.Hour+36*time.Minute {
		t.Fatalf("refresh in %s, want about half of 12h (±10%%)", d)
	}

	// Before the refresh time: cached, no call.
	clk.t = clk.t.Add(time.Hour)
	if c, _ := r.Resolve(context.Background(), reg); c.Password != "token-1" {
		t.Fatalf("cached token %v", c)
	}
	if total, _ := srv.Calls(); total != 1 {
		t.Fatalf("%d calls while the token was fresh", total)
	}

	// Past the refresh time, ECR fails: the last good token stays, with the error.
	clk.t = refresh.Add(time.Second)
	srv.SetReplies(ecrtest.Reply{ErrorCode: "AccessDeniedException", Message: "denied"})
	c, err = r.Resolve(context.Background(), reg)
	var stale *credentials.StaleError
	if c.Password != "token-1" || !errors.As(err, &stale) {
		t.Fatalf("during a failed refresh: %v, %v; want the last good token and a StaleError", c, err)
	}
	if next := r.NextRefresh("ecr"); next.Sub(clk.t) > time.Minute {
		t.Fatalf("retry in %s, want within a minute", next.Sub(clk.t))
	}

	// Once the old token expired, failures are failures.
	clk.t = clk.t.Add(7 * time.Hour)
	if _, err := r.Resolve(context.Background(), reg); err == nil || errors.As(err, &stale) {
		t.Fatalf("after expiry: %v, want a plain error", err)
	}

	// Failures are remembered until the back-off passes: no call to AWS per request meanwhile.
	callsBefore, _ := srv.Calls()
	for range 5 {
		if _, err := r.Resolve(context.Background(), reg); err == nil {
			t.Fatal("a remembered failure resolved")
		}
	}
	if calls, _ := srv.Calls(); calls != callsBefore {
		t.Fatalf("%d calls to ECR during the back-off", calls-callsBefore)
	}

	// ECR recovers: after the back-off, a new token.
	clk.t = clk.t.Add(10 * time.Minute)
	srv.SetReplies(ecrtest.Reply{Username: "AWS", Password: "token-2", ExpiresAt: clk.t.Add(12 * time.Hour)})
	if c, err := r.Resolve(context.Background(), reg); err != nil || c.Password != "token-2" {
		t.Fatalf("after recovery: %v, %v", c, err)
	}
}

func TestResolveSources(t *testing.T) {
	secrets := secretMap{
		"pullpass/hub": secret("hub", "7", map[string]string{"username": "bob", "token": "dckr_pat_x"}),
		"pullpass/bad": secret("bad", "1", map[string]string{"username": "bob"}),
	}
	r := &credentials.Resolver{Secrets: secrets}
	hub := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "hub"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"docker.io"},
		Auth: v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: v1alpha1.SecretReference{Name: "hub", Namespace: "pullpass"}}}}}
	c, err := r.Resolve(context.Background(), hub)
	if err != nil || c.Username != "bob" || c.Password != "dckr_pat_x" || c.Version != "secret/7" {
		t.Fatalf("docker hub: %v %q, %v", c, c.Version, err)
	}
	hub.Spec.Auth.DockerHub.SecretRef.Name = "bad"
	if _, err := r.Resolve(context.Background(), hub); err == nil {
		t.Fatal("a Docker Hub secret without a token resolved")
	}
	// An ECR registry on a host that names no region, and no region set: a clear error.
	noRegion := ecrRegistry("ecr.example.com")
	noRegion.Spec.Auth.ECR.AccessKeySecretRef = nil
	if _, err := r.Resolve(context.Background(), noRegion); err == nil {
		t.Fatal("resolved ECR with no region")
	}
}

// A source Secret is parsed once per resourceVersion and list of hosts: the webhook resolves
// every registry of every pod it admits. The test changes the Secret's data behind the cache's
// back (an informer never does that without a new resourceVersion) to see when it is read.
func TestResolveParsesASourceOncePerVersion(t *testing.T) {
	dockerConfig := func(host, user string) map[string]string {
		return map[string]string{corev1.DockerConfigJsonKey: `{"auths":{"` + host + `":{"username":"` + user + `","password":"pw"}}}`}
	}
	src := secret("src", "5", dockerConfig("registry.example.com", "alice"))
	r := &credentials.Resolver{Secrets: secretMap{"pullpass/src": src}}
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"registry.example.com"},
		Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "src", Namespace: "pullpass"}}}}
	resolve := func(want, wantVersion string) {
		t.Helper()
		c, err := r.Resolve(context.Background(), reg)
		if err != nil || c.Username != want || c.Version != wantVersion {
			t.Fatalf("resolved %v version %q, %v; want %s, %s", c, c.Version, err, want, wantVersion)
		}
	}
	resolve("alice", "secret/5")
	src.Data = secret("", "", dockerConfig("registry.example.com", "bob")).Data
	resolve("alice", "secret/5") // same resourceVersion: not parsed again
	src.ResourceVersion = "6"
	resolve("bob", "secret/6")
	// The hosts choose the docker config entry: new hosts, parsed again.
	src.Data = secret("", "", dockerConfig("other.example.com", "carol")).Data
	reg.Spec.Hosts = []string{"other.example.com"}
	resolve("carol", "secret/6")
	// Without a resourceVersion nothing tells a change: parsed every time.
	src.ResourceVersion = ""
	resolve("carol", "secret/")
	src.Data = secret("", "", dockerConfig("other.example.com", "dave")).Data
	resolve("dave", "secret/")
	// A forgotten registry is parsed again.
	src.ResourceVersion = "7"
	resolve("dave", "secret/7")
	src.Data = secret("", "", dockerConfig("other.example.com", "erin")).Data
	r.Forget("r")
	resolve("erin", "secret/7")
}

// A source naming one of pullpass's own Secrets is refused, whatever its source kind: the
// webhook's TLS Secret (by name, or by its labels under another name) and pull secrets would
// otherwise be copied into pull secrets or handed to the nodes.
func TestResolveRefusesPullpassOwnSecrets(t *testing.T) {
	tls := secret("pullpass-webhook-tls", "1", map[string]string{"username": "u", "password": "p", "token": "t",
		"aws_access_key_id": "AKIA", "aws_secret_access_key": "sk", corev1.TLSPrivateKeyKey: "key"})
	renamedTLS := secret("webhook-cert", "1", map[string]string{"username": "u", "password": "p", "token": "t",
		"aws_access_key_id": "AKIA", "aws_secret_access_key": "sk"})
	renamedTLS.Labels = map[string]string{"app.kubernetes.io/managed-by": "pullpass"}
	pull := secret("pullpass-other", "1", map[string]string{corev1.DockerConfigJsonKey: `{"auths":{"r.io":{"username":"u","password":"p"}}}`})
	pull.Labels = map[string]string{"app.kubernetes.io/managed-by": "pullpass", "pullpass.io/registry": "other", "pullpass.io/role": "pull-secret"}
	r := &credentials.Resolver{
		Secrets: secretMap{"pullpass/pullpass-webhook-tls": tls, "pullpass/webhook-cert": renamedTLS, "pullpass/pullpass-other": pull},
		NewECR: func(context.Context, ecr.ClientConfig) (ecr.API, error) {
			return nil, errors.New("no ECR call expected")
		},
	}
	for _, name := range []string{"pullpass-webhook-tls", "webhook-cert", "pullpass-other"} {
		ref := v1alpha1.SecretReference{Name: name, Namespace: "pullpass"}
		for kind, auth := range map[string]v1alpha1.RegistryAuth{
			"secretRef": {SecretRef: &ref},
			"dockerHub": {DockerHub: &v1alpha1.DockerHubSource{SecretRef: ref}},
			"ecr":       {ECR: &v1alpha1.ECRSource{AccessKeySecretRef: &ref}},
		} {
			reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: v1alpha1.RegistrySpec{
				Hosts: []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com"}, Auth: auth}}
			c, err := r.Resolve(context.Background(), reg)
			if err == nil || !strings.Contains(err.Error(), "pullpass's own Secrets") || c.Password != "" {
				t.Errorf("%s naming %s: resolved %v, %v; want it refused as pullpass's own", kind, name, c, err)
			}
		}
	}
}
