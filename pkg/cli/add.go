package cli

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/registrytable"
	"github.com/pullpass/pullpass/pkg/secrets"
)

type addOptions struct {
	name              string
	scope             string
	username          string
	passwordStdin     bool
	fromDockerConfig  string
	awsAccessKeyID    string
	roleARN           string
	region            string
	forceECR          bool
	namespaces        []string
	namespaceSelector string
	delivery          string
	serviceAccounts   []string
	annotatedSAs      bool
	noWait            bool
	waitTimeout       time.Duration
	force             bool

	flags *cobra.Command
	// passwordArg is set when the password came as an argument: warned about once all is read.
	passwordArg bool
}

func newAddCommand(o *options) *cobra.Command {
	a := &addOptions{}
	cmd := &cobra.Command{
		Use:   "add HOST [USERNAME [PASSWORD]]",
		Short: "Create or update a registry and its source secret",
		Long: `Create or update a registry and its source secret.

HOST is a host pattern with the kubelet's matchImages rules, host[:port][/path], '*' globbing
within one dot-separated label ("*.azurecr.io"). It may be pasted as docker writes it:
"https://ghcr.io/", "https://index.docker.io/v1/". Docker Hub is docker.io, whichever of its
names is given. Running add again for the same host or name updates the registry and its
secret; it never creates a second one.

Credentials, as docker login takes them:
  pullpass registries add ghcr.io                        # asks Username: and Password: on a terminal
  pullpass registries add ghcr.io bob                    # asks Password:
  echo "$TOKEN" | pullpass registries add ghcr.io --username bob --password-stdin
  pullpass registries add registry.example.org bob PASSWORD   # visible to other users: avoid
  pullpass registries add ghcr.io --from-docker-config ~/.docker/config.json
--from-docker-config reads docker's config.json (credHelpers and credsStore run the helper as
docker does), podman's and skopeo's auth.json, and a registry secret's JSON such as Koyeb's.

Docker Hub (docker.io) credentials become a Docker Hub source: a username and a personal
access token.

An ECR host (ACCOUNT.dkr.ecr.REGION.amazonaws.com, FIPS, China, GovCloud) becomes an ECR source,
whose tokens pullpass fetches and renews:
  pullpass registries add 123456789012.dkr.ecr.us-east-1.amazonaws.com
      no keys: the AWS default credential chain of pullpass's webhook and node agents
      (IRSA, EKS Pod Identity, the instance role)
  pullpass registries add 123456789012.dkr.ecr.us-east-1.amazonaws.com AKIA... SECRET
  echo "$SECRET" | pullpass registries add HOST --aws-access-key-id AKIA...
      IAM keys of another account, kept in the source secret; --role-arn assumes a role with them

Who is served: --scope Namespaced (pull secrets in opted-in namespaces, optionally only those
of --namespaces or --namespace-selector) or Cluster (every pod, through the node agent).
--delivery Node serves a Namespaced registry from the node instead, with no Secret anywhere: to
the pods of the selected namespaces (no opt-in needed), and with --service-accounts or
--service-accounts-annotated only to those service accounts, as each pod's service account token
proves to the node (the chart's agent.serviceAccountTokens.enabled, kubelets 1.34+). add refuses
a registry that nothing in the cluster would serve (delivery Node while the agents are not in
token mode, scope Cluster with no agents), as the chart's ConfigMap pullpass-node-delivery says;
--force applies it anyway.

add then waits (--wait-timeout, 10s) for pullpass's login to the registry with the credentials
just written and reports like docker login: "Login Succeeded", or the registry's refusal (exit 1;
the registry stays, so another add can fix the password). --no-wait skips this.

Exit status: 0 done, 1 the cluster or the registry refused or failed, 2 invalid input (nothing
was changed).`,
		Args: cobra.RangeArgs(1, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.flags = cmd
			return a.run(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.name, "name", "", "name of the Registry object (default: derived from HOST)")
	f.StringVar(&a.scope, "scope", string(v1alpha1.ScopeNamespaced), "Namespaced (pull secrets in opted-in namespaces) or Cluster (served to every pod by the node agent); an update keeps the registry's unless given")
	f.StringVarP(&a.username, "username", "u", "", "registry username")
	f.BoolVar(&a.passwordStdin, "password-stdin", false, "read the password or token from standard input")
	f.StringVar(&a.fromDockerConfig, "from-docker-config", "", "take the credentials for HOST from this docker config.json, auth.json or registry secret JSON")
	f.StringVar(&a.awsAccessKeyID, "aws-access-key-id", "", "ECR: IAM access key ID; the secret access key is read from standard input")
	f.StringVar(&a.roleARN, "role-arn", "", "ECR: IAM role to assume (for another account's registry)")
	f.StringVar(&a.region, "region", "", "ECR: AWS region (default: from the host)")
	f.BoolVar(&a.forceECR, "ecr", false, "ECR: make an ECR source for a host that does not look like one (needs --region)")
	f.StringSliceVar(&a.namespaces, "namespaces", nil, "serve only these namespaces (Namespaced scope); '' serves every opted-in namespace again")
	f.BoolVar(&a.noWait, "no-wait", false, "do not wait for pullpass to log in to the registry with the credentials")
	f.DurationVar(&a.waitTimeout, "wait-timeout", 10*time.Second, "how long to wait for pullpass's login to the registry")
	f.StringVar(&a.namespaceSelector, "namespace-selector", "", "serve only namespaces with these labels (Namespaced scope), e.g. 'team=shop,env in (prod,stage)'")
	f.StringVar(&a.delivery, "delivery", "", "PullSecret (pull secrets written by the webhook) or Node (served by the node agent through each pod's service account token, no Secret); default PullSecret for Namespaced, Node for Cluster; an update keeps the registry's unless given")
	f.StringSliceVar(&a.serviceAccounts, "service-accounts", nil, "delivery Node: serve only these service accounts of the selected namespaces; '' serves every one again")
	f.BoolVar(&a.annotatedSAs, "service-accounts-annotated", false, "delivery Node: also serve service accounts annotated pullpass.io/registries with this registry's name")
	f.BoolVar(&a.force, "force", false, "apply a registry that nothing in the cluster would serve (delivery Node without the agents in token mode, scope Cluster without agents), which add otherwise refuses")
	return cmd
}

// sourceKind is the credential source add makes.
type sourceKind string

const (
	sourceSecret    sourceKind = "secret"
	sourceDockerHub sourceKind = "dockerHub"
	sourceECR       sourceKind = "ecr"
)

// addRequest is what add was asked for, read from the arguments, flags, files and prompts
// before anything reaches the cluster.
type addRequest struct {
	host     string // canonical
	written  string
	name     string
	scope    v1alpha1.Scope
	setScope bool // --scope given: an update keeps the registry's scope otherwise
	kind     sourceKind
	username string
	password string
	ecr      v1alpha1.ECRSource
	// selector replaces the registry's namespaceSelector when setSelector.
	selector    *metav1.LabelSelector
	setSelector bool
	// delivery replaces the registry's when setDelivery; serviceAccounts its restriction when
	// setServiceAccounts.
	delivery       v1alpha1.Delivery
	setDelivery    bool
	saNames        []string
	setSANames     bool
	saAnnotated    bool
	setSAAnnotated bool
	// force applies a registry that nothing in the cluster would serve.
	force bool
}

func (a *addOptions) changed(flag string) bool {
	return a.flags != nil && a.flags.Flags().Changed(flag)
}

func (a *addOptions) run(ctx context.Context, o *options, args []string) error {
	req, err := a.request(o, args)
	if err != nil {
		return err
	}
	if a.passwordArg {
		fmt.Fprintln(o.streams.ErrOut, "WARNING! A password on the command line is visible to other users of this machine (ps, shell history). Use --password-stdin, or leave it out to be asked for it.")
	}
	c, err := o.getClients()
	if err != nil {
		return err
	}
	name, err := apply(ctx, o, c, req)
	if err != nil || a.noWait {
		return err
	}
	return waitVerified(ctx, o, c, name, a.waitTimeout)
}

// request reads and checks everything add was given. Nothing here touches the cluster.
func (a *addOptions) request(o *options, args []string) (*addRequest, error) {
	host, err := registryHost(args[0])
	if err != nil {
		return nil, err
	}
	req := &addRequest{host: host, written: args[0], name: a.name, force: a.force}
	if a.name != "" {
		if msg := registryName(a.name); msg != "" {
			return nil, badInput("--name %q: %s", a.name, msg)
		}
	}
	req.setScope = a.changed("scope")
	switch strings.ToLower(a.scope) {
	case "namespaced":
		req.scope = v1alpha1.ScopeNamespaced
	case "cluster":
		req.scope = v1alpha1.ScopeCluster
	default:
		return nil, badInput("--scope must be Namespaced or Cluster, not %q", a.scope)
	}
	if err := a.readSelector(req); err != nil {
		return nil, err
	}
	if err := a.readDelivery(req); err != nil {
		return nil, err
	}
	hostOnly, _, _ := strings.Cut(host, "/")
	ecrHost, ecrErr := ecr.ParseHost(hostOnly)
	ecrFlags := a.region != "" || a.roleARN != "" || a.awsAccessKeyID != ""
	if ecrErr != nil && ecrFlags && !a.forceECR {
		return nil, badInput("%s is not an ECR host (ACCOUNT.dkr.ecr.REGION.amazonaws.com): --region, --role-arn and --aws-access-key-id are for ECR sources; add --ecr to make one for this host", host)
	}
	switch {
	case ecrErr == nil || a.forceECR:
		req.kind = sourceECR
		if err := a.readECR(o, req, args, ecrHost, ecrErr); err != nil {
			return nil, err
		}
		return req, nil
	case hostOnly == match.DockerHub:
		req.kind = sourceDockerHub
	default:
		req.kind = sourceSecret
	}
	req.username, req.password, err = a.credentials(o, req, args)
	return req, err
}

// registryHost reads HOST as a canonical pattern, refusing what cannot be a registry: the
// kubelet reads the first part of an image as a registry only when it has a '.' or a ':' or is
// localhost ("bob/app" is Docker Hub's), so "bob" as HOST can never serve an image.
func registryHost(written string) (string, error) {
	host, err := match.Canonical(written)
	if err != nil {
		return "", badInput("%q is not a registry host: %w", written, err)
	}
	hostport, _, _ := strings.Cut(host, "/")
	if !strings.ContainsAny(hostport, ".:*") && hostport != "localhost" {
		return "", badInput("%q is not a registry host: a registry's host has a '.' or a ':' or is localhost (an image \"%s/app\" is on Docker Hub, docker.io)", written, hostport)
	}
	return host, nil
}

// readSelector reads --namespaces and --namespace-selector into a namespaceSelector.
func (a *addOptions) readSelector(req *addRequest) error {
	if !a.changed("namespaces") && !a.changed("namespace-selector") {
		return nil
	}
	req.setSelector = true
	var sel *metav1.LabelSelector
	if strings.TrimSpace(a.namespaceSelector) != "" {
		s, err := metav1.ParseToLabelSelector(a.namespaceSelector)
		if err != nil {
			return badInput("--namespace-selector %q: %v", a.namespaceSelector, err)
		}
		sel = s
	}
	var names []string
	for _, n := range a.namespaces {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
			return badInput("--namespaces: %q is not a namespace name: %s", n, strings.Join(msgs, "; "))
		}
		names = append(names, n)
	}
	if len(names) > 0 {
		if sel == nil {
			sel = &metav1.LabelSelector{}
		}
		slices.Sort(names)
		sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: slices.Compact(names)})
	}
	if sel != nil && req.scope == v1alpha1.ScopeCluster {
		return badInput("--namespaces and --namespace-selector restrict a Namespaced registry; a Cluster registry is served to every pod by the node agent")
	}
	req.selector = sel
	return nil
}

