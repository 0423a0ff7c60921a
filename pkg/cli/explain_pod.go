package cli

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// Annotations a ServiceAccount brings to the node (the agent's token entry reads them).
const (
	annotationRole    = "pullpass.io/ecr-role-arn"
	annotationEKSRole = "eks.amazonaws.com/ecr-role-arn"
	// injectAnnotation opts a namespace in to the webhook's pull secrets.
	injectAnnotation = "pullpass.io/inject"
)

// podIdentity is who a pod is, for explain --namespace.
type podIdentity struct {
	namespace, serviceAccount string
	// offline flags
	labels             string
	annotations        []string
	namespaceAnnotated []string

	nsLabels, nsAnnotations, saAnnotations map[string]string
	saFound                                bool
}

// load reads the namespace's labels and the service account's annotations, from the cluster or
// (offline) from the flags.
func (p *podIdentity) load(ctx context.Context, o *options, offline bool) error {
	if p.serviceAccount == "" {
		p.serviceAccount = "default"
	}
	if offline {
		var err error
		if p.nsLabels, err = parsePairs("--namespace-labels", p.labels); err != nil {
			return err
		}
		if p.saAnnotations, err = parseAnnotations("--service-account-annotation", p.annotations); err != nil {
			return err
		}
		if p.nsAnnotations, err = parseAnnotations("--namespace-annotation", p.namespaceAnnotated); err != nil {
			return err
		}
		p.saFound = true
		return nil
	}
	if p.labels != "" || len(p.annotations) > 0 || len(p.namespaceAnnotated) > 0 {
		return badInput("--namespace-labels, --namespace-annotation and --service-account-annotation are for offline use (--registries): the cluster's are read")
	}
	c, err := o.getClients()
	if err != nil {
		return err
	}
	ns, err := c.Kube.CoreV1().Namespaces().Get(ctx, p.namespace, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading namespace %s: %w", p.namespace, err)
	}
	p.nsLabels, p.nsAnnotations = ns.Labels, ns.Annotations
	sa, err := c.Kube.CoreV1().ServiceAccounts(p.namespace).Get(ctx, p.serviceAccount, metav1.GetOptions{})
	switch {
	case err == nil:
		p.saAnnotations, p.saFound = sa.Annotations, true
	case apierrors.IsNotFound(err):
	default:
		return fmt.Errorf("reading service account %s/%s: %w", p.namespace, p.serviceAccount, err)
	}
	return nil
}

// parseAnnotations reads repeated key=value flags (values may hold ',' and '=').
func parseAnnotations(flag string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range items {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, badInput("%s: %q is not key=value", flag, a)
		}
		out[k] = v
	}
	return out, nil
}

func parsePairs(flag, s string) (map[string]string, error) {
	out := map[string]string{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok || k == "" {
			return nil, badInput("%s: %q is not key=value", flag, item)
		}
		out[k] = v
	}
	return out, nil
}

// why says why registry reg is or is not given to the pod: "" when it is.
func (p *podIdentity) why(reg *v1alpha1.Registry) string {
	spec := reg.Spec
	if spec.EffectiveScope() == v1alpha1.ScopeCluster {
		return ""
	}
	if sel := spec.NamespaceSelector; sel != nil {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || !s.Matches(labels.Set(p.nsLabels)) {
			return fmt.Sprintf("its namespaceSelector (%s) does not select namespace %s", metav1.FormatLabelSelector(sel), p.namespace)
		}
	}
	if spec.EffectiveDelivery() == v1alpha1.DeliveryPullSecret {
		if p.nsAnnotations[injectAnnotation] != "enabled" {
			return fmt.Sprintf("it is delivered as a pull secret, and namespace %s is not opted in (%s=enabled), unless the webhook serves every namespace", p.namespace, injectAnnotation)
		}
		return ""
	}
	if !spec.ServiceAccounts.Allows(reg.Name, p.serviceAccount, p.saAnnotations[v1alpha1.ServiceAccountRegistriesAnnotation]) {
		return fmt.Sprintf("it is given to service accounts %s only, and %s is neither named nor annotated %s with it", serviceAccountsOf(reg), p.serviceAccount, v1alpha1.ServiceAccountRegistriesAnnotation)
	}
	return ""
}

