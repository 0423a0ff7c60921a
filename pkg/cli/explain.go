package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

func newExplainCommand(o *options) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "explain IMAGE",
		Short: "Explain which registry serves an image",
		Long: `Explain which registry serves an image, and why.

stdout holds a line "registry: NAME" for the registry that serves IMAGE, or "registry: none".
Exit status: 0 when a registry matches, 1 when none does, 2 for invalid input or usage (the
reason on stderr). With --registries FILE (a YAML stream of Registry objects) it runs offline.

When several registries match, the most specific wins: the longer path prefix, then an exact
host over a glob, then fewer wildcards, then the smaller name.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var regs []*v1alpha1.Registry
			var err error
			if file != "" {
				regs, err = readRegistriesFile(file)
				if err != nil {
					return badInput("%w", err)
				}
			} else if regs, err = clusterRegistries(cmd.Context(), o); err != nil {
				return err
			}
			return explain(o.streams, regs, args[0])
		},
	}
	cmd.Flags().StringVar(&file, "registries", "", "read Registry objects from this YAML file ('-' for stdin) instead of the cluster")
	return cmd
}

func clusterRegistries(ctx context.Context, o *options) ([]*v1alpha1.Registry, error) {
	c, err := o.getClients()
	if err != nil {
		return nil, err
	}
	list, err := c.Registries.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing registries: %w", err)
	}
	out := make([]*v1alpha1.Registry, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

func explain(s Streams, regs []*v1alpha1.Registry, img string) error {
	table := registrytable.Build(regs)
	for _, err := range table.Skipped() {
		fmt.Fprintln(s.ErrOut, "warning: ignoring invalid", err)
	}
	m, ok, err := table.Lookup(img)
	if err != nil {
		return badInput("%w", err)
	}
	w := s.Out
	fmt.Fprintf(w, "image: %s\n", img)
	fmt.Fprintf(w, "normalized: %s\n", m.Image.String())
	fmt.Fprintf(w, "host: %s\n", m.Image.Host)
	fmt.Fprintf(w, "repository: %s\n", m.Image.Repository())
	if !ok {
		fmt.Fprintln(w, "registry: none")
		fmt.Fprintf(w, "why: no host pattern of %d registries matches %s\n", len(regs), m.Image.Repository())
		return &exitError{code: ExitNoMatch, err: fmt.Errorf("no registry serves %s", m.Image.Repository())}
	}
	fmt.Fprintf(w, "registry: %s\n", m.Registry.Name)
	fmt.Fprintf(w, "pattern: %s\n", m.Pattern)
	fmt.Fprintf(w, "scope: %s\n", m.Registry.Spec.EffectiveScope())
	if m.Registry.Spec.EffectiveScope() == v1alpha1.ScopeCluster {
		fmt.Fprintln(w, "served: by the node agents to every pod's kubelet, with no pull secret")
	} else {
		fmt.Fprintln(w, "served: as a pull secret added to the pods of opted-in namespaces")
	}
	fmt.Fprintf(w, "source: %s\n", sourceDescription(m.Registry))
	cands := table.Candidates(m.Image)
	for _, c := range cands[1:] {
		fmt.Fprintf(w, "also matches: %s (pattern %s), less specific\n", c.Registry.Name, c.Pattern)
	}
	return nil
}

// readRegistriesFile reads a YAML (or JSON) stream of Registry objects. Unknown fields, other
// kinds and invalid objects are errors that name the document.
func readRegistriesFile(path string) ([]*v1alpha1.Registry, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading registries: %w", err)
	}
	return ParseRegistries(data)
}

// ParseRegistries decodes a YAML stream of Registry objects strictly.
func ParseRegistries(data []byte) ([]*v1alpha1.Registry, error) {
	reader := utilyaml.NewYAMLReader(bufioReader(data))
	var out []*v1alpha1.Registry
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if tm.Kind == "RegistryList" || tm.Kind == "List" {
			var list struct {
				Items []v1alpha1.Registry `json:"items"`
			}
			if err := yaml.UnmarshalStrict(raw, &list, yaml.DisallowUnknownFields); err == nil {
				for i := range list.Items {
					out = append(out, &list.Items[i])
				}
				continue
			}
		}
		if tm.APIVersion != v1alpha1.SchemeGroupVersion.String() || tm.Kind != "Registry" {
			return nil, fmt.Errorf("document %d: want apiVersion %s kind Registry, got %q %q", doc, v1alpha1.SchemeGroupVersion, tm.APIVersion, tm.Kind)
		}
		r := &v1alpha1.Registry{}
		if err := yaml.UnmarshalStrict(raw, r); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if err := registrytable.Validate(r); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func stripComments(b []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") && t != "---" {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
