// Package v1alpha1 holds the pullpass.io/v1alpha1 API: the cluster-scoped Registry, one row of
// the registry table that maps image hosts to a credential source.
//
// The CRD manifest (crd/pullpass.io_registries.yaml) and zz_generated.deepcopy.go are written
// by controller-gen from the markers below: edit them here and run `make generate`.
//
// +groupName=pullpass.io
// +kubebuilder:object:generate=true
package v1alpha1

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scope says who is served a registry's credentials.
//
// +kubebuilder:validation:Enum=Namespaced;Cluster
type Scope string

const (
	// ScopeNamespaced: the webhook adds a pull secret to the pods of opted-in namespaces.
	ScopeNamespaced Scope = "Namespaced"
	// ScopeCluster: the node agent serves the credentials to the kubelet, for every pod.
	ScopeCluster Scope = "Cluster"
)

// Delivery says how a registry's credentials reach the kubelet.
//
// +kubebuilder:validation:Enum=PullSecret;Node
type Delivery string

const (
	// DeliveryPullSecret: the webhook writes a pull secret into each served namespace and adds
	// it to new pods (Namespaced scope only).
	DeliveryPullSecret Delivery = "PullSecret"
	// DeliveryNode: the node agent serves the kubelet through the credential provider plugin,
	// with no Secret anywhere. With Namespaced scope, only to the pods of the selected
	// namespaces (and service accounts), told apart by the pod's service account token that the
	// kubelet hands the plugin (KEP-4412).
	DeliveryNode Delivery = "Node"
)

// ServiceAccountRegistriesAnnotation on a ServiceAccount lists (comma-separated) the registries
// whose serviceAccounts.annotated lets it in.
const ServiceAccountRegistriesAnnotation = "pullpass.io/registries"

// Condition types and reasons of Registry.status.
const (
	ConditionReady = "Ready"
	// ConditionVerified says whether the registry accepted a login with the current credentials
	// (GET /v2/ and, for Bearer registries, a pull-scope token), checked without pulling anything.
	ConditionVerified = "Verified"
	// ConditionServed says whether anything delivers the registry's credentials: the webhook's
	// pull secrets (delivery PullSecret), or node agents able to serve it (delivery Node). When
	// it is False, Ready is False too, with the same reason: credentials nobody delivers are of
	// no use to any pod.
	ConditionServed = "Served"
)

