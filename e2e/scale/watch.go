package scale

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// flowSchemaPrefix names the FlowSchemas that classify each binary's requests apart, one per
// ServiceAccount, so the API server counts them for us (apiserver_flowcontrol_dispatched_requests_total):
// nothing in pullpass needs to.
const flowSchemaPrefix = "pullpass-scalebench-"

// watcher follows both binaries: their replicas' metrics, and their ServiceAccounts' requests.
type watcher struct {
	kube kubernetes.Interface
	bin  *binaries
	// schemas are the FlowSchemas counting the webhook's and the controller's requests.
	webhookSchema, controllerSchema string
}

// watchBinaries makes the API server count each binary's requests: a FlowSchema for its
// ServiceAccount, ahead of the default one for service accounts.
func watchBinaries(ctx context.Context, kube kubernetes.Interface, c Config) (*watcher, error) {
	w := &watcher{kube: kube, bin: &binaries{kube: kube, namespace: c.Namespace, webhook: c.WebhookDeployment,
		controller: c.ControllerDeployment, lease: c.ControllerLease, hostAddr: c.HostNetworkAddress,
		http: &http.Client{Timeout: 20 * time.Second}}}
	accounts := map[string]string{} // ServiceAccount to FlowSchema
	for _, b := range []struct {
		deployment string
		schema     *string
	}{{c.WebhookDeployment, &w.webhookSchema}, {c.ControllerDeployment, &w.controllerSchema}} {
		d, err := kube.AppsV1().Deployments(c.Namespace).Get(ctx, b.deployment, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("deployment %s: %w", b.deployment, err)
		}
		sa := d.Spec.Template.Spec.ServiceAccountName
		if fs, ok := accounts[sa]; ok { // one ServiceAccount for both: counted together
			*b.schema = fs
			continue
		}
		*b.schema = flowSchemaPrefix + b.deployment
		accounts[sa] = *b.schema
		if err := createFlowSchema(ctx, kube, *b.schema, c.Namespace, sa); err != nil {
			return nil, err
		}
	}
	time.Sleep(3 * time.Second) // the API server's flow control picks them up
	return w, nil
}

func createFlowSchema(ctx context.Context, kube kubernetes.Interface, name, namespace, sa string) error {
	all := []string{"*"}
	fs := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: flowcontrolv1.FlowSchemaSpec{
		PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-low"},
		MatchingPrecedence:         1000, // the default "service-accounts" is 9000
		DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
		Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
			Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindServiceAccount,
				ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: namespace, Name: sa}}},
			ResourceRules:    []flowcontrolv1.ResourcePolicyRule{{Verbs: all, APIGroups: all, Resources: all, ClusterScope: true, Namespaces: all}},
			NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: all, NonResourceURLs: all}},
		}},
	}}
	if _, err := kube.FlowcontrolV1().FlowSchemas().Create(ctx, fs, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("the FlowSchema counting the requests of %s/%s: %w", namespace, sa, err)
	}
	return nil
}

// Steady is both binaries over a period with nothing changing.
type Steady struct {
	Webhook, Controller Binary
	SecretWrites        int // secret creates, updates, patches and deletes, from anyone
	// Objects and ObjectBytes are the API server's stored objects by resource ("secrets",
	// "leases.coordination.k8s.io") at the end, and its estimate of their serialized size
	// (apiserver_resource_objects, apiserver_resource_size_estimate_bytes; it updates them every
	// minute or so): what the informers could hold, before their transforms.
	Objects, ObjectBytes map[string]int
}

// point is what is counted at the start and at the end of a period.
type point struct {
	requests             map[string]float64 // by FlowSchema
	writes               int
	objects, objectBytes map[string]int
	webhook, controller  []sample
}