// readDelivery reads --delivery, --service-accounts and --service-accounts-annotated.
func (a *addOptions) readDelivery(req *addRequest) error {
	if req.setDelivery = a.changed("delivery"); req.setDelivery {
		switch strings.ToLower(a.delivery) {
		case "pullsecret":
			req.delivery = v1alpha1.DeliveryPullSecret
		case "node":
			req.delivery = v1alpha1.DeliveryNode
		case "":
		default:
			return badInput("--delivery must be PullSecret or Node, not %q", a.delivery)
		}
	}
	req.setSAAnnotated, req.saAnnotated = a.changed("service-accounts-annotated"), a.annotatedSAs
	if req.setSANames = a.changed("service-accounts"); !req.setSANames {
		return nil
	}
	for _, n := range a.serviceAccounts {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if msg := dnsSubdomain(n); msg != "" {
			return badInput("--service-accounts: %q is not a service account name: %s", n, msg)
		}
		req.saNames = append(req.saNames, n)
	}
	slices.Sort(req.saNames)
	req.saNames = slices.Compact(req.saNames)
	return nil
}

// credentials reads a username and password: from the arguments, --username and
// --password-stdin, a config file, or the terminal. When none is given and there is no terminal
// to ask, it says which flags to use.
func (a *addOptions) credentials(o *options, req *addRequest, args []string) (string, string, error) {
	username, password, err := a.given(o, args)
	if err != nil || username != "" || a.fromDockerConfig != "" {
		return username, password, err
	}
	p := o.prompter()
	if p == nil {
		return "", "", badInput("no credentials for %s, and standard input is not a terminal to ask for them: give `add %s USERNAME` with the password on standard input (--password-stdin), --from-docker-config FILE, or `add %s USERNAME PASSWORD`", req.host, req.host, req.host)
	}
	if username, err = p.ReadLine("Username: "); err != nil {
		return "", "", err
	}
	if username = strings.TrimSpace(username); username == "" {
		return "", "", badInput("no username entered")
	}
	if password, err = p.ReadPassword("Password: "); err != nil {
		return "", "", err
	}
	if password == "" {
		return "", "", badInput("no password entered")
	}
	return username, password, nil
}

