package pullsecret_test

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsecr "github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// fakeECR hands out a token of its own, as each webhook replica's ECR client does.
type fakeECR struct {
	password string
	expires  time.Time
}

func (f fakeECR) GetAuthorizationToken(context.Context, *awsecr.GetAuthorizationTokenInput, ...func(*awsecr.Options)) (*awsecr.GetAuthorizationTokenOutput, error) {
	tok := base64.StdEncoding.EncodeToString([]byte("AWS:" + f.password))
	return &awsecr.GetAuthorizationTokenOutput{AuthorizationData: []ecrtypes.AuthorizationData{{
		AuthorizationToken: aws.String(tok), ExpiresAt: aws.Time(f.expires),
	}}}, nil
}

var ecrRegistry = &v1alpha1.Registry{
	ObjectMeta: metav1.ObjectMeta{Name: "ecr", ResourceVersion: "1"},
	Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com"},
		Auth:  v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{}},
	},
}

// replica is one webhook replica's view: its own ECR token, the shared API server, and an
// informer cache that holds what the test puts there.
type replica struct {
	ps      *pullsecret.Ensurer
	managed cache.Indexer
}

func newReplica(client *fake.Clientset, password string, now func() time.Time, expires time.Time) *replica {
	managed := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	sources := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	return &replica{managed: managed, ps: &pullsecret.Ensurer{
		Managed: corelisters.NewSecretLister(managed), Sources: pullsecret.SourceListers{"pullpass": corelisters.NewSecretLister(sources)},
		Client: client, Log: slog.New(slog.DiscardHandler), Now: now,
		Resolver: &credentials.Resolver{Now: now, NewECR: func(context.Context, ecr.ClientConfig) (ecr.API, error) {
			return fakeECR{password: password, expires: expires}, nil
		}},
	}}
}

// sync puts what the API server holds into the replica's informer cache.
func (r *replica) sync(t *testing.T, client *fake.Clientset) {
	list, err := client.CoreV1().Secrets("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		_ = r.managed.Add(&list.Items[i])
	}
}

func writes(client *fake.Clientset) (n int) {
	for _, a := range client.Actions() {
		if v := a.GetVerb(); v == "create" || v == "update" || v == "patch" {
			n++
		}
	}
	return n
}

// Two replicas with different ECR tokens admit pods into one namespace: only the first pod's
// admission writes; no replica rewrites the other's token (that was a write per pod, forever).
func TestReplicasNeverOverwriteEachOthersToken(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	client := fake.NewClientset()
	a := newReplica(client, "token-a", clock, now.Add(12*time.Hour))
	b := newReplica(client, "token-b", clock, now.Add(12*time.Hour))
	ctx := context.Background()

	if _, err := a.ps.Ensure(ctx, "shop", ecrRegistry, false); err != nil {
		t.Fatal(err)
	}
	if n := writes(client); n != 1 {
		t.Fatalf("%d writes for the first pod, want 1 (the create)", n)
	}
	// b has not seen the secret yet: it finds it on create and leaves it.
	if _, err := b.ps.Ensure(ctx, "shop", ecrRegistry, false); err != nil {
		t.Fatal(err)
	}
	a.sync(t, client)
	b.sync(t, client)
	client.ClearActions()
	for range 10 {
		for _, r := range []*replica{a, b} {
			if name, err := r.ps.Ensure(ctx, "shop", ecrRegistry, false); err != nil || name != pullsecret.Name("ecr") {
				t.Fatalf("Ensure = %q, %v", name, err)
			}
		}
	}
	if n := writes(client); n != 0 {
		t.Fatalf("%d API writes for 20 pods at steady state, want 0", n)
	}
	s, err := client.CoreV1().Secrets("shop").Get(ctx, pullsecret.Name("ecr"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Annotations[pullsecret.AnnotationExpiresAt]; got != "2026-11-24T00:00:00Z" {
		t.Fatalf("expires-at %q", got)
	}

	// Once the token in the namespace has expired (no keeper ran meanwhile), admission mends it.
	now = now.Add(13 * time.Hour)
	c := newReplica(client, "token-c", clock, now.Add(12*time.Hour))
	c.sync(t, client)
	client.ClearActions()
	if _, err := c.ps.Ensure(ctx, "shop", ecrRegistry, false); err != nil {
		t.Fatal(err)
	}
	if n := writes(client); n != 1 {
		t.Fatalf("%d writes for an expired pull secret, want 1 (the update)", n)
	}
	s, _ = client.CoreV1().Secrets("shop").Get(ctx, pullsecret.Name("ecr"), metav1.GetOptions{})
	if !pullsecret.Usable(s, now) {
		t.Fatalf("pull secret still expired after admission: %v", s.Annotations)
	}
}

// A pull secret of pullpass's name that pullpass does not own is never taken over.
func TestForeignSecretIsLeftAlone(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	client := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: pullsecret.Name("ecr")}})
	r := newReplica(client, "token", func() time.Time { return now }, now.Add(time.Hour))
	r.sync(t, client)
	if _, err := r.ps.Ensure(context.Background(), "shop", ecrRegistry, false); err == nil {
		t.Fatal("Ensure took over a secret pullpass does not own")
	}
}