func (w *watcher) read(ctx context.Context) (point, error) {
	p := point{requests: map[string]float64{}, objects: map[string]int{}, objectBytes: map[string]int{}}
	var err error
	if p.writes, err = secretWrites(ctx, w.kube, "POST", "PUT", "PATCH", "DELETE"); err != nil {
		return p, err
	}
	err = apiserverMetrics(ctx, w.kube, func(l string) {
		switch {
		case strings.HasPrefix(l, "apiserver_flowcontrol_dispatched_requests_total{"):
			if fs := label(l, "flow_schema"); strings.HasPrefix(fs, flowSchemaPrefix) {
				p.requests[fs] += sampleValue(l)
			}
		case strings.HasPrefix(l, "apiserver_resource_objects{"):
			p.objects[groupResource(l)] = int(sampleValue(l))
		case strings.HasPrefix(l, "apiserver_resource_size_estimate_bytes{"):
			p.objectBytes[groupResource(l)] = int(sampleValue(l))
		}
	})
	if err != nil {
		return p, err
	}
	if p.webhook, err = w.bin.snapshot(ctx, w.bin.webhook, false); err != nil {
		return p, err
	}
	p.controller, err = w.bin.snapshot(ctx, w.bin.controller, true)
	return p, err
}

// steady watches both binaries for d.
func (w *watcher) steady(ctx context.Context, d time.Duration) (Steady, error) {
	a, err := w.read(ctx)
	if err != nil {
		return Steady{}, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return Steady{}, ctx.Err()
	case <-time.After(d):
	}
	b, err := w.read(ctx)
	if err != nil {
		return Steady{}, err
	}
	el := time.Since(t0)
	perMin := func(fs string) float64 { return (b.requests[fs] - a.requests[fs]) / el.Minutes() }
	return Steady{
		Webhook:      Binary{Replicas: replicas(a.webhook, b.webhook, el), RequestsPerMin: perMin(w.webhookSchema)},
		Controller:   Binary{Replicas: replicas(a.controller, b.controller, el), RequestsPerMin: perMin(w.controllerSchema)},
		SecretWrites: b.writes - a.writes, Objects: b.objects, ObjectBytes: b.objectBytes,
	}, nil
}

// memory reads both binaries' memory now (CPU and requests need a period: not given).
func (w *watcher) memory(ctx context.Context) (webhook, controller Binary, err error) {
	p, err := w.read(ctx)
	if err != nil {
		return webhook, controller, err
	}
	return Binary{Replicas: replicas(nil, p.webhook, 0)}, Binary{Replicas: replicas(nil, p.controller, 0)}, nil
}

// groupResource is the resource of a sample line, its group after a dot unless it is core.
func groupResource(line string) string {
	r := label(line, "resource")
	if g := label(line, "group"); g != "" {
		r += "." + g
	}
	return r
}

// label is the value of a label of a sample line ("" when it has none).
func label(line, name string) string {
	i := strings.Index(line, "{"+name+`="`)
	if i < 0 {
		i = strings.Index(line, ","+name+`="`)
	}
	if i < 0 {
		return ""
	}
	v, _, _ := strings.Cut(line[i+len(name)+3:], `"`)
	return v
}

// watchRotation follows the bench's pull secrets from now on, and reports on the channel once
// want of them hold password: one watch, where polling would list them all again and again.
func watchRotation(ctx context.Context, kube kubernetes.Interface, names []string, password string, want int) (<-chan error, error) {
	opts := metav1.ListOptions{LabelSelector: "pullpass.io/role=pull-secret"}
	list, err := kube.CoreV1().Secrets("").List(ctx, opts)
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for i := range list.Items {
		if s := &list.Items[i]; holds(s, names, password) {
			done[s.Namespace+"/"+s.Name] = true
		}
	}
	rv := list.ResourceVersion
	out := make(chan error, 1)
	go func() {
		for len(done) < want {
			opts.ResourceVersion, opts.AllowWatchBookmarks = rv, true
			wi, err := kube.CoreV1().Secrets("").Watch(ctx, opts)
			if err != nil {
				out <- err
				return
			}
			for ev := range wi.ResultChan() {
				if ev.Type == watch.Error {
					wi.Stop()
					out <- fmt.Errorf("watching the pull secrets: %v", ev.Object)
					return
				}
				s, ok := ev.Object.(*corev1.Secret)
				if !ok {
					continue
				}
				rv = s.ResourceVersion
				if ev.Type == watch.Added || ev.Type == watch.Modified {
					if holds(s, names, password) {
						done[s.Namespace+"/"+s.Name] = true
					}
				}
				if len(done) >= want {
					break
				}
			}
			wi.Stop()
			if ctx.Err() != nil {
				out <- ctx.Err()
				return
			}
		}
		out <- nil
	}()
	return out, nil
}