// given reads the credentials given on the command line, stdin or in a file: ("", "", nil) when
// there are none.
func (a *addOptions) given(o *options, args []string) (string, string, error) {
	username := a.username
	if len(args) > 1 {
		if username != "" {
			return "", "", badInput("give the username once: as an argument or with --username, not both")
		}
		username = args[1]
	}
	if a.fromDockerConfig != "" {
		if username != "" || a.passwordStdin {
			return "", "", badInput("use either a username and password, or --from-docker-config, not both")
		}
		host, _ := match.Canonical(args[0])
		return fromConfigFile(a.fromDockerConfig, host, o.streams.ErrOut)
	}
	if username == "" {
		if a.passwordStdin {
			return "", "", badInput("--password-stdin needs a username: `add HOST USERNAME --password-stdin` or --username")
		}
		return "", "", nil
	}
	switch {
	case len(args) == 3 && a.passwordStdin:
		return "", "", badInput("give the password once: as an argument or with --password-stdin, not both")
	case len(args) == 3:
		a.passwordArg = true
		if args[2] == "" {
			return "", "", badInput("the password argument is empty")
		}
		return username, args[2], nil
	case a.passwordStdin:
		password, err := readStdin(o.streams.In, "--password-stdin")
		return username, password, err
	}
	p := o.prompter()
	if p == nil {
		return "", "", badInput("no password given, and standard input is not a terminal to ask for it: pipe it with --password-stdin")
	}
	password, err := p.ReadPassword("Password: ")
	if err == nil && password == "" {
		err = badInput("no password entered")
	}
	return username, password, err
}