// Registry maps image host patterns to a credential source.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=reg,categories=pullpass
// +kubebuilder:subresource:status
// +kubebuilder:metadata:labels="app.kubernetes.io/name=pullpass"
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.hosts`
// +kubebuilder:printcolumn:name="Scope",type=string,JSONPath=`.spec.scope`
// +kubebuilder:printcolumn:name="Delivery",type=string,priority=1,JSONPath=`.spec.delivery`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Served",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Served")].status`
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.conditions[?(@.type=="Verified")].reason`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,priority=1,JSONPath=`.status.namespaces`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name: at most 63 characters: the name is the value of the pullpass.io/registry label on the registry's pull secrets, and a label value is at most 63 characters"
// +kubebuilder:validation:XValidation:rule="self.metadata.name != 'webhook-tls' && !self.metadata.name.matches('^node-credentials(-[0-9]+)?$')",message="metadata.name: a registry's pull secrets are named pullpass-NAME, and pullpass-webhook-tls and pullpass-node-credentials[-N] are pullpass's own Secrets: choose another name"
type Registry struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RegistrySpec   `json:"spec"`
	Status RegistryStatus `json:"status,omitempty"`
}

// RegistrySpec is what the user asks for.
//
// +kubebuilder:validation:XValidation:rule="!has(self.delivery) || self.delivery == 'Node' || self.scope != 'Cluster'",message="scope Cluster is served by the node agents: delivery must be Node or unset"
// +kubebuilder:validation:XValidation:rule="!has(self.serviceAccounts) || (self.scope == 'Namespaced' && has(self.delivery) && self.delivery == 'Node')",message="serviceAccounts needs scope Namespaced and delivery Node: only the node tells service accounts apart"
// +kubebuilder:validation:XValidation:rule="!has(self.pullThrough) || self.scope != 'Namespaced' || !has(self.delivery) || self.delivery != 'Node'",message="pullThrough: a cache delivered by the node (scope Namespaced, delivery Node) has no pull secret for the webhook to give the pods it rewrites: use delivery PullSecret, or scope Cluster"
// +kubebuilder:validation:XValidation:rule="!has(self.pullThrough) || (size(self.hosts) == 1 && !self.hosts[0].contains('*'))",message="pullThrough needs exactly one host in spec.hosts, without '*': the cache's host, which images are rewritten to"
// +kubebuilder:validation:XValidation:rule="!has(self.pullThrough) || size(self.hosts) != 1 || self.hosts[0].matches('^(localhost(:[0-9]+)?|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?([.][a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+(:[0-9]+)?|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9]+)(/.*)?$')",message="pullThrough: spec.hosts[0] must be a host images can name, written host[:port][/path] with no scheme: dot-separated labels of letters, digits and inner '-', with a '.' or a port, or localhost"
// +kubebuilder:validation:XValidation:rule="!has(self.pullThrough) || size(self.hosts) != 1 || !(self.hosts[0] + '/').startsWith(self.pullThrough.upstream + '/')",message="pullThrough.upstream is the cache's own host"
// +kubebuilder:validation:XValidation:rule="!has(self.pullThrough) || size(self.hosts) != 1 || !['docker.io/', 'index.docker.io/', 'registry-1.docker.io/'].exists(h, (self.hosts[0] + '/').startsWith(h))",message="pullThrough: a cache cannot be on Docker Hub (spec.hosts[0])"
// +kubebuilder:validation:XValidation:rule="!has(self.pullThrough) || size(self.hosts) != 1 || !self.hosts[0].contains('/') || ((has(self.pullThrough.prefix) && size(self.pullThrough.prefix) > 0) ? '/' + self.pullThrough.prefix + '/' : '/').startsWith(self.hosts[0].substring(self.hosts[0].indexOf('/')))",message="pullThrough: the cache's images (HOST/PREFIX/...) must be matched by spec.hosts[0], so its path must begin pullThrough.prefix"
type RegistrySpec struct {
	// Host patterns with the kubelet's matchImages rules: host[:port][/path], where '*' in a
	// dot-separated label matches any run of characters in that label ("ghcr.io",
	// "*.azurecr.io", "registry.example.com:5000", "ghcr.io/my-org").
	//
	// Only '*' globs: the kubelet reads '?' as a URL query and '[' as an IPv6 literal. What people
	// paste is read as the kubelet reads config keys: an http:// or https:// scheme, a trailing
	// '/' and a /v1/ or /v2/ suffix are dropped, and Docker Hub's names (index.docker.io,
	// registry-1.docker.io) are docker.io.
	//
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^(https?://)?[A-Za-z0-9_*-]+(\.[A-Za-z0-9_*-]+)*(:[0-9]+)?(/[a-z0-9._/-]*)?$`
	// +listType=set
	Hosts []string `json:"hosts"`
	// The credential source; exactly one field is set.
	Auth RegistryAuth `json:"auth"`
	// Namespaced (default): the webhook adds a pull secret to pods of opted-in namespaces.
	// Cluster: the node agent serves the kubelet, for every pod.
	//
	// +kubebuilder:default=Namespaced
	// +optional
	Scope Scope `json:"scope,omitempty"`
	// How the credentials reach the kubelet. PullSecret (the default of Namespaced): the webhook
	// writes pull secrets into opted-in namespaces. Node (the default and only choice of
	// Cluster): the node agents serve the kubelet through the credential provider plugin; with
	// scope Namespaced, only to pods of the namespaces namespaceSelector selects (every namespace
	// when unset; no opt-in annotation needed) and the service accounts serviceAccounts allows,
	// as the pod's service account token proves (kubelet 1.34+).
	//
	// +optional
	Delivery Delivery `json:"delivery,omitempty"`
	// Limits a Namespaced registry delivered by the node to some service accounts of the
	// selected namespaces. Unset: every service account.
	//
	// +optional
	ServiceAccounts *ServiceAccountSelector `json:"serviceAccounts,omitempty"`
	// Limits the namespaces a Namespaced registry is given to.
	//
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions: operator must be In, NotIn, Exists or DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, (e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0))",message="matchExpressions: In and NotIn need values, Exists and DoesNotExist take none"
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// Makes this registry a pull-through cache: pod images of the upstream are rewritten to the
	// cache's name (spec.hosts[0]/prefix/...) in the namespaces it serves.
	// +optional
	PullThrough *PullThrough `json:"pullThrough,omitempty"`
}