// pullpass's own Secrets carry its managed-by label too: a Registry named after one (here the
// webhook's TLS Secret, "pullpass-webhook-tls", for a Registry "webhook-tls" serving pullpass's
// namespace) never has it overwritten. Only a pull secret of that registry is written over.
func TestRegistryNamedAfterPullpassOwnSecretLeavesItAlone(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tls := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "pullpass", Name: "pullpass-webhook-tls", Labels: map[string]string{
			secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRole: secrets.RoleWebhookTLS}},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("cert"), "tls.key": []byte("key")},
	}
	client := fake.NewClientset(tls)
	r := newReplica(client, "token", func() time.Time { return now }, now.Add(time.Hour))
	r.sync(t, client)
	reg := ecrRegistry.DeepCopy()
	reg.Name = "webhook-tls"
	if _, err := r.ps.Ensure(context.Background(), "pullpass", reg, false); !errors.Is(err, secrets.ErrNotOwned) {
		t.Fatalf("Ensure into the TLS Secret's name: %v, want ErrNotOwned", err)
	}
	if n := writes(client); n != 0 {
		t.Fatalf("%d writes to the API server: the TLS Secret was written over", n)
	}
}

// A Registry may name a source only in the namespaces pullpass reads sources from: one naming a
// Secret of another namespace must not get it copied into the namespaces it serves.
func TestSourceOutsideAllowedNamespacesIsRefused(t *testing.T) {
	stolen := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "deploy-key"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"ghcr.io":{"username":"u","password":"p"}}}`)},
	}
	client := fake.NewClientset(stolen)
	r := newReplica(client, "token", time.Now, time.Now().Add(time.Hour))
	reg := &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: "deputy", ResourceVersion: "1"},
		Spec: v1alpha1.RegistrySpec{Hosts: []string{"ghcr.io"}, Auth: v1alpha1.RegistryAuth{
			SecretRef: &v1alpha1.SecretReference{Namespace: "payments", Name: "deploy-key"}}},
	}
	client.ClearActions()
	_, err := r.ps.Ensure(context.Background(), "shop", reg, false)
	var notAllowed *credentials.NamespaceNotAllowedError
	if !errors.As(err, &notAllowed) || notAllowed.Namespace != "payments" {
		t.Fatalf("Ensure = %v, want the namespace refused", err)
	}
	for _, a := range client.Actions() {
		t.Errorf("API call %s %s/%s: a refused source must not be read or copied", a.GetVerb(), a.GetNamespace(), a.GetResource().Resource)
	}
}
