package scale

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/testenv"
	"github.com/pullpass/pullpass/webhook/controller"
)

var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

// The benchmark's plumbing against a real API server, at a tiny size: a real controller as the
// controller's replica (on the "host network": its metrics on loopback) acting as its own
// ServiceAccount, a stand-in for the webhook's metrics, and pods made by hand for both
// Deployments (nothing here runs them). Without a webhook no pod gets pull secrets: the run
// counts them as failed open, and what is checked is that each binary is found, told apart and
// measured, its ServiceAccount's requests counted.
func TestRunMeasuresEachBinary(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, pullpassNS)
	ctx := t.Context()

	// The controller, as its ServiceAccount (bound to cluster-admin: what it may do is not
	// the question here).
	const controllerSA = "pullpass-controller"
	if _, err := env.Kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scalebench-test-controller"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: pullpassNS, Name: controllerSA}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	saConfig, err := env.ServiceAccountConfig(pullpassNS, controllerSA)
	if err != nil {
		t.Fatal(err)
	}
	o := controller.DefaultOptions()
	o.Kubeconfig = env.KubeconfigFile(t, saConfig)
	o.Namespace = pullpassNS
	o.MetricsAddress = testenv.FreeAddress(t)
	o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 3*time.Second, 2*time.Second, 500*time.Millisecond
	o.Verify = false
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- controller.Run(runCtx, o, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the controller: %v", err)
		}
	})

	// The webhook's metrics: a stand-in.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 4.194304e+07\ngo_memstats_heap_inuse_bytes 1.048576e+07\nprocess_cpu_seconds_total %v\n",
			float64(time.Now().UnixMilli())/1e6) // a thousandth of a core
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	// The Deployments and a running pod of each, on the "host network".
	for _, d := range []struct{ name, sa, addr string }{
		{"pullpass-webhook", "pullpass-webhook", l.Addr().String()},
		{"pullpass-controller", controllerSA, o.MetricsAddress},
	} {
		_, port, _ := net.SplitHostPort(d.addr)
		p, _ := strconv.Atoi(port)
		labels := map[string]string{"app.kubernetes.io/component": d.name}
		spec := corev1.PodSpec{ServiceAccountName: d.sa, HostNetwork: true, Containers: []corev1.Container{{Name: "c", Image: "i",
			Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: int32(p)}}}}}
		if _, err := env.Kube.AppsV1().Deployments(pullpassNS).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: d.name},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod, err := env.Kube.CoreV1().Pods(pullpassNS).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: d.name + "-0", Labels: labels}, Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = corev1.PodRunning
		if _, err := env.Kube.CoreV1().Pods(pullpassNS).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	var log bytes.Buffer
	res, err := Run(ctx, env.Config, Config{Namespaces: 9, Registries: 2, QuietPeriod: 5 * time.Second, Log: &log})
	t.Logf("log:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	res.WriteTable(&table, 2)
	t.Logf("table:\n%s", table.String())

	if res.FailedOpen != 9 {
		t.Errorf("%d pods failed open, want all 9 (no webhook)", res.FailedOpen)
	}
	for _, s := range []Steady{res.Idle, res.Loaded} {
		if len(s.Webhook.Replicas) != 1 || s.Webhook.Replicas[0].RSS != 40<<20 {
			t.Errorf("webhook replicas %+v, want one of 40 MiB", s.Webhook.Replicas)
		}
		lead, ok := s.Controller.Leader()
		if !ok || lead.Pod != "pullpass-controller-0" || lead.RSS == 0 || lead.Heap == 0 || lead.HeapAlloc == 0 || lead.CPU <= 0 {
			t.Errorf("controller leader %+v (told apart: %v), want pullpass-controller-0 with its memory and CPU", lead, ok)
		}
		// The controller renews its Lease every half second: its ServiceAccount's requests.
		if s.Controller.RequestsPerMin < 60 || s.Webhook.RequestsPerMin != 0 {
			t.Errorf("requests per minute: controller %.1f (want its renewals, 120), webhook %.1f (want none)", s.Controller.RequestsPerMin, s.Webhook.RequestsPerMin)
		}
	}
	if _, ok := res.Loaded.Objects["namespaces"]; !ok { // counted every minute or so: maybe 0 yet
		t.Errorf("objects %v, want namespaces among them", res.Loaded.Objects)
	}
	if res.PeakController.RSS == 0 || len(res.EndController.Replicas) != 1 {
		t.Errorf("peak %+v, at the end %+v", res.PeakController, res.EndController)
	}
	for _, want := range []string{"| controller leader (pullpass-controller-0): RSS |", "| webhook, worst of 1 replicas: RSS | 40.0 MiB | 40.0 MiB | 1.00 |"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
}
