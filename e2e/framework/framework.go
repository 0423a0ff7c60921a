// Package framework is the small toolkit of pullpass's e2e suite: it reads the cluster and
// registry the suite runs against and makes namespaces, secrets and pods there.
//
// It runs against any cluster: the harness's (make cluster-up) by default, or another one named by
// E2E_KUBECONFIG and E2E_REGISTRY_ENV (or the variables of registry.env set one by one).
package framework

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/registryclient"
)

// Env is what the suite needs to know about the cluster and the registry.
type Env struct {
	Kubeconfig       string
	Registry         string // host:port
	RegistryUsername string
	RegistryPassword string
	RegistryCA       string
	Image            string // a private image whose entrypoint prints a line and sleeps
	NodeName         string
	// HostNetwork runs test pods on the host network, for clusters without a CNI (the harness).
	HostNetwork bool
	// PinNode runs test pods on NodeName (E2E_PIN_NODE=true): on a cluster of several nodes, the
	// node whose agent metrics, cache and provider dirs the suite reads (kind's first worker).
	PinNode bool

	Config     *rest.Config
	Kube       kubernetes.Interface
	Registries registryclient.Interface

	vars map[string]string
}

// Var returns a variable of the registry env file (or the environment).
func (e *Env) Var(k string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return e.vars[k]
}

// Script is the path of one of the cluster's scripts (restart-kubelet.sh, registry-user.sh,
// deploy.sh): the harness's in e2e/cluster, or those of the directory E2E_SCRIPTS_DIR names
// (e2e/kind for the kind cluster), which keep the same contract.
func Script(name string) string {
	return filepath.Join(getenv("E2E_SCRIPTS_DIR", filepath.Join(RepoRoot(), "e2e", "cluster")), name)
}

// Kubectl is the kubectl the cluster's scripts use: KUBECTL from the registry env file or the
// environment, else the harness's.
func (e *Env) Kubectl() string {
	if k := e.Var("KUBECTL"); k != "" {
		return k
	}
	return filepath.Join(RepoRoot(), "_output", "e2e", "bin", "kubectl")
}

// AgentCache is the node cache file the tests read: AGENT_CACHE from the endpoints or registry
// env file, else the harness's.
func (e *Env) AgentCache() string {
	if p := e.Var("AGENT_CACHE"); p != "" {
		return p
	}
	if p := os.Getenv("E2E_ENDPOINTS_ENV"); p != "" {
		if data, err := os.ReadFile(p); err == nil {
			for _, l := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(l), "AGENT_CACHE="); ok {
					return v
				}
			}
		}
	}
	return filepath.Join(RepoRoot(), "_output", "e2e", "credential-provider", "cache", "credentials.json")
}

// RegistryFromHere is the registry's host:port as this machine reaches it: PUSH_REGISTRY where
// the cluster's name for it does not resolve here (kind: localhost:5001), else REGISTRY.
func (e *Env) RegistryFromHere() string {
	if p := e.Var("PUSH_REGISTRY"); p != "" {
		return p
	}
	return e.Registry
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Load reads the environment, failing the test when something is missing.
func Load(t testing.TB) *Env {
	t.Helper()
	out := filepath.Join(RepoRoot(), "_output", "e2e")
	vars := map[string]string{}
	envFile := getenv("E2E_REGISTRY_ENV", filepath.Join(out, "registry.env"))
	if f, err := os.Open(envFile); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(k, "#") {
				vars[k] = v
			}
		}
		_ = f.Close()
	}
	get := func(k string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return vars[k]
	}
	e := &Env{
		Kubeconfig:       getenv("E2E_KUBECONFIG", filepath.Join(out, "kubeconfig")),
		Registry:         get("REGISTRY"),
		RegistryUsername: get("REGISTRY_USERNAME"),
		RegistryPassword: get("REGISTRY_PASSWORD"),
		RegistryCA:       get("REGISTRY_CA"),
		Image:            get("E2E_IMAGE"),
		NodeName:         get("NODE_NAME"),
		HostNetwork:      getenv("E2E_HOST_NETWORK", "true") == "true",
		PinNode:          os.Getenv("E2E_PIN_NODE") == "true",
		vars:             vars,
	}
	for k, v := range map[string]string{"REGISTRY": e.Registry, "REGISTRY_USERNAME": e.RegistryUsername, "REGISTRY_PASSWORD": e.RegistryPassword, "E2E_IMAGE": e.Image} {
		if v == "" {
			t.Fatalf("%s is not set and not in %s: run `make cluster-up` or point E2E_REGISTRY_ENV at a registry.env", k, envFile)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", e.Kubeconfig, err)
	}
	e.Config = cfg
	if e.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if e.Registries, err = registryclient.New(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Context returns a context that ends with the test, or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Namespace creates a namespace with a random name, deleted when the test ends unless it failed
// and E2E_KEEP_FAILED is set.
func (e *Env) Namespace(t testing.TB, prefix string, annotations map[string]string) string {
	t.Helper()
	ctx := Context(t, time.Minute)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        prefix + "-" + rand.String(6),
		Labels:      map[string]string{"pullpass.io/e2e": "true"},
		Annotations: annotations,
	}}
	created, err := e.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("E2E_KEEP_FAILED") != "" {
			t.Logf("keeping namespace %s", created.Name)
			return
		}
		_ = e.Kube.CoreV1().Namespaces().Delete(context.Background(), created.Name, metav1.DeleteOptions{})
	})
	return created.Name
}

