package kubeletrestart

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// SystemdBus restarts units through the host's systemd over its private D-Bus socket
// (/run/systemd/private, mounted from the host at the same path), as `systemctl` does as root.
//
// Why D-Bus and not `nsenter --target 1 ... systemctl restart kubelet`: nsenter needs the host's
// PID namespace and a privileged container (CAP_SYS_ADMIN to enter the mount namespace), which is
// the whole node; and a systemctl binary inside the host's mount namespace. The socket needs
// neither: the agent stays non-privileged, without capabilities, in its own PID namespace, and
// systemd lets only uid 0 speak on it (the agent runs as root already, to write the kubelet's
// paths). The image stays distroless (no nsenter, no shell).
//
// Kubelets this covers (the unit is kubelet.service on each): kind nodes, kubeadm nodes, EKS
// AL2023 nodes (nodeadm runs the kubelet under systemd), GKE Ubuntu and COS nodes, AKS Ubuntu
// and Azure Linux nodes. Bottlerocket is not covered: its /etc is rendered from its settings API
// and SELinux keeps containers off systemd's socket; there the provider config is set through
// `settings.kubernetes.credential-providers` (user data or apiclient), which restarts the
// kubelet itself, and agent.restartKubelet stays off.
type SystemdBus struct{}

// RestartUnit restarts unit ("replace" mode, as systemctl restart) and waits for the job.
func (SystemdBus) RestartUnit(ctx context.Context, unit string) error {
	conn, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("connecting to the host's systemd (/run/systemd/private): %w", err)
	}
	defer conn.Close()
	done := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, unit, "replace", done); err != nil {
		return err
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("the restart job of %s ended %q", unit, res)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ActiveSince is when unit last entered the active state (zero if it never did).
func (SystemdBus) ActiveSince(ctx context.Context, unit string) (time.Time, error) {
	conn, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("connecting to the host's systemd (/run/systemd/private): %w", err)
	}
	defer conn.Close()
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveEnterTimestamp")
	if err != nil {
		return time.Time{}, err
	}
	us, ok := p.Value.Value().(uint64)
	if !ok {
		return time.Time{}, fmt.Errorf("%s ActiveEnterTimestamp is %s, not microseconds", unit, p.Value.String())
	}
	if us == 0 {
		return time.Time{}, nil
	}
	return time.UnixMicro(int64(us)), nil
}

// KubeletHealth is Health from the kubelet's healthz (127.0.0.1:10248 on the host's network:
// the agent runs on the host network when it restarts kubelets) and the Node's Ready condition.
type KubeletHealth struct {
	// URL is the kubelet's healthz (default http://127.0.0.1:10248/healthz).
	URL    string
	Client *http.Client
	Kube   kubernetes.Interface
	Node   string
}

// KubeletHealthy is nil when the kubelet's healthz answers 200.
func (h KubeletHealth) KubeletHealthy(ctx context.Context) error {
	url := h.URL
	if url == "" {
		url = "http://127.0.0.1:10248/healthz"
	}
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %s", url, resp.StatusCode, body)
	}
	return nil
}

// NodeReady reports the Node's Ready condition.
func (h KubeletHealth) NodeReady(ctx context.Context) (bool, error) {
	n, err := h.Kube.CoreV1().Nodes().Get(ctx, h.Node, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	return nodeReady(n), nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// StartingPods counts the pods bound to a node whose containers the kubelet is still creating
// (pulling images, starting the sandbox): Pending pods, less those only waiting out a back-off,
// which a restart does not disturb.
type StartingPods struct {
	Kube kubernetes.Interface
	Node string
}

// StartingPods lists the node's Pending pods (a field selector: the API server filters).
func (s StartingPods) StartingPods(ctx context.Context) (int, error) {
	sel := fields.AndSelectors(fields.OneTermEqualSelector("spec.nodeName", s.Node),
		fields.OneTermEqualSelector("status.phase", string(corev1.PodPending))).String()
	pods, err := s.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: "0"})
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range pods.Items {
		if starting(&pods.Items[i]) {
			n++
		}
	}
	return n, nil
}

// starting: a container is being created, or none has a status yet.
func starting(p *corev1.Pod) bool {
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	if len(statuses) == 0 {
		return true
	}
	for _, s := range statuses {
		if w := s.State.Waiting; w != nil && (w.Reason == "ContainerCreating" || w.Reason == "PodInitializing") {
			return true
		}
	}
	return false
}

// NodeEvents records events on a Node. The API server takes the events of a cluster-scoped
// object only in the default namespace (where the kubelet's own Node events are): the chart
// lets the agent create events there and nothing else.
type NodeEvents struct {
	Kube   kubernetes.Interface
	Node   string
	Logger interface {
		Warn(msg string, args ...any)
	}
}

// Event creates the event; a failure is logged, never fatal.
func (e NodeEvents) Event(ctx context.Context, eventType, reason, message string) {
	now := metav1.NewTime(time.Now())
	ref := corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: e.Node}
	if n, err := e.Kube.CoreV1().Nodes().Get(ctx, e.Node, metav1.GetOptions{}); err == nil {
		ref.UID = n.UID
	}
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: e.Node + ".", Namespace: metav1.NamespaceDefault},
		InvolvedObject: ref, Reason: reason, Message: message, Type: eventType,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: "pullpass-agent", Host: e.Node},
	}
	if _, err := e.Kube.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil && e.Logger != nil {
		e.Logger.Warn("could not record an event on the Node", "reason", reason, "err", err)
	}
}
