package pullthrough

import (
	"cmp"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// Cache is one pull-through Registry, ready for lookups.
type Cache struct {
	Registry *v1alpha1.Registry
	Upstream string
	Target   Target
	// Specificity ranks caches of one upstream: the number of requirements of the Registry's
	// namespaceSelector (matchLabels entries plus matchExpressions); no selector is 0.
	Specificity int
	selector    labels.Selector // nil: every namespace
}

// Selects reports whether the cache's namespaceSelector selects a namespace with these labels.
func (c *Cache) Selects(nsLabels map[string]string) bool {
	return c.selector == nil || c.selector.Matches(labels.Set(nsLabels))
}

// Index holds the pull-through caches of a registry table by upstream. It is immutable once
// built and safe for concurrent use. A nil *Index holds no cache.
type Index struct {
	byUpstream map[string][]*Cache // most specific first, then by name
	byName     map[string]*Cache
	// refused are caches left out of the index, and why.
	refused map[string]string
}

// NewIndex indexes the pull-through caches among registries, which must be valid (the table
// builder passes only those). It returns nil when none is a cache, so tables without caches
// cost nothing more per lookup.
func NewIndex(registries []*v1alpha1.Registry) *Index {
	var caches []*Cache
	for _, r := range registries {
		if r.Spec.PullThrough == nil {
			continue
		}
		c := &Cache{Registry: r, Upstream: r.Spec.PullThrough.Upstream, Target: TargetOf(r.Spec)}
		if sel := r.Spec.NamespaceSelector; sel != nil {
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil {
				continue // refused by Validate already
			}
			c.selector = s
			c.Specificity = len(sel.MatchLabels) + len(sel.MatchExpressions)
		}
		caches = append(caches, c)
	}
	if len(caches) == 0 {
		return nil
	}
	ix := &Index{byUpstream: map[string][]*Cache{}, byName: map[string]*Cache{}, refused: map[string]string{}}
	cacheHosts := map[string]string{} // host -> a cache on it (the smallest name)
	slices.SortFunc(caches, func(a, b *Cache) int { return cmp.Compare(a.Registry.Name, b.Registry.Name) })
	for _, c := range caches {
		if _, ok := cacheHosts[c.Target.Host]; !ok {
			cacheHosts[c.Target.Host] = c.Registry.Name
		}
	}
	for _, c := range caches {
		// A cache of a cache would rewrite images a second time (a pod's images are rewritten
		// once, and a reinvoked webhook must not rewrite its own rewrite again).
		if other, ok := cacheHosts[c.Upstream]; ok {
			ix.refused[c.Registry.Name] = fmt.Sprintf("upstream %s is the host of pull-through cache %s, and pullpass never rewrites an image twice: "+
				"point both caches at the real upstream", c.Upstream, other)
			continue
		}
		ix.byUpstream[c.Upstream] = append(ix.byUpstream[c.Upstream], c)
		ix.byName[c.Registry.Name] = c
	}
	for _, l := range ix.byUpstream {
		slices.SortStableFunc(l, func(a, b *Cache) int { return cmp.Compare(b.Specificity, a.Specificity) })
	}
	return ix
}

// Len returns the number of caches in use.
func (ix *Index) Len() int {
	if ix == nil {
		return 0
	}
	return len(ix.byName)
}

// Upstream reports whether some cache serves images of host.
func (ix *Index) Upstream(host string) bool {
	if ix == nil {
		return false
	}
	_, ok := ix.byUpstream[host]
	return ok
}

// Choice is the cache chosen for an upstream in one namespace.
type Choice struct {
	// Cache is the most specific cache selecting the namespace; nil when none does or when
	// Conflict is set.
	Cache *Cache
	// Conflict holds two caches that select the namespace with equally specific selectors and
	// beat every other: neither is used there.
	Conflict [2]*Cache
}

// Select chooses the cache for images of upstream in a namespace with these labels: the one
// whose namespaceSelector has the most requirements among those that select it. Two at the top
// with as many requirements are a conflict, and neither is chosen.
func (ix *Index) Select(upstream string, nsLabels map[string]string) Choice {
	if ix == nil {
		return Choice{}
	}
	var best *Cache
	for _, c := range ix.byUpstream[upstream] {
		if best != nil && c.Specificity < best.Specificity {
			break // sorted most specific first: nothing below can tie
		}
		if !c.Selects(nsLabels) {
			continue
		}
		if best != nil {
			return Choice{Conflict: [2]*Cache{best, c}}
		}
		best = c
	}
	return Choice{Cache: best}
}

// Refused returns why a pull-through Registry is not used, or "" when it is (or is no cache).
func (ix *Index) Refused(name string) string {
	if ix == nil {
		return ""
	}
	return ix.refused[name]
}

// Cache returns a cache in use by its Registry's name.
func (ix *Index) Cache(name string) (*Cache, bool) {
	if ix == nil {
		return nil, false
	}
	c, ok := ix.byName[name]
	return c, ok
}

// Caches returns the caches in use for an upstream, most specific first.
func (ix *Index) Caches(upstream string) []*Cache {
	if ix == nil {
		return nil
	}
	return ix.byUpstream[upstream]
}
