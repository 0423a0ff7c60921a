// Package nodeaccess decides which Secrets the node agents may read: the sources of the
// registries that nodes serve, in pullpass's namespace, and nothing else. RBAC cannot limit
// Secrets by label, and a Role on every Secret of the namespace would hand every node the
// webhook's CA and serving key. So the controller's leader keeps the agents' Role to exactly these
// names (RoleKeeper), and each agent watches exactly these names (agent/sources).
package nodeaccess

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// ServedByNode reports whether the node agents serve a registry (rather than the webhook's
// pull secrets): Cluster scope, or Namespaced delivered by the node.
func ServedByNode(r *v1alpha1.Registry) bool {
	return r.Spec.EffectiveDelivery() == v1alpha1.DeliveryNode && r.DeletionTimestamp == nil
}

// SourceSecrets returns the names, sorted and unique, of the Secrets in namespace that the
// registries served by nodes read. Names of pullpass's own Secrets (secrets.Reserved: pull
// secrets, the webhook's TLS Secret) and the names in reserved are left out: a Registry naming
// one never gets the nodes its contents (its resolver refuses it too).
func SourceSecrets(regs []*v1alpha1.Registry, namespace string, reserved ...string) []string {
	var names []string
	for _, r := range regs {
		if !ServedByNode(r) {
			continue
		}
		for _, ref := range r.Spec.Auth.SecretRefs() {
			if ref.Namespace == namespace && !secrets.Reserved(ref.Name) && !slices.Contains(reserved, ref.Name) {
				names = append(names, ref.Name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Rules grants reading (and watching, one name at a time) exactly the named Secrets. No names,
// no rule: a rule with no resourceNames would grant every Secret.
func Rules(names []string) []rbacv1.PolicyRule {
	if len(names) == 0 {
		return nil
	}
	return []rbacv1.PolicyRule{{
		APIGroups:     []string{""},
		Resources:     []string{"secrets"},
		Verbs:         []string{"get", "list", "watch"},
		ResourceNames: slices.Clone(names),
	}}
}

// Registries lists the cached Registry objects.
type Registries interface {
	List() []*v1alpha1.Registry
}

// RoleKeeperConfig configures a RoleKeeper.
type RoleKeeperConfig struct {
	Client     kubernetes.Interface
	Namespace  string // pullpass's namespace: the Role's and the sources'
	RoleName   string // the agents' sources Role, made by the chart without rules
	Registries Registries
	// Reserved names pullpass's own Secrets in Namespace, never granted whatever a Registry
	// names: the webhook's TLS Secret (its CA key would let a node serve as the webhook).
	Reserved []string
	Logger   *slog.Logger
}

// RoleKeeper writes the agents' sources Role.
type RoleKeeper struct {
	cfg  RoleKeeperConfig
	kick chan struct{}
}

// NewRoleKeeper returns a RoleKeeper.
func NewRoleKeeper(cfg RoleKeeperConfig) (*RoleKeeper, error) {
	if cfg.Client == nil || cfg.Registries == nil || cfg.Namespace == "" || cfg.RoleName == "" {
		return nil, errors.New("invalid configuration: client, registries, namespace and role name are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &RoleKeeper{cfg: cfg, kick: make(chan struct{}, 1)}, nil
}

// Kick asks for a sync soon (a Registry changed). It never blocks.
func (k *RoleKeeper) Kick() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Run syncs at start, on every Kick, and every Resync (a Role edited by hand or reset by an
// upgrade is put back), retrying failures with a growing delay, until ctx ends. The leader runs
// it.
func (k *RoleKeeper) Run(ctx context.Context, resync time.Duration) {
	retry := time.Second
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
		case <-timer.C:
		}
		wait := resync
		if err := k.Sync(ctx); err != nil && ctx.Err() == nil {
			k.cfg.Logger.Error("granting the node agents their sources", "err", err)
			wait, retry = retry, min(2*retry, resync)
		} else {
			retry = time.Second
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// Sync makes the Role grant exactly the Secrets the nodes need now, writing only on a change.
func (k *RoleKeeper) Sync(ctx context.Context) error {
	roles := k.cfg.Client.RbacV1().Roles(k.cfg.Namespace)
	role, err := roles.Get(ctx, k.cfg.RoleName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the agents' Role %s/%s: %w", k.cfg.Namespace, k.cfg.RoleName, err)
	}
	names := SourceSecrets(k.cfg.Registries.List(), k.cfg.Namespace, k.cfg.Reserved...)
	want := Rules(names)
	if apiequality.Semantic.DeepEqual(role.Rules, want) {
		return nil
	}
	role = role.DeepCopy()
	role.Rules = want
	if _, err := roles.Update(ctx, role, metav1.UpdateOptions{FieldManager: "pullpass-webhook"}); err != nil {
		if apierrors.IsConflict(err) {
			return err // the caller tries again with the new object
		}
		return fmt.Errorf("updating the agents' Role %s/%s: %w", k.cfg.Namespace, k.cfg.RoleName, err)
	}
	k.cfg.Logger.Info("node agents may read these sources", "role", k.cfg.RoleName, "secrets", names)
	return nil
}
