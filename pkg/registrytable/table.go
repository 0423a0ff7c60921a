// Package registrytable turns Registry objects into the lookup table that the webhook, the
// node agent and `pullpass explain` all use, so they can never disagree about a match.
package registrytable

import (
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/match"
)

// Table maps images to the Registry that serves them.
type Table struct {
	t       *match.Table[*v1alpha1.Registry]
	skipped []error
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
	for _, r := range registries {
		if err := Validate(r); err != nil {
			skipped = append(skipped, err)
			continue
		}
		for _, h := range r.Spec.Hosts {
			p, _ := match.ParsePattern(h) // checked by Validate
			entries = append(entries, match.Entry[*v1alpha1.Registry]{Name: r.Name, Pattern: p, Value: r})
		}
	}
	return &Table{t: match.NewTable(entries), skipped: skipped}
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

// Validate checks what the CRD schema checks, for registries read from files (offline
// `explain`) or from an API server that was given objects before the schema was tightened.
func Validate(r *v1alpha1.Registry) error {
	var errs []error
	if r.Name == "" {
		errs = append(errs, errors.New("metadata.name is empty"))
	}
	if len(r.Spec.Hosts) == 0 {
		errs = append(errs, errors.New("spec.hosts is empty"))
	}
	for i, h := range r.Spec.Hosts {
		if _, err := match.ParsePattern(h); err != nil {
			errs = append(errs, fmt.Errorf("spec.hosts[%d]: %w", i, err))
		}
	}
	if src := r.Spec.Auth.Sources(); len(src) != 1 {
		errs = append(errs, fmt.Errorf("spec.auth: exactly one credential source must be set (secretRef, ecr or dockerHub), found %d", len(src)))
	}
	for field, ref := range map[string]*v1alpha1.SecretReference{"secretRef": r.Spec.Auth.SecretRef, "dockerHub.secretRef": dockerHubRef(r.Spec.Auth.DockerHub)} {
		if ref != nil && (ref.Name == "" || ref.Namespace == "") {
			errs = append(errs, fmt.Errorf("spec.auth.%s: name and namespace are required", field))
		}
	}
	if sel := r.Spec.NamespaceSelector; sel != nil {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, fmt.Errorf("spec.namespaceSelector: %w", err))
		}
	}
	switch r.Spec.Scope {
	case "", v1alpha1.ScopeNamespaced, v1alpha1.ScopeCluster:
	default:
		errs = append(errs, fmt.Errorf("spec.scope: %q is neither Namespaced nor Cluster", r.Spec.Scope))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("registry %q: %w", r.Name, err)
	}
	return nil
}

func dockerHubRef(d *v1alpha1.DockerHubSource) *v1alpha1.SecretReference {
	if d == nil {
		return nil
	}
	return &d.SecretRef
}