// DockerConfigSecret makes a kubernetes.io/dockerconfigjson Secret for the registry.
func (e *Env) DockerConfigSecret(t testing.TB, namespace, name, username, password string) {
	t.Helper()
	data, err := dockerconfig.ForHost(e.Registry, username, password).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
	if _, err := e.Kube.CoreV1().Secrets(namespace).Create(Context(t, time.Minute), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating secret %s/%s: %v", namespace, name, err)
	}
}

// PodOptions shape a test pod.
type PodOptions struct {
	Name             string
	Image            string
	Command          []string // empty: the image's entrypoint
	PullSecrets      []string
	InitImage        string // when set, an init container runs this image's /hello
	RestartNever     bool
	Annotations      map[string]string
	ImagePullPolicy  corev1.PullPolicy // default Always, so every test really pulls
	ServiceAccount   string
	TerminationGrace int64
}

// Pod builds a pod that runs on the harness's node shape: host network, any taint tolerated.
func (e *Env) Pod(namespace string, o PodOptions) *corev1.Pod {
	if o.Name == "" {
		o.Name = "pull-" + rand.String(5)
	}
	if o.Image == "" {
		o.Image = e.Image
	}
	if o.ImagePullPolicy == "" {
		o.ImagePullPolicy = corev1.PullAlways
	}
	grace := o.TerminationGrace
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: namespace, Annotations: o.Annotations},
		Spec: corev1.PodSpec{
			HostNetwork:                   e.HostNetwork,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           o.Image,
				Command:         o.Command,
				ImagePullPolicy: o.ImagePullPolicy,
			}},
			ServiceAccountName: o.ServiceAccount,
		},
	}
	if e.PinNode && e.NodeName != "" {
		p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: e.NodeName}
	}
	if o.RestartNever {
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	if o.InitImage != "" {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: o.InitImage, Command: []string{"/hello"}, ImagePullPolicy: o.ImagePullPolicy}}
	}
	for _, s := range o.PullSecrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return p
}

