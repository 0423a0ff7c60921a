package cli

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrylogin"
)

// Reasons of the Verified condition that say the registry could not be verified at all.
const (
	reasonNotVerifiable = "NotVerifiable"
	reasonNoCredentials = "NoCredentials"
)

// waitVerified waits up to timeout for pullpass's login to the registry with the credentials just
// written, and reports it as docker login does: "Login Succeeded", or the registry's refusal of
// the credentials (401, 403) as an error (exit 1; the registry stays, so another add can fix the
// password). A login that could not be made (unreachable, TLS, rate limit) is a warning. No verdict in time is
// not an error: pullpass may not run in this cluster yet.
func waitVerified(ctx context.Context, o *options, c *Clients, name string, timeout time.Duration) error {
	reg, err := c.Registries.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("registry %q: %w", name, err)
	}
	wantSource := ""
	if refs := reg.Spec.Auth.SecretRefs(); len(refs) == 1 && reg.Spec.Auth.ECR == nil {
		s, err := c.Kube.CoreV1().Secrets(refs[0].Namespace).Get(ctx, refs[0].Name, metav1.GetOptions{})
		if err == nil {
			wantSource = s.ResourceVersion
		} else if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			return fmt.Errorf("secret %s/%s: %w", refs[0].Namespace, refs[0].Name, err)
		}
	}
	gen := reg.Generation
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		cond, fresh := verdict(reg, gen, wantSource)
		if fresh {
			return report(o, reg, cond)
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(o.streams.ErrOut, "registry %s: not verified within %s (is pullpass running?); `kubectl get registry %s` shows the Verified condition when it is\n", name, timeout, name)
			return nil
		case <-time.After(250 * time.Millisecond):
		}
		if reg, err = c.Registries.Get(wctx, name, metav1.GetOptions{}); err != nil && wctx.Err() == nil {
			return fmt.Errorf("registry %q: %w", name, err)
		}
	}
}

// verdict returns the Verified condition when it was made for this generation and source.
func verdict(reg *v1alpha1.Registry, gen int64, source string) (*metav1.Condition, bool) {
	cond := meta.FindStatusCondition(reg.Status.Conditions, v1alpha1.ConditionVerified)
	ver := reg.Status.Verification
	if cond == nil || ver == nil || cond.ObservedGeneration < gen || ver.ObservedGeneration < gen {
		return nil, false
	}
	return cond, source == "" || ver.SourceVersion == source || cond.Reason == reasonNoCredentials
}

func report(o *options, reg *v1alpha1.Registry, cond *metav1.Condition) error {
	switch cond.Status {
	case metav1.ConditionTrue:
		fmt.Fprintln(o.streams.Out, "Login Succeeded")
		if l := reg.Status.Verification.PullLimit; l != nil {
			fmt.Fprintf(o.streams.Out, "pull limit: %d per %s, %d remaining\n", l.Limit, time.Duration(l.WindowSeconds)*time.Second, l.Remaining)
		}
		return nil
	case metav1.ConditionUnknown:
		fmt.Fprintf(o.streams.ErrOut, "registry %s: not verified (%s): %s\n", reg.Name, cond.Reason, cond.Message)
		return nil
	}
	if cond.Reason != registrylogin.Unauthorized && cond.Reason != registrylogin.Forbidden {
		// Not the registry refusing the credentials (unreachable from pullpass, a TLS or rate
		// limit problem): say so, keep trying in the cluster, and do not fail the add.
		fmt.Fprintf(o.streams.ErrOut, "registry %s: could not log in yet (%s): %s; pullpass keeps trying (`kubectl get registry %s`)\n", reg.Name, cond.Reason, cond.Message, reg.Name)
		return nil
	}
	return fmt.Errorf("%s (%s); registry %s is kept: run add again with the right credentials, or remove it", cond.Message, cond.Reason, reg.Name)
}

// verifiedOf is the VERIFIED column: the condition's status, and its reason unless Verified.
func verifiedOf(r *v1alpha1.Registry) string {
	c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionVerified)
	if c == nil {
		return "Unknown"
	}
	if c.Status != metav1.ConditionTrue && c.Reason != "" {
		return string(c.Status) + " (" + c.Reason + ")"
	}
	return string(c.Status)
}
