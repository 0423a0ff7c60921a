package v1alpha1

// PullThrough makes a Registry a pull-through cache of another registry (an ECR pull-through
// cache rule, a Harbor proxy project, GitLab's dependency proxy, an Artifactory remote, a
// distribution registry in proxy mode): in the namespaces it serves, the webhook rewrites pod
// images of the upstream to the cache's name and adds the cache's pull secret.
//
// "nginx:1.27" with upstream docker.io and prefix docker-hub on the Registry's host
// 123456789012.dkr.ecr.eu-west-1.amazonaws.com becomes
// 123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27.
type PullThrough struct {
	// Upstream is the registry the cache mirrors: a host, with a port if it has one, as images
	// name it ("docker.io" for Docker Hub, "ghcr.io", "quay.io", "registry.k8s.io",
	// "public.ecr.aws").
	//
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^(localhost(:[0-9]+)?|[a-z0-9]([a-z0-9-]*[a-z0-9])?([.][a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[0-9]+)?|[a-z0-9]([a-z0-9-]*[a-z0-9])?:[0-9]+)$')",message="must be a registry host as images name it, with an optional port (docker.io, ghcr.io, registry.example.com:5000): lower case, no scheme, path or '*'"
	// +kubebuilder:validation:XValidation:rule="!(self in ['index.docker.io', 'registry-1.docker.io'])",message="Docker Hub is written docker.io"
	Upstream string `json:"upstream"`
	// Prefix is the cache's path under the Registry's host, which upstream repositories go under:
	// "docker-hub" for an ECR pull-through rule with that prefix, the project for a Harbor proxy
	// project, "group/dependency_proxy/containers" for GitLab. Empty: the cache serves the
	// upstream's repositories at its root (a distribution registry in proxy mode).
	//
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:XValidation:rule="size(self) == 0 || self.matches('^[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*)*$')",message="must be a repository path: lower-case letters and digits, with '.', '_', '__' or dashes between them, '/' between components, no leading or trailing '/'"
	// +optional
	Prefix string `json:"prefix,omitempty"`
}

// ConditionPullThrough is the condition of a pull-through Registry's status that says whether
// the webhook rewrites images to it: True where it is used, False when it conflicts with another
// cache of the same upstream or is a cache of a cache.
const ConditionPullThrough = "PullThrough"