// readStdin reads a secret from standard input, without its trailing newline.
func readStdin(in io.Reader, what string) (string, error) {
	data, err := io.ReadAll(io.LimitReader(in, 1<<20))
	if err != nil {
		return "", fmt.Errorf("%s: reading standard input: %w", what, err)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return "", badInput("%s: standard input was empty", what)
	}
	return s, nil
}

var (
	accessKeyIDRE = regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{16}$`)
	secretKeyRE   = regexp.MustCompile(`^[A-Za-z0-9/+]{40}$`)
	regionRE      = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	roleARNRE     = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$`)
)

// readECR fills an ECR source: region and role from the flags, IAM keys from the arguments,
// --aws-access-key-id and stdin, or a config file; no keys means the AWS default chain.
func (a *addOptions) readECR(o *options, req *addRequest, args []string, h ecr.Host, hostErr error) error {
	req.ecr = v1alpha1.ECRSource{Region: a.region, RoleARN: a.roleARN}
	if a.region != "" && !regionRE.MatchString(a.region) {
		return badInput("--region %q is not an AWS region (like us-east-1)", a.region)
	}
	if hostErr != nil && a.region == "" {
		return badInput("%s is not an ECR host (ACCOUNT.dkr.ecr.REGION.amazonaws.com): give --region for an ECR source", req.host)
	}
	if hostErr == nil && a.region == h.Region {
		req.ecr.Region = "" // the host says it
	}
	if a.roleARN != "" && !roleARNRE.MatchString(a.roleARN) {
		return badInput("--role-arn %q is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", a.roleARN)
	}
	var id, secret string
	if a.awsAccessKeyID != "" {
		if len(args) > 1 || a.username != "" || a.fromDockerConfig != "" {
			return badInput("give the IAM keys once: --aws-access-key-id with the secret on standard input, or as USERNAME PASSWORD")
		}
		id = a.awsAccessKeyID
		if p := o.prompter(); p != nil && !a.passwordStdin {
			s, err := p.ReadPassword("AWS secret access key: ")
			if err != nil {
				return err
			}
			secret = s
		} else {
			s, err := readStdin(o.streams.In, "--aws-access-key-id")
			if err != nil {
				return err
			}
			secret = s
		}
	} else {
		var err error
		if id, secret, err = a.given(o, args); err != nil {
			return err
		}
	}
	if id == "" {
		fmt.Fprintf(o.streams.ErrOut, "no IAM keys given: pullpass's webhook and node agents will use the AWS default credential chain (IRSA, EKS Pod Identity, the instance role)\n")
		return nil
	}
	if err := checkIAMKeys(req.host, id, secret); err != nil {
		return err
	}
	req.username, req.password = id, secret
	return nil
}

