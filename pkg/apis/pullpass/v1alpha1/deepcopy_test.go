package v1alpha1_test

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

func full() *v1alpha1.Registry {
	now := metav1.NewTime(time.Unix(1700000000, 0))
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Labels: map[string]string{"a": "b"}},
		Spec: v1alpha1.RegistrySpec{
			Hosts: []string{"ghcr.io"},
			Auth: v1alpha1.RegistryAuth{
				SecretRef: &v1alpha1.SecretReference{Name: "s", Namespace: "n"},
				ECR:       &v1alpha1.ECRSource{Region: "eu-west-1", AccessKeySecretRef: &v1alpha1.SecretReference{Name: "k", Namespace: "n"}},
				DockerHub: &v1alpha1.DockerHubSource{SecretRef: v1alpha1.SecretReference{Name: "d", Namespace: "n"}},
			},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
			PullThrough:       &v1alpha1.PullThrough{Upstream: "docker.io", Prefix: "docker-hub"},
		},
		Status: v1alpha1.RegistryStatus{
			Conditions:      []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}},
			ExpiresAt:       &now,
			LastRefreshTime: &now,
		},
	}
}

// A deep copy is equal to its original and shares no memory with it: changing every field of
// the copy leaves the original as it was.
func TestDeepCopy(t *testing.T) {
	orig := full()
	cp := orig.DeepCopy()
	if !reflect.DeepEqual(orig, cp) {
		t.Fatal("copy differs from the original")
	}
	cp.Labels["a"] = "changed"
	cp.Spec.Hosts[0] = "changed"
	cp.Spec.Auth.SecretRef.Name = "changed"
	cp.Spec.Auth.ECR.AccessKeySecretRef.Name = "changed"
	cp.Spec.Auth.ECR.Region = "changed"
	cp.Spec.Auth.DockerHub.SecretRef.Name = "changed"
	cp.Spec.NamespaceSelector.MatchLabels["team"] = "changed"
	cp.Spec.PullThrough.Prefix = "changed"
	cp.Status.Conditions[0].Reason = "changed"
	cp.Status.ExpiresAt.Time = time.Unix(0, 0)
	cp.Status.LastRefreshTime.Time = time.Unix(0, 0)
	if !reflect.DeepEqual(orig, full()) {
		t.Fatal("changing the copy changed the original")
	}
	list := &v1alpha1.RegistryList{Items: []v1alpha1.Registry{*full()}}
	lc := list.DeepCopyObject().(*v1alpha1.RegistryList)
	lc.Items[0].Spec.Hosts[0] = "changed"
	if list.Items[0].Spec.Hosts[0] != "ghcr.io" {
		t.Fatal("changing a list copy changed the original")
	}
}
