package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/secrets"
)

func newRegistriesCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "registries",
		Aliases: []string{"registry", "reg"},
		Short:   "Add, list and remove registries",
	}
	cmd.AddCommand(newAddCommand(o), newListCommand(o), newRemoveCommand(o))
	return cmd
}

type addOptions struct {
	name             string
	scope            string
	username         string
	passwordStdin    bool
	fromDockerConfig string
	noWait           bool
	waitTimeout      time.Duration
}

func newAddCommand(o *options) *cobra.Command {
	a := &addOptions{}
	cmd := &cobra.Command{
		Use:   "add HOST",
		Short: "Create or update a registry and its source secret",
		Long: `Create or update a registry and its source secret.

HOST is a host pattern with the kubelet's matchImages rules: host[:port][/path], '*' globbing
within one dot-separated label ("*.azurecr.io"). Running add again for the same host or name
updates the registry and its secret; it never creates a second one.

Credentials come from --username with the password on standard input:
  echo "$TOKEN" | pullpass registries add ghcr.io --username bob --password-stdin
or from a docker config written by docker login:
  pullpass registries add ghcr.io --from-docker-config ~/.docker/config.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.name, "name", "", "name of the Registry object (default: derived from HOST)")
	f.StringVar(&a.scope, "scope", string(v1alpha1.ScopeNamespaced), "Namespaced (pull secrets in opted-in namespaces) or Cluster (served to every pod by the node agent)")
	f.StringVar(&a.username, "username", "", "registry username")
	f.BoolVar(&a.passwordStdin, "password-stdin", false, "read the password or token from standard input")
	f.StringVar(&a.fromDockerConfig, "from-docker-config", "", "take the credentials for HOST from this docker config.json")
	f.BoolVar(&a.noWait, "no-wait", false, "do not wait for pullpass to log in to the registry with the credentials")
	f.DurationVar(&a.waitTimeout, "wait-timeout", 10*time.Second, "how long to wait for pullpass's login to the registry")
	return cmd
}

func (a *addOptions) run(ctx context.Context, o *options, host string) error {
	if _, err := match.ParsePattern(host); err != nil {
		return badInput("%w", err)
	}
	scope := v1alpha1.Scope(a.scope)
	if scope != v1alpha1.ScopeNamespaced && scope != v1alpha1.ScopeCluster {
		return badInput("--scope must be Namespaced or Cluster, not %q", a.scope)
	}
	username, password, err := a.credentials(o.streams.In, host)
	if err != nil {
		return err
	}
	if a.name != "" {
		if msgs := dnsSubdomain(a.name); msgs != "" {
			return badInput("--name %q: %s", a.name, msgs)
		}
	}
	c, err := o.getClients()
	if err != nil {
		return err
	}
	existing, err := findRegistry(ctx, c, a.name, host)
	if err != nil {
		return err
	}
	if existing != nil && a.name != "" && existing.Name != a.name {
		return badInput("host %s is already served by registry %q: use --name %s to update it, or remove it first", host, existing.Name, existing.Name)
	}
	name := a.name
	switch {
	case existing != nil:
		name = existing.Name
	case name == "":
		name = NameForHost(host)
	}
	if err := ensureNamespace(ctx, c, o.namespace); err != nil {
		return err
	}
	cfg, err := dockerconfig.ForHost(dockerconfig.NormalizeKey(host), username, password).Marshal()
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: o.namespace,
			Labels:    map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRegistry: name, secrets.LabelRole: secrets.RoleSource},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}
	if err := applySecret(ctx, c, secret); err != nil {
		return err
	}
	verb := "updated"
	var reg *v1alpha1.Registry
	// The controller writes the status as it goes, so an update may meet a newer version:
	// read it again and re-apply.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		reg = &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if existing != nil {
			cur, err := c.Registries.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			reg = cur
		}
		if !contains(reg.Spec.Hosts, host) {
			reg.Spec.Hosts = append(reg.Spec.Hosts, host)
		}
		reg.Spec.Scope = scope
		reg.Spec.Auth = v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: name, Namespace: o.namespace}}
		if reg.Labels == nil {
			reg.Labels = map[string]string{}
		}
		reg.Labels[secrets.LabelManagedBy] = secrets.ManagedByValue
		if existing == nil {
			verb = "created"
			_, err := c.Registries.Create(ctx, reg, metav1.CreateOptions{FieldManager: "pullpass-cli"})
			return err
		}
		_, err := c.Registries.Update(ctx, reg, metav1.UpdateOptions{FieldManager: "pullpass-cli"})
		return err
	})
	if err != nil {
		return fmt.Errorf("registry %q: %w", name, err)
	}
	fmt.Fprintf(o.streams.Out, "registry %s %s (hosts %s, scope %s, secret %s/%s)\n", name, verb, strings.Join(reg.Spec.Hosts, ","), scope, o.namespace, name)
	if a.noWait {
		return nil
	}
	return waitVerified(ctx, o, c, name, a.waitTimeout)
}

// credentials reads the username and password from the flags, stdin or a docker config.
func (a *addOptions) credentials(stdin io.Reader, host string) (string, string, error) {
	switch {
	case a.fromDockerConfig != "" && (a.username != "" || a.passwordStdin):
		return "", "", badInput("use either --username with --password-stdin, or --from-docker-config, not both")
	case a.fromDockerConfig != "":
		data, err := os.ReadFile(a.fromDockerConfig)
		if err != nil {
			return "", "", badInput("reading docker config: %w", err)
		}
		cfg, err := dockerconfig.Parse(data)
		if err != nil {
			return "", "", badInput("%s: %w", a.fromDockerConfig, err)
		}
		e, ok := cfg.Lookup(host)
		if !ok {
			hosts := cfg.Hosts()
			if len(hosts) != 1 {
				return "", "", badInput("%s has no entry for %s (it has: %s)", a.fromDockerConfig, host, strings.Join(hosts, ", "))
			}
			e, _ = cfg.Lookup(hosts[0])
		}
		if e.Username == "" && e.Password == "" {
			return "", "", badInput("%s: the entry for %s has no username or password (credential helpers and identity tokens are not supported here)", a.fromDockerConfig, host)
		}
		return e.Username, e.Password, nil
	case a.username == "" || !a.passwordStdin:
		return "", "", badInput("credentials are required: --username U --password-stdin, or --from-docker-config FILE")
	}
	data, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		return "", "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	password := strings.TrimRight(string(data), "\r\n")
	if password == "" {
		return "", "", badInput("--password-stdin: standard input was empty")
	}
	return a.username, password, nil
}

func applySecret(ctx context.Context, c *Clients, s *corev1.Secret) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error { return applySecretOnce(ctx, c, s) })
}

func applySecretOnce(ctx context.Context, c *Clients, s *corev1.Secret) error {
	secretsAPI := c.Kube.CoreV1().Secrets(s.Namespace)
	cur, err := secretsAPI.Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secretsAPI.Create(ctx, s, metav1.CreateOptions{FieldManager: "pullpass-cli"})
	case err == nil:
		if cur.Labels[secrets.LabelManagedBy] != secrets.ManagedByValue {
			return fmt.Errorf("secret %s/%s exists and is not managed by pullpass; choose another --name", s.Namespace, s.Name)
		}
		if cur.Type != s.Type {
			// The type of a Secret is immutable: replace it.
			if err = secretsAPI.Delete(ctx, s.Name, metav1.DeleteOptions{}); err == nil {
				_, err = secretsAPI.Create(ctx, s, metav1.CreateOptions{FieldManager: "pullpass-cli"})
			}
			break
		}
		cur.Data, cur.Labels = s.Data, s.Labels
		_, err = secretsAPI.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "pullpass-cli"})
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

// findRegistry finds the registry named name, or else one whose hosts include host.
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
		if contains(list.Items[i].Spec.Hosts, host) {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

func newListCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List registries: SERVER, NAME, USERNAME, SCOPE, READY, VERIFIED, EXPIRES",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.getClients()
			if err != nil {
				return err
			}
			list, err := c.Registries.List(cmd.Context(), metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("listing registries: %w", err)
			}
			sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
			w := tabwriter.NewWriter(o.streams.Out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "SERVER\tNAME\tUSERNAME\tSCOPE\tREADY\tVERIFIED\tEXPIRES")
			for i := range list.Items {
				r := &list.Items[i]
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.Join(r.Spec.Hosts, ","), r.Name,
					usernameOf(cmd.Context(), c, r), r.Spec.EffectiveScope(), readyOf(r), verifiedOf(r), expiresOf(r))
			}
			return w.Flush()
		},
	}
}

// usernameOf reads the username from the registry's source secret, or says why it cannot.
func usernameOf(ctx context.Context, c *Clients, r *v1alpha1.Registry) string {
	ref := r.Spec.Auth.SecretRef
	if ref == nil {
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
	u, err := secrets.Username(s, r.Spec.Hosts)
	if err != nil {
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
		Short:   "Remove a registry and the source secret pullpass made for it",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := o.getClients()
			if err != nil {
				return err
			}
			r, err := findRegistry(ctx, c, args[0], args[0])
			if err != nil {
				return err
			}
			if r == nil {
				return fmt.Errorf("no registry named %q or with that host", args[0])
			}
			if err := c.Registries.Delete(ctx, r.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("registry %q: %w", r.Name, err)
			}
			// Only a secret pullpass made is deleted; a user's own secret is left alone.
			if ref := r.Spec.Auth.SecretRef; ref != nil {
				s, err := c.Kube.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
				if err == nil && s.Labels[secrets.LabelManagedBy] == secrets.ManagedByValue {
					if err := c.Kube.CoreV1().Secrets(ref.Namespace).Delete(ctx, ref.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
						return fmt.Errorf("secret %s/%s: %w", ref.Namespace, ref.Name, err)
					}
				}
			}
			fmt.Fprintf(o.streams.Out, "registry %s removed\n", r.Name)
			return nil
		},
	}
}

var notNameChars = regexp.MustCompile(`[^a-z0-9.-]+`)

// NameForHost derives a Registry name from a host pattern: "localhost:5443" → "localhost-5443",
// "*.azurecr.io" → "wildcard.azurecr.io", "ghcr.io/team" → "ghcr.io-team".
func NameForHost(host string) string {
	n := strings.ToLower(strings.ReplaceAll(host, "*", "wildcard"))
	n = notNameChars.ReplaceAllString(n, "-")
	n = strings.Trim(n, "-.")
	if len(n) > 253 {
		n = strings.Trim(n[:253], "-.")
	}
	if n == "" {
		n = "registry"
	}
	return n
}

var dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func dnsSubdomain(s string) string {
	if len(s) > 253 || !dnsSubdomainRE.MatchString(s) {
		return "must be a DNS subdomain: lower case letters, digits, '-' and '.'"
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
