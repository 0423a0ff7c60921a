package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The deep copies are written by hand: the types are few and small, and a generator would be
// one more tool to pin. TestDeepCopy checks that a copy shares no memory with its original.

// DeepCopyInto copies r into out.
func (r *Registry) DeepCopyInto(out *Registry) {
	*out = *r
	out.TypeMeta = r.TypeMeta
	r.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	r.Spec.DeepCopyInto(&out.Spec)
	r.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a deep copy.
func (r *Registry) DeepCopy() *Registry {
	if r == nil {
		return nil
	}
	out := new(Registry)
	r.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (r *Registry) DeepCopyObject() runtime.Object { return r.DeepCopy() }

// DeepCopyInto copies s into out.
func (s *RegistrySpec) DeepCopyInto(out *RegistrySpec) {
	*out = *s
	if s.Hosts != nil {
		out.Hosts = append([]string(nil), s.Hosts...)
	}
	if s.Auth.SecretRef != nil {
		ref := *s.Auth.SecretRef
		out.Auth.SecretRef = &ref
	}
	if s.Auth.ECR != nil {
		ecr := *s.Auth.ECR
		if ecr.AccessKeySecretRef != nil {
			ref := *ecr.AccessKeySecretRef
			ecr.AccessKeySecretRef = &ref
		}
		out.Auth.ECR = &ecr
	}
	if s.Auth.DockerHub != nil {
		dh := *s.Auth.DockerHub
		out.Auth.DockerHub = &dh
	}
	if s.NamespaceSelector != nil {
		out.NamespaceSelector = s.NamespaceSelector.DeepCopy()
	}
}

// DeepCopyInto copies s into out.
func (s *RegistryStatus) DeepCopyInto(out *RegistryStatus) {
	*out = *s
	if s.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(s.Conditions))
		for i := range s.Conditions {
			s.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
	if s.ExpiresAt != nil {
		out.ExpiresAt = s.ExpiresAt.DeepCopy()
	}
	if s.LastRefreshTime != nil {
		out.LastRefreshTime = s.LastRefreshTime.DeepCopy()
	}
}

// DeepCopyInto copies l into out.
func (l *RegistryList) DeepCopyInto(out *RegistryList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Registry, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a deep copy.
func (l *RegistryList) DeepCopy() *RegistryList {
	if l == nil {
		return nil
	}
	out := new(RegistryList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *RegistryList) DeepCopyObject() runtime.Object { return l.DeepCopy() }