// CreatePod creates a pod and returns it as the API server stored it (after admission).
func (e *Env) CreatePod(t testing.TB, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	created, err := e.Kube.CoreV1().Pods(p.Namespace).Create(Context(t, time.Minute), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	return created
}

// PodState is a pod's phase and its first container problem, for waiting and messages.
type PodState struct {
	Phase   corev1.PodPhase
	Reason  string // waiting or terminated reason of the first container that has one
	Message string
	Ready   bool
}

func stateOf(p *corev1.Pod) PodState {
	s := PodState{Phase: p.Status.Phase}
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, c := range statuses {
		if w := c.State.Waiting; w != nil && w.Reason != "" && s.Reason == "" {
			s.Reason, s.Message = w.Reason, w.Message
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			s.Ready = true
		}
	}
	return s
}

// WaitPod polls a pod until done returns true or the time is up.
func (e *Env) WaitPod(t testing.TB, namespace, name string, timeout time.Duration, what string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx := Context(t, timeout)
	var last *corev1.Pod
	for {
		p, err := e.Kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if done(p) {
				return p
			}
		}
		select {
		case <-ctx.Done():
			st := PodState{}
			if last != nil {
				st = stateOf(last)
			}
			t.Fatalf("pod %s/%s: not %s after %s (phase %s, %s: %s)\nevents:\n%s", namespace, name, what, timeout, st.Phase, st.Reason, st.Message, e.Events(namespace, name))
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// WaitRunning waits for a pod to be Running and Ready.
func (e *Env) WaitRunning(t testing.TB, namespace, name string) *corev1.Pod {
	t.Helper()
	return e.WaitPod(t, namespace, name, 2*time.Minute, "running", func(p *corev1.Pod) bool {
		s := stateOf(p)
		if s.Reason == "ErrImagePull" || s.Reason == "ImagePullBackOff" {
			t.Fatalf("pod %s/%s: pull failed: %s: %s\nevents:\n%s", namespace, name, s.Reason, s.Message, e.Events(namespace, name))
		}
		return s.Phase == corev1.PodRunning && s.Ready
	})
}

// WaitSucceeded waits for a pod that runs to completion.
func (e *Env) WaitSucceeded(t testing.TB, namespace, name string) *corev1.Pod {
	t.Helper()
	return e.WaitPod(t, namespace, name, 2*time.Minute, "succeeded", func(p *corev1.Pod) bool {
		s := stateOf(p)
		if s.Reason == "ErrImagePull" || s.Reason == "ImagePullBackOff" || s.Phase == corev1.PodFailed {
			t.Fatalf("pod %s/%s: %s %s: %s\nevents:\n%s", namespace, name, s.Phase, s.Reason, s.Message, e.Events(namespace, name))
		}
		return s.Phase == corev1.PodSucceeded
	})
}

// WaitPullFailure waits for a pod whose image pull fails and returns the kubelet's message.
func (e *Env) WaitPullFailure(t testing.TB, namespace, name string) string {
	t.Helper()
	var msg string
	e.WaitPod(t, namespace, name, 2*time.Minute, "failing to pull", func(p *corev1.Pod) bool {
		s := stateOf(p)
		if s.Phase == corev1.PodRunning || s.Phase == corev1.PodSucceeded {
			t.Fatalf("pod %s/%s is %s: its image was pulled, but it should not have been", namespace, name, s.Phase)
		}
		if s.Reason == "ErrImagePull" || s.Reason == "ImagePullBackOff" {
			msg = s.Message
			return msg != "" || s.Reason == "ImagePullBackOff"
		}
		return false
	})
	if ev := e.FailedPullEvents(t, namespace, name); len(ev) > 0 {
		msg += "\n" + strings.Join(ev, "\n")
	}
	return msg
}

// FailedPullEvents returns the messages of the pod's Failed events (the kubelet's pull errors).
func (e *Env) FailedPullEvents(t testing.TB, namespace, name string) []string {
	evs, err := e.Kube.CoreV1().Events(namespace).List(Context(t, time.Minute), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatalf("listing events: %v", err)
	}
	var out []string
	for _, ev := range evs.Items {
		if ev.Reason == "Failed" && strings.Contains(ev.Message, "pull") {
			out = append(out, ev.Message)
		}
	}
	return out
}

// Events formats a pod's events, for failure messages.
func (e *Env) Events(namespace, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := e.Kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, ev := range evs.Items {
		fmt.Fprintf(&b, "  %s %s: %s\n", ev.Type, ev.Reason, ev.Message)
	}
	return b.String()
}

// Logs returns a container's log.
func (e *Env) Logs(t testing.TB, namespace, name, container string) string {
	t.Helper()
	data, err := e.Kube.CoreV1().Pods(namespace).GetLogs(name, &corev1.PodLogOptions{Container: container}).Do(Context(t, time.Minute)).Raw()
	if err != nil {
		t.Fatalf("logs of %s/%s[%s]: %v", namespace, name, container, err)
	}
	return string(data)
}

// The clusters make test runs the suite on.
const (
	Harness = "harness" // e2e/cluster: one node, the kubelet and containerd on this machine
	Kind    = "kind"    // e2e/kind: a control plane and two workers, the chart's defaults
)

// ClusterName is the cluster the suite runs against: Kind when E2E_SCRIPTS_DIR is e2e/kind,
// else Harness.
func ClusterName() string {
	if filepath.Base(Script("")) == "kind" {
		return Kind
	}
	return Harness
}

// ProvedOn runs t only on the named cluster: a scenario whose outcome does not depend on the
// cluster's shape (nodes, pod network, chart values) is proved once per make test, not twice.
// why says what the other cluster would add nothing to. E2E_EVERY_CLUSTER=true runs it anywhere.
func ProvedOn(t testing.TB, cluster, why string) {
	t.Helper()
	if here := ClusterName(); here != cluster && os.Getenv("E2E_EVERY_CLUSTER") != "true" {
		t.Skipf("proved on the %s cluster, not here (%s): %s (E2E_EVERY_CLUSTER=true runs it here too)", cluster, here, why)
	}
}