// checkIAMKeys refuses credentials that are not IAM keys, saying what would happen with them.
// Neither is quoted: a secret pasted in the wrong place must not reach a terminal log.
func checkIAMKeys(host, id, secret string) error {
	switch {
	case id == "AWS":
		return badInput("%s is an ECR host and the username AWS means the password is an ECR token (aws ecr get-login-password): it expires within 12 hours and pullpass cannot renew it, so pulls would fail after that; give an IAM access key ID and secret access key instead, or no credentials to use the AWS default credential chain", host)
	case !accessKeyIDRE.MatchString(id):
		return badInput("%s is an ECR host, which takes no password: ECR tokens are fetched with IAM keys, and the username is not an IAM access key ID (AKIA and 16 capitals or digits), so every pull would fail; give ACCESS_KEY_ID SECRET_ACCESS_KEY, --aws-access-key-id ID with the secret on standard input, or no credentials to use the AWS default credential chain", host)
	case strings.HasPrefix(id, "ASIA"):
		return badInput("the access key ID is a temporary key (ASIA...), which needs a session token and expires within hours; give a long-term key (AKIA...), with --role-arn to assume a role")
	case !secretKeyRE.MatchString(secret):
		return badInput("the secret access key is not one: IAM secret access keys are 40 letters, digits, '/' and '+'")
	}
	return nil
}

