// Package registrytable turns Registry objects into the lookup table that the webhook, the
// node agent and `pullpass explain` all use, so they can never disagree about a match.
package registrytable

import (
	"errors"
	"fmt"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/pullthrough"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// Table maps images to the Registry that serves them.
type Table struct {
	t           *match.Table[*v1alpha1.Registry]
	skipped     []error
	pullThrough *pullthrough.Index
}

// Match is the answer for one image.
type Match struct {
	Image    image.Reference
	Registry *v1alpha1.Registry
	// Pattern is the host pattern that matched.
	Pattern string
}

// Build makes a table of the valid registries. Invalid ones are left out and reported by
// Skipped, so one bad object never takes the others down.
func Build(registries []*v1alpha1.Registry) *Table {
	var entries []match.Entry[*v1alpha1.Registry]
	var skipped []error
	valid := make([]*v1alpha1.Registry, 0, len(registries))
	for _, r := range registries {
		if err := Validate(r); err != nil {
			skipped = append(skipped, err)
			continue
		}
		valid = append(valid, r)
		for _, h := range r.Spec.Hosts {
			p, _ := match.ParsePattern(h) // checked by Validate
			entries = append(entries, match.Entry[*v1alpha1.Registry]{Name: r.Name, Pattern: p, Value: r})
		}
	}
	return &Table{t: match.NewTable(entries), skipped: skipped, pullThrough: pullthrough.NewIndex(valid)}
}

// PullThrough returns the table's pull-through caches: nil when there are none.
func (t *Table) PullThrough() *pullthrough.Index { return t.pullThrough }

// Serves reports whether a Namespaced registry's pull secret belongs in a namespace with these
// labels: its namespaceSelector, if any, selects it. Cluster-scope registries are no namespace's,
// and registries delivered by the node have no pull secret.
func Serves(reg *v1alpha1.Registry, nsLabels map[string]string) bool {
	if reg.Spec.EffectiveScope() != v1alpha1.ScopeNamespaced || reg.Spec.EffectiveDelivery() != v1alpha1.DeliveryPullSecret {
		return false
	}
	if reg.Spec.NamespaceSelector == nil {
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(reg.Spec.NamespaceSelector)
	if err != nil {
		return false // an invalid selector selects nothing rather than everything
	}
	return sel.Matches(labels.Set(nsLabels))
}

// Skipped returns why registries were left out of the table.
func (t *Table) Skipped() []error { return t.skipped }

// Len returns the number of host patterns in the table.
func (t *Table) Len() int { return t.t.Len() }

// Lookup finds the registry for an image as written in a pod spec.
func (t *Table) Lookup(img string) (Match, bool, error) {
	ref, err := image.Parse(img)
	if err != nil {
		return Match{}, false, err
	}
	e, ok := t.t.Lookup(repository(img, ref))
	if !ok {
		return Match{Image: ref}, false, nil
	}
	return Match{Image: ref, Registry: e.Value, Pattern: e.Pattern.String()}, true, nil
}

// LookupRepository finds the registry for a normalized image repository ("host[:port]/path", as
// image.Reference.Repository gives it), with nothing to parse.
func (t *Table) LookupRepository(repository string) (*v1alpha1.Registry, bool) {
	e, ok := t.t.Lookup(repository)
	return e.Value, ok
}

// repository is ref.Repository(), taken from the image as written when it starts with it (no
// Docker Hub short form or alias): a lookup runs for every image of every pod, and the
// concatenation would allocate.
func repository(img string, ref image.Reference) string {
	n := len(ref.Host) + 1 + len(ref.Path)
	if len(img) >= n && img[:len(ref.Host)] == ref.Host && img[len(ref.Host)] == '/' && img[len(ref.Host)+1:n] == ref.Path {
		return img[:n]
	}
	return ref.Repository()
}

// Candidates returns every match for an image, best first.
func (t *Table) Candidates(ref image.Reference) []Match {
	var out []Match
	for _, e := range t.t.All(ref.Repository()) {
		out = append(out, Match{Image: ref, Registry: e.Value, Pattern: e.Pattern.String()})
	}
	return out
}

// Limits and formats of the CRD's schema (pkg/apis/pullpass/v1alpha1/types.go's markers), checked
// again here for objects that never went through an API server.
const (
	maxHosts      = 64
	maxHostLength = 512
	// maxServiceAccounts bounds spec.serviceAccounts.names.
	maxServiceAccounts = 64
)

var (
	ecrRegion  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	ecrRoleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$`)
)

// Validate checks what the CRD schema checks, for registries read from files (offline
// `explain`) or from an API server that was given objects before the schema was tightened.
// The CRD integration test (pkg/apis/pullpass/v1alpha1/crd) runs one table through both.
func Validate(r *v1alpha1.Registry) error {
	var errs []error
	if r.Name == "" {
		errs = append(errs, errors.New("metadata.name is empty"))
	}
	errs = append(errs, validateHosts(r.Spec.Hosts)...)
	if src := r.Spec.Auth.Sources(); len(src) != 1 {
		errs = append(errs, fmt.Errorf("spec.auth: exactly one credential source must be set (secretRef, ecr or dockerHub), found %d", len(src)))
	}
	errs = append(errs, validateSecretRef("spec.auth.secretRef", r.Spec.Auth.SecretRef)...)
	if d := r.Spec.Auth.DockerHub; d != nil {
		errs = append(errs, validateSecretRef("spec.auth.dockerHub.secretRef", &d.SecretRef)...)
	}
	if e := r.Spec.Auth.ECR; e != nil {
		if e.Region != "" && !ecrRegion.MatchString(e.Region) {
			errs = append(errs, fmt.Errorf("spec.auth.ecr.region: %q is not an AWS region", e.Region))
		}
		if e.RoleARN != "" && !ecrRoleARN.MatchString(e.RoleARN) {
			errs = append(errs, fmt.Errorf("spec.auth.ecr.roleARN: %q is not an IAM role ARN", e.RoleARN))
		}
		errs = append(errs, validateSecretRef("spec.auth.ecr.accessKeySecretRef", e.AccessKeySecretRef)...)
	}
	if sel := r.Spec.NamespaceSelector; sel != nil {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, fmt.Errorf("spec.namespaceSelector: %w", err))
		}
	}
	errs = append(errs, pullthrough.Validate(r.Spec)...)
	switch r.Spec.Scope {
	case "", v1alpha1.ScopeNamespaced, v1alpha1.ScopeCluster:
	default:
		errs = append(errs, fmt.Errorf("spec.scope: %q is neither Namespaced nor Cluster", r.Spec.Scope))
	}
	switch r.Spec.Delivery {
	case "", v1alpha1.DeliveryNode:
	case v1alpha1.DeliveryPullSecret:
		if r.Spec.EffectiveScope() == v1alpha1.ScopeCluster {
			errs = append(errs, errors.New("spec: scope Cluster is served by the node agents: delivery must be Node or unset"))
		}
	default:
		errs = append(errs, fmt.Errorf("spec.delivery: %q is neither PullSecret nor Node", r.Spec.Delivery))
	}
	if sa := r.Spec.ServiceAccounts; sa != nil {
		if r.Spec.EffectiveScope() != v1alpha1.ScopeNamespaced || r.Spec.Delivery != v1alpha1.DeliveryNode {
			errs = append(errs, errors.New("spec: serviceAccounts needs scope Namespaced and delivery Node: only the node tells service accounts apart"))
		}
		if len(sa.Names) == 0 && !sa.Annotated {
			errs = append(errs, errors.New("spec.serviceAccounts: name service accounts or set annotated"))
		}
		if len(sa.Names) > maxServiceAccounts {
			errs = append(errs, fmt.Errorf("spec.serviceAccounts.names: %d names, at most %d are allowed", len(sa.Names), maxServiceAccounts))
		}
		seen := map[string]bool{}
		for i, n := range sa.Names {
			for _, msg := range validation.IsDNS1123Subdomain(n) {
				errs = append(errs, fmt.Errorf("spec.serviceAccounts.names[%d]: %s", i, msg))
			}
			if seen[n] {
				errs = append(errs, fmt.Errorf("spec.serviceAccounts.names[%d]: duplicate %q", i, n))
			}
			seen[n] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("registry %q: %w", r.Name, err)
	}
	return nil
}

func validateHosts(hosts []string) []error {
	switch {
	case len(hosts) == 0:
		return []error{errors.New("spec.hosts is empty")}
	case len(hosts) > maxHosts:
		return []error{fmt.Errorf("spec.hosts: %d patterns, at most %d are allowed", len(hosts), maxHosts)}
	}
	var errs []error
	seen := make(map[string]bool, len(hosts))
	for i, h := range hosts {
		if len(h) > maxHostLength {
			errs = append(errs, fmt.Errorf("spec.hosts[%d]: longer than %d characters", i, maxHostLength))
		} else if _, err := match.ParsePattern(h); err != nil {
			errs = append(errs, fmt.Errorf("spec.hosts[%d]: %w", i, err))
		}
		if seen[h] {
			errs = append(errs, fmt.Errorf("spec.hosts[%d]: duplicate %q", i, h))
		}
		seen[h] = true
	}
	return errs
}

func validateSecretRef(field string, ref *v1alpha1.SecretReference) []error {
	if ref == nil {
		return nil
	}
	if ref.Name == "" || ref.Namespace == "" {
		return []error{fmt.Errorf("%s: name and namespace are required", field)}
	}
	var errs []error
	for _, msg := range validation.IsDNS1123Subdomain(ref.Name) {
		errs = append(errs, fmt.Errorf("%s.name: %s", field, msg))
	}
	for _, msg := range validation.IsDNS1123Label(ref.Namespace) {
		errs = append(errs, fmt.Errorf("%s.namespace: %s", field, msg))
	}
	if secrets.Reserved(ref.Name) {
		errs = append(errs, fmt.Errorf("%s.name: names starting %s are pullpass's own Secrets (pull secrets %sREGISTRY, the webhook's pullpass-webhook-tls), not credential sources: name a Secret of your own", field, secrets.ReservedPrefix, secrets.ReservedPrefix))
	}
	return errs
}