// ServiceAccountSelector allows service accounts by name, or by an annotation their namespace's
// admins set. A service account is allowed when any of the two allows it.
//
// +kubebuilder:validation:XValidation:rule="(has(self.names) && size(self.names) > 0) || (has(self.annotated) && self.annotated)",message="name service accounts or set annotated"
type ServiceAccountSelector struct {
	// Service account names allowed in every selected namespace.
	//
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +listType=set
	// +optional
	Names []string `json:"names,omitempty"`
	// Allow the service accounts annotated pullpass.io/registries with this registry's name (a
	// comma-separated list of registry names).
	//
	// +optional
	Annotated bool `json:"annotated,omitempty"`
}

// Allows reports whether a service account, with its pullpass.io/registries annotation value,
// may use registry name.
func (s *ServiceAccountSelector) Allows(registry, serviceAccount, annotation string) bool {
	if s == nil {
		return true
	}
	for _, n := range s.Names {
		if n == serviceAccount {
			return true
		}
	}
	if s.Annotated {
		for item := range strings.SplitSeq(annotation, ",") {
			if strings.TrimSpace(item) == registry {
				return true
			}
		}
	}
	return false
}

// RegistryAuth is a credential source. Exactly one field is set.
//
// +kubebuilder:validation:XValidation:rule="[has(self.secretRef), has(self.ecr), has(self.dockerHub)].filter(x, x).size() == 1",message="exactly one credential source must be set (secretRef, ecr or dockerHub)"
type RegistryAuth struct {
	// A Secret with username and password (Opaque or kubernetes.io/basic-auth), or a
	// kubernetes.io/dockerconfigjson with an entry for the registry.
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`
	// AWS ECR tokens from GetAuthorizationToken, with the SDK's default credential chain (IRSA,
	// EKS Pod Identity, instance role) unless accessKeySecretRef is set.
	// +optional
	ECR *ECRSource `json:"ecr,omitempty"`
	// A Secret with a Docker Hub username and personal access token.
	// +optional
	DockerHub *DockerHubSource `json:"dockerHub,omitempty"`
}

// ECRSource gets ECR tokens with the AWS SDK's default credential chain (IRSA, EKS Pod Identity,
// instance role), or with static keys, optionally assuming a role.
type ECRSource struct {
	// Taken from the host when empty ("123.dkr.ecr.eu-west-1.amazonaws.com").
	//
	// +kubebuilder:validation:Pattern=`^[a-z]{2}(-[a-z]+)+-[0-9]+$`
	// +optional
	Region string `json:"region,omitempty"`
	// A role to assume, for cross-account registries.
	//
	// +kubebuilder:validation:Pattern=`^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$`
	// +optional
	RoleARN string `json:"roleARN,omitempty"`
	// A Secret with aws_access_key_id and aws_secret_access_key.
	// +optional
	AccessKeySecretRef *SecretReference `json:"accessKeySecretRef,omitempty"`
}

// DockerHubSource names a Secret with a Docker Hub username and personal access token.
type DockerHubSource struct {
	// The Secret, with keys username and token.
	SecretRef SecretReference `json:"secretRef"`
}

// Sources returns the names of the credential sources that are set.
func (a RegistryAuth) Sources() []string {
	var out []string
	if a.SecretRef != nil {
		out = append(out, "secretRef")
	}
	if a.ECR != nil {
		out = append(out, "ecr")
	}
	if a.DockerHub != nil {
		out = append(out, "dockerHub")
	}
	return out
}

// SecretRefs returns every Secret the source reads: the secretRef, the Docker Hub secret, or
// the ECR source's AWS keys.
func (a RegistryAuth) SecretRefs() []SecretReference {
	var out []SecretReference
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

// SecretReference names a Secret: a credential source, never one of pullpass's own Secrets
// (its pull secrets "pullpass-REGISTRY", the webhook's "pullpass-webhook-tls"), whose contents
// would go wherever the registry is served.
//
// +kubebuilder:validation:XValidation:rule="!self.name.startsWith('pullpass-')",message="names starting pullpass- are pullpass's own Secrets (pull secrets pullpass-REGISTRY, the webhook's pullpass-webhook-tls), not credential sources: name a Secret of your own"
type SecretReference struct {
	// The Secret's name.
	//
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// The Secret's namespace.
	//
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`
}

