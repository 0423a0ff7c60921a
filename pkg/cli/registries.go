package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/secrets"
)

func newRegistriesCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "registries",
		Aliases: []string{"registry", "reg"},
		Short:   "Add, list and remove registries (alone: list them)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return list(cmd.Context(), o)
		},
	}
	cmd.AddCommand(newAddCommand(o), newListCommand(o), newRemoveCommand(o))
	return cmd
}

// apply writes a request's Registry and source secret so that a failure leaves the cluster as it
// was: the Registry is checked by the API server first (a dry run), then the secret is written,
// then the Registry; if the Registry is refused after all, the secret is put back as it was. It
// returns the Registry's name.
func apply(ctx context.Context, o *options, c *Clients, req *addRequest) (string, error) {
	existing, err := findRegistry(ctx, c, req.name, req.host)
	if err != nil {
		return "", err
	}
	if existing != nil && req.name != "" && existing.Name != req.name {
		return "", badInput("host %s is already served by registry %q: use --name %s to update it, or remove it first", req.host, existing.Name, existing.Name)
	}
	name := req.name
	switch {
	case existing != nil:
		name = existing.Name
	case name == "":
		name = NameForHost(req.host)
	}
	reg, secret, err := desired(req, existing, name, o.namespace)
	if err != nil {
		return "", err
	}
	if err := checkServed(ctx, o, c, reg, req.force); err != nil {
		return "", err
	}
	var before *corev1.Secret
	if secret != nil {
		if before, err = getSecret(ctx, c, secret.Namespace, secret.Name); err != nil {
			return "", err
		}
		if before != nil && !secrets.MadeFor(before, name) {
			return "", notOurs(before, name)
		}
	}
	if err := writeRegistry(ctx, c, reg, existing != nil, true); err != nil {
		return "", err
	}
	if secret != nil {
		if before == nil {
			if err := ensureNamespace(ctx, c, o.namespace); err != nil {
				return "", err
			}
		}
		if err := applySecret(ctx, c, secret); err != nil {
			return "", err
		}
	}
	if err := writeRegistry(ctx, c, reg, existing != nil, false); err != nil {
		if secret != nil {
			if uerr := restoreSecret(context.WithoutCancel(ctx), c, secret, before); uerr != nil {
				return "", fmt.Errorf("%w; and putting secret %s/%s back failed: %w", err, secret.Namespace, secret.Name, uerr)
			}
		}
		return "", err
	}
	// A source secret pullpass made that the registry no longer uses goes (ECR keys given up
	// for the default chain).
	if existing != nil {
		for _, ref := range secretRefs(existing) {
			if !slices.Contains(secretRefs(reg), ref) {
				if err := deleteSourceSecret(ctx, o, c, ref, existing.Name); err != nil {
					fmt.Fprintf(o.streams.ErrOut, "warning: %v\n", err)
				}
			}
		}
	}
	verb := "created"
	if existing != nil {
		verb = "updated"
	}
	fmt.Fprintf(o.streams.Out, "registry %s %s (%s)\n", name, verb, describe(reg))
	return name, nil
}

// writeRegistry creates or updates a Registry; with dryRun the API server only checks it.
func writeRegistry(ctx context.Context, c *Clients, reg *v1alpha1.Registry, exists, dryRun bool) error {
	var dr []string
	if dryRun {
		dr = []string{metav1.DryRunAll}
	}
	// The keeper writes the status as it goes, so an update may meet a newer version: read it
	// again and re-apply the spec.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !exists {
			_, err := c.Registries.Create(ctx, reg, metav1.CreateOptions{FieldManager: fieldManager, DryRun: dr})
			return err
		}
		cur, err := c.Registries.Get(ctx, reg.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec, cur.Labels = reg.Spec, reg.Labels
		_, err = c.Registries.Update(ctx, cur, metav1.UpdateOptions{FieldManager: fieldManager, DryRun: dr})
		return err
	})
	switch {
	case err == nil:
		return nil
	case apierrors.IsInvalid(err) || apierrors.IsAlreadyExists(err):
		return badInput("registry %q: %w", reg.Name, err)
	}
	return fmt.Errorf("registry %q: %w", reg.Name, err)
}

const fieldManager = "pullpass-cli"

// sourceLabels are the labels of a source secret pullpass makes for a registry. They are how the
// CLI knows its own (secrets.MadeFor): role source and the registry's name, checked before any
// update or delete. managed-by alone is not enough: the webhook's TLS Secret and the pull
// secrets carry it too.
func sourceLabels(registry string) map[string]string {
	return map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRegistry: registry, secrets.LabelRole: secrets.RoleSource}
}

