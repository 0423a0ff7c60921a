// Package v1alpha1 holds the pullpass.io/v1alpha1 API: the cluster-scoped Registry, one row of
// the registry table that maps image hosts to a credential source.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scope says who is served a registry's credentials.
type Scope string

const (
	// ScopeNamespaced: the webhook adds a pull secret to the pods of opted-in namespaces.
	ScopeNamespaced Scope = "Namespaced"
	// ScopeCluster: the node agent serves the credentials to the kubelet, for every pod.
	ScopeCluster Scope = "Cluster"
)

// Condition types and reasons of Registry.status.
const (
	ConditionReady = "Ready"
)

// Registry maps image host patterns to a credential source.
type Registry struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RegistrySpec   `json:"spec"`
	Status RegistryStatus `json:"status,omitempty"`
}

// RegistrySpec is what the user asks for.
type RegistrySpec struct {
	// Hosts are patterns with the kubelet's matchImages rules: "ghcr.io", "*.azurecr.io",
	// "registry.example.com:5000", "ghcr.io/my-org".
	Hosts []string `json:"hosts"`
	// Auth is the credential source: exactly one of its fields is set.
	Auth RegistryAuth `json:"auth"`
	// Scope is Namespaced (the default) or Cluster.
	Scope Scope `json:"scope,omitempty"`
	// NamespaceSelector limits the namespaces a Namespaced registry is given to.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// RegistryAuth is a credential source. Exactly one field is set.
type RegistryAuth struct {
	// SecretRef names a Secret holding username/password (or kubernetes.io/basic-auth), or a
	// kubernetes.io/dockerconfigjson with an entry for the registry.
	SecretRef *SecretReference `json:"secretRef,omitempty"`
	// ECR fetches tokens from AWS ECR's GetAuthorizationToken.
	ECR *ECRSource `json:"ecr,omitempty"`
	// DockerHub uses a Docker Hub username and personal access token.
	DockerHub *DockerHubSource `json:"dockerHub,omitempty"`
}

// ECRSource gets ECR tokens with the AWS SDK's default credential chain (IRSA, EKS Pod Identity,
// instance role), or with static keys, optionally assuming a role.
type ECRSource struct {
	// Region is taken from the host when empty ("123.dkr.ecr.eu-west-1.amazonaws.com").
	Region string `json:"region,omitempty"`
	// RoleARN is a role to assume, for cross-account registries.
	RoleARN string `json:"roleARN,omitempty"`
	// AccessKeySecretRef names a Secret with aws_access_key_id and aws_secret_access_key.
	AccessKeySecretRef *SecretReference `json:"accessKeySecretRef,omitempty"`
}

// DockerHubSource names a Secret with a Docker Hub username and personal access token.
type DockerHubSource struct {
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

// SecretReference names a Secret.
type SecretReference struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// RegistryStatus is what pullpass observed.
type RegistryStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions hold Ready, with a reason and message when credentials cannot be produced.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ExpiresAt is when the current credentials expire, for sources whose tokens do.
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// LastRefreshTime is when credentials were last fetched from the source.
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`
	// Namespaces counts the namespaces holding a pull secret for this registry.
	Namespaces int32 `json:"namespaces,omitempty"`
}

// EffectiveScope returns the scope, defaulted.
func (s RegistrySpec) EffectiveScope() Scope {
	if s.Scope == "" {
		return ScopeNamespaced
	}
	return s.Scope
}

// RegistryList is a list of Registry.
type RegistryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Registry `json:"items"`
}