// RegistryStatus is what pullpass observed.
type RegistryStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions hold Ready, with a reason and message when credentials cannot be produced.
	//
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ExpiresAt is when the current credentials expire, for sources whose tokens do.
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// LastRefreshTime is when credentials were last fetched from the source.
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`
	// Namespaces counts the namespaces holding a pull secret for this registry.
	Namespaces int32 `json:"namespaces,omitempty"`
	// Served says where the registry is served (the Served condition says whether that is so).
	// +optional
	Served *ServedStatus `json:"served,omitempty"`
	// LastGoodUntil is, while the source cannot be read, until when the pull secrets keep the
	// last good credentials; then they are withdrawn. Unset while the source answers.
	// +optional
	LastGoodUntil *metav1.Time `json:"lastGoodUntil,omitempty"`
	// Verification is the last login to the registry with its current credentials (the
	// Verified condition holds its outcome).
	// +optional
	Verification *RegistryVerification `json:"verification,omitempty"`
}

// ServedStatus is where a registry is served.
type ServedStatus struct {
	// PullSecrets counts the namespaces holding its pull secret (delivery PullSecret).
	// +optional
	PullSecrets int32 `json:"pullSecrets,omitempty"`
	// Nodes counts the node agents that serve it (delivery Node): the agent DaemonSet's ready
	// pods of those it should run.
	// +optional
	Nodes *NodesServed `json:"nodes,omitempty"`
}

// NodesServed counts the node agents serving a registry.
type NodesServed struct {
	// Ready agents: the DaemonSet's ready pods.
	Ready int32 `json:"ready"`
	// Desired agents: the nodes the DaemonSet should run on.
	Desired int32 `json:"desired"`
}

// RegistryVerification records the last login to a registry with its credentials.
type RegistryVerification struct {
	// ObservedGeneration is the generation the last login was made for.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// SourceVersion is the resourceVersion of the source Secret whose credentials were used
	// ("" for sources without one): a client that just wrote the Secret waits for it.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	SourceVersion string `json:"sourceVersion,omitempty"`
	// Hosts are the hosts logged in to: the registry's literal hosts, and for glob patterns the
	// hosts pods were seen using.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	// +optional
	Hosts []string `json:"hosts,omitempty"`
	// LastAttemptTime is when the last login was tried.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`
	// LastSuccessTime is when a login last succeeded.
	// +optional
	LastSuccessTime *metav1.Time `json:"lastSuccessTime,omitempty"`
	// PullLimit is the registry's pull limit for these credentials, when it says (Docker Hub's
	// ratelimit-limit and ratelimit-remaining headers).
	// +optional
	PullLimit *PullLimit `json:"pullLimit,omitempty"`
}

// PullLimit is a registry's pull rate limit as its ratelimit headers state it.
type PullLimit struct {
	// Limit is how many pulls the window allows.
	Limit int64 `json:"limit"`
	// Remaining is how many are left.
	Remaining int64 `json:"remaining"`
	// WindowSeconds is the window's length.
	// +optional
	WindowSeconds int64 `json:"windowSeconds,omitempty"`
}

// EffectiveScope returns the scope, defaulted.
func (s RegistrySpec) EffectiveScope() Scope {
	if s.Scope == "" {
		return ScopeNamespaced
	}
	return s.Scope
}

// EffectiveDelivery returns the delivery, defaulted: Node for Cluster scope, PullSecret for
// Namespaced.
func (s RegistrySpec) EffectiveDelivery() Delivery {
	if s.Delivery != "" {
		return s.Delivery
	}
	if s.EffectiveScope() == ScopeCluster {
		return DeliveryNode
	}
	return DeliveryPullSecret
}

// RegistryList is a list of Registry.
//
// +kubebuilder:object:root=true
type RegistryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Registry `json:"items"`
}