// dockerConfigFor is a source secret's .dockerconfigjson: the keys a pull secret would have.
func dockerConfigFor(host, username, password string) ([]byte, error) {
	cfg := &dockerconfig.Config{Auths: map[string]dockerconfig.AuthEntry{}}
	for _, k := range pullsecret.Keys(host) {
		cfg.Auths[k] = dockerconfig.AuthEntry{Username: username, Password: password}
	}
	return cfg.Marshal()
}

// secretRefs are the secrets a registry's source reads.
func secretRefs(r *v1alpha1.Registry) []v1alpha1.SecretReference {
	var out []v1alpha1.SecretReference
	a := r.Spec.Auth
	if a.SecretRef != nil {
		out = append(out, *a.SecretRef)
	}
	if a.DockerHub != nil {
		out = append(out, a.DockerHub.SecretRef)
	}
	if a.ECR != nil && a.ECR.AccessKeySecretRef != nil {
		out = append(out, *a.ECR.AccessKeySecretRef)
	}
	return out
}

func getSecret(ctx context.Context, c *Clients, namespace, name string) (*corev1.Secret, error) {
	s, err := c.Kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, err)
	}
	return s, nil
}

// notOurs refuses to write over a secret the CLI did not make for registry.
func notOurs(s *corev1.Secret, registry string) error {
	return badInput("secret %s/%s exists and is not the source secret pullpass made for registry %s; choose another --name", s.Namespace, s.Name, registry)
}

// restoreSecret puts a secret back as it was before add wrote it: gone if it did not exist.
func restoreSecret(ctx context.Context, c *Clients, written, before *corev1.Secret) error {
	if before == nil {
		cur, err := getSecret(ctx, c, written.Namespace, written.Name)
		if err != nil || cur == nil || !secrets.MadeFor(cur, written.Labels[secrets.LabelRegistry]) {
			return err
		}
		return deleteExactly(ctx, c, cur)
	}
	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: before.Name, Namespace: before.Namespace, Labels: before.Labels, Annotations: before.Annotations},
		Type: before.Type, Data: before.Data}
	return applySecret(ctx, c, old)
}

// deleteSourceSecret deletes the source secret the CLI made for registry, unless another
// Registry names it. Anything else is left alone: a user's own secret, pullpass's other Secrets
// (the webhook's TLS Secret, pull secrets), a source made for another registry.
func deleteSourceSecret(ctx context.Context, o *options, c *Clients, ref v1alpha1.SecretReference, registry string) error {
	s, err := getSecret(ctx, c, ref.Namespace, ref.Name)
	if err != nil || s == nil || !secrets.MadeFor(s, registry) {
		return err
	}
	regs, err := c.Registries.List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing registries before deleting secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	for i := range regs.Items {
		if r := &regs.Items[i]; r.Name != registry && slices.Contains(secretRefs(r), ref) {
			fmt.Fprintf(o.streams.ErrOut, "secret %s/%s kept: registry %s uses it too\n", ref.Namespace, ref.Name, r.Name)
			return nil
		}
	}
	return deleteExactly(ctx, c, s)
}

// deleteExactly deletes the version of a secret that was checked, not one written since.
func deleteExactly(ctx context.Context, c *Clients, s *corev1.Secret) error {
	err := c.Kube.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

func applySecret(ctx context.Context, c *Clients, s *corev1.Secret) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error { return applySecretOnce(ctx, c, s) })
}

func applySecretOnce(ctx context.Context, c *Clients, s *corev1.Secret) error {
	secretsAPI := c.Kube.CoreV1().Secrets(s.Namespace)
	cur, err := secretsAPI.Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secretsAPI.Create(ctx, s, metav1.CreateOptions{FieldManager: fieldManager})
	case err == nil:
		if !secrets.MadeFor(cur, s.Labels[secrets.LabelRegistry]) {
			return notOurs(cur, s.Labels[secrets.LabelRegistry])
		}
		if cur.Type != s.Type {
			// The type of a Secret is immutable: replace it, the version checked and no other
			// (a conflict reads it again).
			err = secretsAPI.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}})
			if err == nil || apierrors.IsNotFound(err) {
				_, err = secretsAPI.Create(ctx, s, metav1.CreateOptions{FieldManager: fieldManager})
			}
			if apierrors.IsAlreadyExists(err) {
				err = apierrors.NewConflict(corev1.Resource("secrets"), s.Name, err)
			}
			break
		}
		cur.Data, cur.Labels = s.Data, s.Labels
		_, err = secretsAPI.Update(ctx, cur, metav1.UpdateOptions{FieldManager: fieldManager})
	}
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

