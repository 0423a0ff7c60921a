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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/pullthrough"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

func newExplainCommand(o *options) *cobra.Command {
	var file string
	var pod podIdentity
	cmd := &cobra.Command{
		Use:   "explain IMAGE",
		Short: "Explain which registry serves an image",
		Long: `Explain which registry serves an image, and why.

stdout holds a line "registry: NAME" for the registry that serves IMAGE, or "registry: none".
Exit status: 0 when a registry matches, 1 when none does, 2 for invalid input or usage (the
reason on stderr). With --registries FILE (a YAML stream of Registry objects) it runs offline.

When several registries match, the most specific wins: the longer path prefix, then an exact
host over a glob, then fewer wildcards, then the smaller name.

With --namespace NS (and --service-account SA, "default" when not given) it says what a pod of
NS running as SA gets: from the node (Cluster registries, and Namespaced ones delivered by the
node that select NS and allow SA, with the ECR role SA brings), or as a pull secret. It reads the
namespace's labels and annotations and the service account's annotations from the cluster, or,
offline, from --namespace-labels, --namespace-annotation and --service-account-annotation.
Exit status 0 when the pod gets credentials for IMAGE, 1 when it gets none.

An image of a registry that a pull-through cache mirrors (spec.pullThrough) is rewritten to the
cache's name in the namespaces the cache serves: "rewritten: IMAGE" says to what, and the
registry lines are then the rewritten image's. Which cache applies depends on the namespace's
labels: --namespace reads them (or takes --namespace-labels offline); --namespace-labels alone
gives them without a namespace; with neither, the namespace is taken to have none.`,
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
			if pod.namespace == "" {
				if len(pod.annotations) > 0 || len(pod.namespaceAnnotated) > 0 || pod.serviceAccount != "" {
					return badInput("--service-account, --service-account-annotation and --namespace-annotation need --namespace")
				}
				ns := &corev1.Namespace{}
				if pod.labels != "" {
					set, err := labels.ConvertSelectorToLabelsMap(pod.labels)
					if err != nil {
						return badInput("--namespace-labels: %w", err)
					}
					ns.Labels = set
				}
				return explain(o.streams, regs, args[0], ns)
			}
			if err := pod.load(cmd.Context(), o, file != ""); err != nil {
				return err
			}
			return explainForPod(o.streams, regs, args[0], &pod)
		},
	}
	cmd.Flags().StringVar(&file, "registries", "", "read Registry objects from this YAML file ('-' for stdin) instead of the cluster")
	cmd.Flags().StringVarP(&pod.namespace, "namespace", "n", "", "say what a pod of this namespace gets (its pull-through cache included)")
	cmd.Flags().StringVar(&pod.serviceAccount, "service-account", "", "the pod's service account (default: default)")
	cmd.Flags().StringVar(&pod.labels, "namespace-labels", "", "offline or without --namespace: the namespace's labels, k=v,k2=v2")
	cmd.Flags().StringArrayVar(&pod.annotations, "service-account-annotation", nil, "offline: an annotation of the service account, key=value, repeated (with --registries)")
	cmd.Flags().StringArrayVar(&pod.namespaceAnnotated, "namespace-annotation", nil, "offline: an annotation of the namespace, key=value, repeated (with --registries): pullpass.io/inject=enabled opts it in")
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

func explain(s Streams, regs []*v1alpha1.Registry, img string, ns *corev1.Namespace) error {
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
	if to := explainPullThrough(w, table, m.Image, ns); to != "" {
		fmt.Fprintf(w, "rewritten: %s\n", to)
		if m, ok, err = table.Lookup(to); err != nil {
			return err
		}
	}
	if !ok {
		fmt.Fprintln(w, "registry: none")
		fmt.Fprintf(w, "why: no host pattern of %d registries matches %s\n", len(regs), m.Image.Repository())
		return &exitError{code: ExitNoMatch, err: fmt.Errorf("no registry serves %s", m.Image.Repository())}
	}
	fmt.Fprintf(w, "registry: %s\n", m.Registry.Name)
	fmt.Fprintf(w, "pattern: %s\n", m.Pattern)
	fmt.Fprintf(w, "scope: %s\n", m.Registry.Spec.EffectiveScope())
	switch {
	case m.Registry.Spec.EffectiveScope() == v1alpha1.ScopeCluster:
		fmt.Fprintln(w, "served: by the node agents to every pod's kubelet, with no pull secret")
	case m.Registry.Spec.EffectiveDelivery() == v1alpha1.DeliveryNode:
		fmt.Fprintln(w, "served: by the node agents, with no pull secret, only to pods of the namespaces it selects (and the service accounts it allows), as their service account tokens prove; --namespace NS says what a pod of NS gets")
	default:
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

// explainPullThrough says whether a pull-through cache takes the image in the namespace, and
// returns the image's new name ("" when it stays as it is).
func explainPullThrough(w io.Writer, table *registrytable.Table, ref image.Reference, ns *corev1.Namespace) string {
	ix := table.PullThrough()
	if !ix.Upstream(ref.Host) {
		return ""
	}
	for _, c := range ix.Caches(ref.Host) {
		sel := "every namespace"
		if s := c.Registry.Spec.NamespaceSelector; s != nil {
			sel = "namespaces selected by " + metav1.FormatLabelSelector(s)
		}
		fmt.Fprintf(w, "pull-through cache: %s at %s, for %s\n", c.Registry.Name, c.Target.Repository("..."), sel)
	}
	nsName := ns.Name
	if nsName == "" {
		nsName = "the namespace"
	}
	nsLabels := "no labels"
	if len(ns.Labels) > 0 {
		nsLabels = "labels " + labels.Set(ns.Labels).String()
	}
	if pullthrough.OptedOut(ns.Annotations) {
		fmt.Fprintf(w, "pull-through: none, %s opted out (%s: disabled)\n", nsName, pullthrough.AnnotationOptOut)
		return ""
	}
	ch := ix.Select(ref.Host, ns.Labels)
	switch {
	case ch.Conflict[0] != nil:
		fmt.Fprintf(w, "pull-through: none, caches %s and %s are equally specific for %s (%s): the image stays as it is\n",
			ch.Conflict[0].Registry.Name, ch.Conflict[1].Registry.Name, nsName, nsLabels)
		return ""
	case ch.Cache == nil:
		fmt.Fprintf(w, "pull-through: none selects %s (%s)\n", nsName, nsLabels)
		return ""
	}
	to, ok := ch.Cache.Target.Rewrite(ref)
	if !ok {
		fmt.Fprintf(w, "pull-through: none, the name under cache %s would be too long\n", ch.Cache.Registry.Name)
		return ""
	}
	// As the webhook: only when the credentials for the cache's image reach the pod.
	if m, ok, _ := table.Lookup(to); !ok || m.Registry.Spec.EffectiveScope() != v1alpha1.ScopeCluster && !registrytable.Serves(m.Registry, ns.Labels) {
		fmt.Fprintf(w, "pull-through: none, the credentials for %s would not reach pods of %s\n", to, nsName)
		return ""
	}
	fmt.Fprintf(w, "pull-through: %s, for %s (%s)\n", ch.Cache.Registry.Name, nsName, nsLabels)
	return to
}
