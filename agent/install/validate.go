package install

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pullpass/pullpass/pkg/match"
)

// The API versions the kubelet (1.37) accepts, for the config document and for each provider
// (pkg/credentialprovider/plugin: apiVersions, decode).
var (
	configAPIVersions   = []string{"kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1"}
	providerAPIVersions = []string{"credentialprovider.kubelet.k8s.io/v1", "credentialprovider.kubelet.k8s.io/v1beta1", "credentialprovider.kubelet.k8s.io/v1alpha1"}
	cacheTypes          = []string{"ServiceAccount", "Token"}
)

// ErrRefused wraps every reason a config would keep the kubelet from starting.
var ErrRefused = errors.New("the kubelet would refuse this credential provider config")

// Validate checks a CredentialProviderConfig document as the kubelet does when it starts
// (validateCredentialProviderConfig and RegisterCredentialProviderPlugins in
// pkg/credentialprovider/plugin): a config it refuses keeps the kubelet from starting at all, and
// with it every pod of the node. otherNames are the providers of the other files of a config
// directory (names are unique across the files). own names pullpass's providers, whose
// matchImages must also be patterns pkg/match reads as the kubelet does ('?' and '[' mean URL
// syntax to the kubelet, not globs). The binaries must be present and executable in binDir.
// Values are named in the errors; the config holds no secret.
func Validate(doc map[string]any, binDir string, otherNames []string, own func(name string) bool) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if v, _ := doc["apiVersion"].(string); !slices.Contains(configAPIVersions, v) {
		bad("apiVersion %q: want one of %s", v, strings.Join(configAPIVersions, ", "))
	}
	if k, _ := doc["kind"].(string); k != "CredentialProviderConfig" {
		bad("kind %q: want CredentialProviderConfig", k)
	}
	list := providers(doc)
	if len(list) == 0 {
		bad("providers: at least one is required")
	}
	seen := map[string]bool{}
	for _, n := range otherNames {
		seen[n] = true
	}
	for i, p := range list {
		m, ok := p.(map[string]any)
		if !ok {
			bad("providers[%d] is not an object", i)
			continue
		}
		name, _ := m["name"].(string)
		at := fmt.Sprintf("provider %q", name)
		switch {
		case name == "", name == ".", name == "..", strings.ContainsAny(name, "/ "):
			bad("%s: the name must be set, without '/' or spaces, and not '.' or '..'", at)
		case seen[name]:
			bad("%s: the name is used twice", at)
		default:
			seen[name] = true
			if _, err := exec.LookPath(filepath.Join(binDir, name)); err != nil {
				bad("%s: no executable %s in the bin dir", at, name)
			}
		}
		apiVersion, _ := m["apiVersion"].(string)
		if !slices.Contains(providerAPIVersions, apiVersion) {
			bad("%s: apiVersion %q: want one of %s", at, apiVersion, strings.Join(providerAPIVersions, ", "))
		}
		images, _ := m["matchImages"].([]any)
		if len(images) == 0 {
			bad("%s: matchImages: at least one is required", at)
		}
		for _, v := range images {
			s, _ := v.(string)
			if _, err := url.Parse("https://" + s); err != nil || s == "" {
				bad("%s: matchImages %q is not a valid pattern", at, s)
			} else if own != nil && own(name) {
				if _, err := match.ParsePattern(s); err != nil {
					bad("%s: %v", at, err)
				}
			}
		}
		if d, ok := m["defaultCacheDuration"].(string); !ok {
			bad("%s: defaultCacheDuration is required", at)
		} else if dur, err := time.ParseDuration(d); err != nil || dur < 0 {
			bad("%s: defaultCacheDuration %q is not a duration of 0 or more", at, d)
		}
		if ta, ok := m["tokenAttributes"]; ok && ta != nil {
			errs = append(errs, validateTokenAttributes(at, apiVersion, ta)...)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrRefused, errors.Join(errs...))
	}
	return nil
}

// validateTokenAttributes checks a provider's KEP-4412 tokenAttributes as the kubelet 1.34+
// does (with KubeletServiceAccountTokenForCredentialProviders on, its default).
func validateTokenAttributes(at, apiVersion string, v any) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(at+": tokenAttributes: "+format, a...)) }
	ta, ok := v.(map[string]any)
	if !ok {
		bad("not an object")
		return errs
	}
	if apiVersion != "credentialprovider.kubelet.k8s.io/v1" {
		bad("only for apiVersion credentialprovider.kubelet.k8s.io/v1")
	}
	if a, _ := ta["serviceAccountTokenAudience"].(string); a == "" {
		bad("serviceAccountTokenAudience is required")
	}
	require, ok := ta["requireServiceAccount"].(bool)
	if !ok {
		bad("requireServiceAccount is required")
	}
	if c, _ := ta["cacheType"].(string); !slices.Contains(cacheTypes, c) {
		bad("cacheType %q: want one of %s", c, strings.Join(cacheTypes, ", "))
	}
	keys := func(field string) []string {
		var out []string
		list, _ := ta[field].([]any)
		for _, k := range list {
			s, _ := k.(string)
			// The rule is QualifiedName, case aside (the kubelet lower-cases first).
			for _, msg := range validation.IsQualifiedName(strings.ToLower(s)) {
				bad("%s %q: %s", field, s, msg)
			}
			if slices.Contains(out, s) {
				bad("%s %q: listed twice", field, s)
			}
			out = append(out, s)
		}
		return out
	}
	required, optional := keys("requiredServiceAccountAnnotationKeys"), keys("optionalServiceAccountAnnotationKeys")
	if len(required) > 0 && ok && !require {
		bad("requiredServiceAccountAnnotationKeys needs requireServiceAccount true")
	}
	for _, k := range required {
		if slices.Contains(optional, k) {
			bad("annotation key %q is both required and optional", k)
		}
	}
	return errs
}

// otherProviderNames are the provider names of the config directory's other files, which the
// kubelet merges with pullpass's drop-in (files it cannot read are the kubelet's concern, and
// were before pullpass).
func otherProviderNames(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || e.Name() == DropInName || (ext != ".json" && ext != ".yaml" && ext != ".yml") {
			continue
		}
		doc, _, err := readConfig(filepath.Join(dir, e.Name()))
		if err != nil || doc == nil {
			continue
		}
		for _, p := range providers(doc) {
			if m, ok := p.(map[string]any); ok {
				if n, ok := m["name"].(string); ok {
					names = append(names, n)
				}
			}
		}
	}
	return names
}