// desired is the Registry and its source secret (nil: none) for a request, starting from the
// existing registry when there is one.
func desired(req *addRequest, existing *v1alpha1.Registry, name, namespace string) (*v1alpha1.Registry, *corev1.Secret, error) {
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if existing != nil {
		reg = existing.DeepCopy()
	}
	if !slices.ContainsFunc(reg.Spec.Hosts, func(h string) bool { return sameHost(h, req.host) }) {
		reg.Spec.Hosts = append(reg.Spec.Hosts, req.host)
	}
	if existing == nil || req.setScope {
		reg.Spec.Scope = req.scope
	}
	if req.setSelector {
		reg.Spec.NamespaceSelector = req.selector
	}
	if req.setDelivery {
		reg.Spec.Delivery = req.delivery
	}
	if req.setSANames || req.setSAAnnotated {
		sa := v1alpha1.ServiceAccountSelector{}
		if reg.Spec.ServiceAccounts != nil {
			sa = *reg.Spec.ServiceAccounts
		}
		if req.setSANames {
			sa.Names = req.saNames
		}
		if req.setSAAnnotated {
			sa.Annotated = req.saAnnotated
		}
		reg.Spec.ServiceAccounts = nil
		if len(sa.Names) > 0 || sa.Annotated {
			reg.Spec.ServiceAccounts = &sa
		}
	}
	if reg.Spec.ServiceAccounts != nil && (reg.Spec.EffectiveScope() != v1alpha1.ScopeNamespaced || reg.Spec.Delivery != v1alpha1.DeliveryNode) {
		return nil, nil, badInput("registry %s: --service-accounts and --service-accounts-annotated need --scope Namespaced --delivery Node: only the node tells service accounts apart", name)
	}
	if reg.Spec.Scope == v1alpha1.ScopeCluster && reg.Spec.NamespaceSelector != nil {
		return nil, nil, badInput("registry %s is restricted to namespaces (%s): a Cluster registry is served to every pod; clear it with --namespaces '' or keep --scope Namespaced", name, metav1.FormatLabelSelector(reg.Spec.NamespaceSelector))
	}
	if reg.Labels == nil {
		reg.Labels = map[string]string{}
	}
	reg.Labels[secrets.LabelManagedBy] = secrets.ManagedByValue
	ref := &v1alpha1.SecretReference{Name: name, Namespace: namespace}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: sourceLabels(name)},
		Type:       corev1.SecretTypeOpaque,
	}
	switch req.kind {
	case sourceECR:
		src := req.ecr
		reg.Spec.Auth = v1alpha1.RegistryAuth{ECR: &src}
		if req.username == "" {
			secret = nil
			break
		}
		src.AccessKeySecretRef = ref
		secret.StringData = map[string]string{"aws_access_key_id": req.username, "aws_secret_access_key": req.password}
	case sourceDockerHub:
		reg.Spec.Auth = v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: *ref}}
		secret.StringData = map[string]string{"username": req.username, "token": req.password}
	default:
		reg.Spec.Auth = v1alpha1.RegistryAuth{SecretRef: ref}
		data, err := dockerConfigFor(req.host, req.username, req.password)
		if err != nil {
			return nil, nil, err
		}
		secret.Type = corev1.SecretTypeDockerConfigJson
		secret.Data = map[string][]byte{corev1.DockerConfigJsonKey: data}
	}
	if secret != nil && secret.StringData != nil {
		secret.Data = map[string][]byte{}
		for k, v := range secret.StringData {
			secret.Data[k] = []byte(v)
		}
		secret.StringData = nil
	}
	if secret != nil && secrets.Reserved(secret.Name) {
		return nil, nil, badInput("registry %s: its source secret would be named %s, and names starting %s are pullpass's own Secrets (pull secrets, the webhook's TLS Secret); choose another --name", name, secret.Name, secrets.ReservedPrefix)
	}
	if err := registrytable.Validate(reg); err != nil {
		return nil, nil, badInput("%w", err)
	}
	return reg, secret, nil
}

// sourceDescription says where a registry's credentials come from, naming no credential.
func sourceDescription(reg *v1alpha1.Registry) string {
	var b strings.Builder
	a := reg.Spec.Auth
	switch {
	case a.ECR != nil:
		b.WriteString("ECR")
		if a.ECR.Region != "" {
			fmt.Fprintf(&b, " in %s", a.ECR.Region)
		}
		if ref := a.ECR.AccessKeySecretRef; ref != nil {
			fmt.Fprintf(&b, " with the IAM keys in secret %s/%s", ref.Namespace, ref.Name)
		} else {
			b.WriteString(" with the AWS default credential chain")
		}
		if a.ECR.RoleARN != "" {
			fmt.Fprintf(&b, ", assuming %s", a.ECR.RoleARN)
		}
	case a.DockerHub != nil:
		fmt.Fprintf(&b, "Docker Hub token in secret %s/%s", a.DockerHub.SecretRef.Namespace, a.DockerHub.SecretRef.Name)
	case a.SecretRef != nil:
		fmt.Fprintf(&b, "secret %s/%s", a.SecretRef.Namespace, a.SecretRef.Name)
	default:
		b.WriteString("none")
	}
	return b.String()
}

// sameHost reports whether two patterns are one, whatever their spelling.
func sameHost(a, b string) bool {
	ca, errA := match.Canonical(a)
	cb, errB := match.Canonical(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return ca == cb
}

// describe says in one line what a registry is, for add's output. It names no credential.
func describe(reg *v1alpha1.Registry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "hosts %s, scope %s, ", strings.Join(reg.Spec.Hosts, ","), reg.Spec.EffectiveScope())
	if reg.Spec.EffectiveScope() == v1alpha1.ScopeNamespaced && reg.Spec.EffectiveDelivery() == v1alpha1.DeliveryNode {
		b.WriteString("delivered by the node, ")
		if sa := serviceAccountsOf(reg); sa != "" {
			fmt.Fprintf(&b, "service accounts %s, ", sa)
		}
	}
	b.WriteString("source " + sourceDescription(reg))
	if sel := reg.Spec.NamespaceSelector; sel != nil {
		fmt.Fprintf(&b, ", namespaces %s", namespacesOf(reg))
	}
	return b.String()
}
