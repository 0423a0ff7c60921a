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

// flowSchema classifies the webhook's requests apart, so the API server counts them for us
// (apiserver_flowcontrol_dispatched_requests_total): nothing in the webhook needs to.
const flowSchema = "pullpass-scalebench"

type webhook struct {
	kube    kubernetes.Interface
	metrics string
}

// watchWebhook makes the API server count the webhook's requests: a FlowSchema for its service
// account, ahead of the default one for service accounts.
func watchWebhook(ctx context.Context, kube kubernetes.Interface, c Config) (*webhook, error) {
	d, err := kube.AppsV1().Deployments(c.WebhookNamespace).Get(ctx, c.WebhookDeployment, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the webhook's deployment: %w", err)
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	all := []string{"*"}
	fs := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: flowSchema}, Spec: flowcontrolv1.FlowSchemaSpec{
		PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-low"},
		MatchingPrecedence:         1000, // the default "service-accounts" is 9000
		DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
		Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
			Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindServiceAccount,
				ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: c.WebhookNamespace, Name: sa}}},
			ResourceRules:    []flowcontrolv1.ResourcePolicyRule{{Verbs: all, APIGroups: all, Resources: all, ClusterScope: true, Namespaces: all}},
			NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: all, NonResourceURLs: all}},
		}},
	}}
	if _, err := kube.FlowcontrolV1().FlowSchemas().Create(ctx, fs, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("the FlowSchema counting the webhook's requests: %w", err)
	}
	time.Sleep(3 * time.Second) // the API server's flow control picks it up
	return &webhook{kube: kube, metrics: c.WebhookMetrics}, nil
}

// steady watches the webhook for d.
func (w *webhook) steady(ctx context.Context, d time.Duration) (Process, error) {
	type point struct {
		requests, cpu float64
		writes        int
	}
	read := func() (point, error) {
		var p point
		var err error
		if p.writes, err = secretWrites(ctx, w.kube, "POST", "PUT", "PATCH", "DELETE"); err != nil {
			return p, err
		}
		err = apiserverMetrics(ctx, w.kube, func(l string) {
			if strings.HasPrefix(l, "apiserver_flowcontrol_dispatched_requests_total{") && strings.Contains(l, `flow_schema="`+flowSchema+`"`) {
				p.requests += sampleValue(l)
			}
		})
		p.cpu = w.metric("process_cpu_seconds_total")
		return p, err
	}
	a, err := read()
	if err != nil {
		return Process{}, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return Process{}, ctx.Err()
	case <-time.After(d):
	}
	b, err := read()
	if err != nil {
		return Process{}, err
	}
	el := time.Since(t0)
	return Process{
		RSS: w.metric("process_resident_memory_bytes"), Heap: w.metric("go_memstats_heap_inuse_bytes"),
		CPU: (b.cpu - a.cpu) / el.Seconds(), RequestsPerMin: (b.requests - a.requests) / el.Minutes(), SecretWrites: b.writes - a.writes,
	}, nil
}

// metric reads one unlabelled sample from the webhook's /metrics; 0 without a URL.
func (w *webhook) metric(name string) float64 {
	if w.metrics == "" {
		return 0
	}
	resp, err := http.Get(w.metrics)
	if err != nil {
		return 0
	}
	defer func() { _ = resp.Body.Close() }()
	v := 0.0
	_ = eachLine(resp.Body, func(l string) {
		if strings.HasPrefix(l, name+" ") {
			v = sampleValue(l)
		}
	})
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