func ensureNamespace(ctx context.Context, c *Clients, ns string) error {
	_, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return nil
}

// findRegistry finds the registry named name, or else one whose hosts include host, in any
// spelling.
func findRegistry(ctx context.Context, c *Clients, name, host string) (*v1alpha1.Registry, error) {
	if name != "" {
		r, err := c.Registries.Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			return r, nil
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("registry %q: %w", name, err)
		}
	}
	if host == "" {
		return nil, nil
	}
	list, err := c.Registries.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing registries: %w", err)
	}
	for i := range list.Items {
		if slices.ContainsFunc(list.Items[i].Spec.Hosts, func(h string) bool { return sameHost(h, host) }) {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

func newListCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List registries: SERVER, NAME, SOURCE, USERNAME, SCOPE, NAMESPACES, READY, VERIFIED, EXPIRES",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return list(cmd.Context(), o)
		},
	}
}

func list(ctx context.Context, o *options) error {
	c, err := o.getClients()
	if err != nil {
		return err
	}
	regs, err := c.Registries.List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing registries: %w", err)
	}
	sort.Slice(regs.Items, func(i, j int) bool { return regs.Items[i].Name < regs.Items[j].Name })
	w := tabwriter.NewWriter(o.streams.Out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "SERVER\tNAME\tSOURCE\tUSERNAME\tSCOPE\tNAMESPACES\tREADY\tVERIFIED\tEXPIRES")
	for i := range regs.Items {
		r := &regs.Items[i]
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.Join(r.Spec.Hosts, ","), r.Name, sourceOf(r),
			usernameOf(ctx, c, r), scopeOf(r), namespacesOf(r), readyOf(r), verifiedOf(r), expiresOf(r))
	}
	return w.Flush()
}

// scopeOf is the scope, with "/Node" for a Namespaced registry the node delivers, and the
// service accounts it is restricted to.
func scopeOf(r *v1alpha1.Registry) string {
	s := string(r.Spec.EffectiveScope())
	if r.Spec.EffectiveScope() == v1alpha1.ScopeNamespaced && r.Spec.EffectiveDelivery() == v1alpha1.DeliveryNode {
		s += "/Node"
		if sa := serviceAccountsOf(r); sa != "" {
			s += "(" + sa + ")"
		}
	}
	return s
}

// serviceAccountsOf says which service accounts a registry is restricted to ("" for all).
func serviceAccountsOf(r *v1alpha1.Registry) string {
	sa := r.Spec.ServiceAccounts
	if sa == nil {
		return ""
	}
	parts := slices.Clone(sa.Names)
	if sa.Annotated {
		parts = append(parts, "annotated")
	}
	return strings.Join(parts, ",")
}

func sourceOf(r *v1alpha1.Registry) string {
	if s := r.Spec.Auth.Sources(); len(s) == 1 {
		return s[0]
	}
	return "<invalid>"
}

// namespacesOf says whom a registry serves: "*" (every opted-in namespace, or every pod for
// Cluster scope), the names it is restricted to, or its selector.
func namespacesOf(r *v1alpha1.Registry) string {
	sel := r.Spec.NamespaceSelector
	if sel == nil {
		return "*"
	}
	if len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 1 {
		if e := sel.MatchExpressions[0]; e.Key == corev1.LabelMetadataName && e.Operator == metav1.LabelSelectorOpIn {
			return strings.Join(e.Values, ",")
		}
	}
	return metav1.FormatLabelSelector(sel)
}

// usernameOf reads the username (for ECR, the access key ID) from the registry's source secret,
// or says why it cannot. It never reads out a password.
func usernameOf(ctx context.Context, c *Clients, r *v1alpha1.Registry) string {
	a := r.Spec.Auth
	var ref *v1alpha1.SecretReference
	switch {
	case a.SecretRef != nil:
		ref = a.SecretRef
	case a.DockerHub != nil:
		ref = &a.DockerHub.SecretRef
	case a.ECR != nil && a.ECR.AccessKeySecretRef != nil:
		ref = a.ECR.AccessKeySecretRef
	case a.ECR != nil:
		return "<aws default chain>"
	default:
		return "-"
	}
	s, err := c.Kube.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "<secret missing>"
	case apierrors.IsForbidden(err):
		return "<forbidden>"
	case err != nil:
		return "<unknown>"
	}
	var u string
	switch {
	case a.SecretRef != nil:
		if u, err = secrets.Username(s, r.Spec.Hosts); err != nil {
			return "<invalid secret>"
		}
	case a.DockerHub != nil:
		u = string(s.Data["username"])
	default:
		u = string(s.Data["aws_access_key_id"])
	}
	if u == "" {
		return "<invalid secret>"
	}
	return u
}