// explainForPod says what a pod of the namespace, as the service account, gets for an image.
func explainForPod(s Streams, regs []*v1alpha1.Registry, img string, p *podIdentity) error {
	all := registrytable.Build(regs)
	for _, err := range all.Skipped() {
		fmt.Fprintln(s.ErrOut, "warning: ignoring invalid", err)
	}
	m, _, err := all.Lookup(img)
	if err != nil {
		return badInput("%w", err)
	}
	w := s.Out
	fmt.Fprintf(w, "image: %s\n", img)
	fmt.Fprintf(w, "repository: %s\n", m.Image.Repository())
	// The webhook rewrites images of opted-in namespaces only.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.namespace, Labels: p.nsLabels, Annotations: p.nsAnnotations}}
	if p.nsAnnotations[injectAnnotation] != "enabled" {
		if all.PullThrough().Upstream(m.Image.Host) {
			fmt.Fprintf(w, "pull-through: none, namespace %s is not opted in (%s=enabled), unless the webhook serves every namespace\n", p.namespace, injectAnnotation)
		}
	} else if to := explainPullThrough(w, all, m.Image, ns); to != "" {
		fmt.Fprintf(w, "rewritten: %s\n", to)
		if m, _, err = all.Lookup(to); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "namespace: %s\n", p.namespace)
	sa := p.serviceAccount
	if !p.saFound {
		sa += " (not found: the pod could not be created)"
	}
	fmt.Fprintf(w, "service account: %s\n", sa)
	// Each path answers with its most specific match among what it may give the pod: the
	// kubelet asks the node's two plugin entries and the pod's pull secrets, and tries them all.
	var node, cluster, secret, first *registrytable.Match
	for _, c := range all.Candidates(m.Image) {
		reg := c.Registry
		why := p.why(reg)
		if why != "" {
			fmt.Fprintf(w, "not given: %s (pattern %s): %s\n", reg.Name, c.Pattern, why)
			continue
		}
		if first == nil {
			first = &c
		}
		switch {
		case reg.Spec.EffectiveScope() == v1alpha1.ScopeCluster:
			if cluster == nil {
				cluster = &c
			}
		case reg.Spec.EffectiveDelivery() == v1alpha1.DeliveryNode:
			if node == nil {
				node = &c
			}
		default:
			if secret == nil {
				secret = &c
			}
		}
	}
	served := false
	if node != nil {
		served = true
		fmt.Fprintf(w, "node: %s (pattern %s), to this namespace and service account only, as the pod's service account token proves (agent.serviceAccountTokens)\n", node.Registry.Name, node.Pattern)
		if role := roleAnnotation(p.saAnnotations); role != "" && node.Registry.Spec.Auth.ECR != nil {
			fmt.Fprintf(w, "ecr role: %s, from the service account's annotation: the node agent exchanges the pod's token with STS for it\n", role)
		}
	}
	if cluster != nil {
		served = true
		fmt.Fprintf(w, "node: %s (pattern %s), to every pod (Cluster)\n", cluster.Registry.Name, cluster.Pattern)
	}
	if secret != nil {
		served = true
		fmt.Fprintf(w, "pull secret: %s (pattern %s), added by the webhook to new pods of %s\n", secret.Registry.Name, secret.Pattern, p.namespace)
	}
	if first != nil {
		fmt.Fprintf(w, "registry: %s\n", first.Registry.Name) // the most specific of what the pod gets
	}
	if !served {
		fmt.Fprintln(w, "registry: none")
		fmt.Fprintln(w, "served: nothing")
		return &exitError{code: ExitNoMatch, err: fmt.Errorf("a pod of %s as %s gets no credentials for %s", p.namespace, p.serviceAccount, m.Image.Repository())}
	}
	return nil
}

func roleAnnotation(a map[string]string) string {
	if r := strings.TrimSpace(a[annotationRole]); r != "" {
		return r
	}
	return strings.TrimSpace(a[annotationEKSRole])
}