func readyOf(r *v1alpha1.Registry) string {
	c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil {
		return "Unknown"
	}
	if c.Status != metav1.ConditionTrue && c.Reason != "" {
		return string(c.Status) + " (" + c.Reason + ")"
	}
	return string(c.Status)
}

func expiresOf(r *v1alpha1.Registry) string {
	if r.Status.ExpiresAt == nil {
		return "-"
	}
	return r.Status.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")
}

func newRemoveCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "remove HOST|NAME",
		Aliases: []string{"rm", "delete"},
		Short:   "Remove a registry (or one host of it) and the source secret pullpass made for it",
		Long: `Remove a registry, by name or by one of its hosts in any spelling
("https://index.docker.io/v1/" is docker.io), and the source secret pullpass made for it unless
another registry names it too. When the registry has other hosts too, only the host given is
removed from it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return remove(cmd.Context(), o, args[0])
		},
	}
}

func remove(ctx context.Context, o *options, arg string) error {
	name := ""
	if dnsSubdomain(arg) == "" {
		name = arg
	}
	host, herr := match.Canonical(arg)
	if name == "" && herr != nil {
		return badInput("%q is neither a registry name nor a host: %v", arg, herr)
	}
	c, err := o.getClients()
	if err != nil {
		return err
	}
	r, err := findRegistry(ctx, c, name, host)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("no registry named %q or with host %s", arg, host)
	}
	if r.Name != arg && len(r.Spec.Hosts) > 1 {
		// A host of a registry with others: only that host goes.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := c.Registries.Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Hosts = slices.DeleteFunc(cur.Spec.Hosts, func(h string) bool { return sameHost(h, host) })
			_, err = c.Registries.Update(ctx, cur, metav1.UpdateOptions{FieldManager: fieldManager})
			return err
		})
		if err != nil {
			return fmt.Errorf("registry %q: %w", r.Name, err)
		}
		fmt.Fprintf(o.streams.Out, "host %s removed from registry %s\n", host, r.Name)
		return nil
	}
	if err := c.Registries.Delete(ctx, r.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("registry %q: %w", r.Name, err)
	}
	// Only a secret the CLI made for this registry, and no other registry names, is deleted.
	for _, ref := range secretRefs(r) {
		if err := deleteSourceSecret(ctx, o, c, ref, r.Name); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.streams.Out, "registry %s removed\n", r.Name)
	return nil
}

var notNameChars = regexp.MustCompile(`[^a-z0-9.-]+`)

// NameForHost derives a Registry name from a host pattern: "localhost:5443" → "localhost-5443",
// "*.azurecr.io" → "wildcard.azurecr.io", "ghcr.io/team" → "ghcr.io-team",
// "pullpass-reg:5000" → "registry-pullpass-reg-5000" (never a name of pullpass's own Secrets).
func NameForHost(host string) string {
	n := strings.ToLower(strings.ReplaceAll(host, "*", "wildcard"))
	n = notNameChars.ReplaceAllString(n, "-")
	n = strings.Trim(n, "-.")
	if secrets.Reserved(n) {
		// The source secret takes the registry's name, and pullpass-* names are pullpass's own.
		n = "registry-" + n
	}
	if len(n) > maxRegistryName {
		// Cut, and told apart from other hosts cut alike by a hash of the whole.
		sum := sha256.Sum256([]byte(host))
		n = strings.Trim(n[:maxRegistryName-9], "-.") + "-" + hex.EncodeToString(sum[:4])
	}
	if n == "" {
		n = "registry"
	}
	return n
}

// maxRegistryName is the longest Registry name: it is the pullpass.io/registry label value of
// the registry's pull secrets, and label values are at most 63 characters (the CRD refuses more).
const maxRegistryName = 63

// registryName says what is wrong with a Registry name, or "".
func registryName(s string) string {
	if msg := dnsSubdomain(s); msg != "" {
		return msg
	}
	if len(s) > maxRegistryName {
		return fmt.Sprintf("at most %d characters: it is the value of the pullpass.io/registry label on the registry's pull secrets, and a label value is at most %d characters", maxRegistryName, maxRegistryName)
	}
	return ""
}

var dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func dnsSubdomain(s string) string {
	if len(s) > 253 || !dnsSubdomainRE.MatchString(s) {
		return "must be a DNS subdomain: lower case letters, digits, '-' and '.'"
	}
	return ""
}
