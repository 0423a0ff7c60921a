// Command kindnet is the pod network of the kind node image built offline here (e2e/kind): it
// stands in for kind's kindnetd, whose source is not in the kind module, and runs from kind's
// own default CNI manifest (a host-network DaemonSet with HOST_IP, POD_IP and POD_SUBNET).
//
// It does what kindnetd does for a single-stack cluster on one docker network:
//   - writes this node's CNI config (ptp + host-local over the node's podCIDRs, portmap), so
//     the kubelet reports the node Ready;
//   - routes every other node's podCIDRs via that node's InternalIP (all nodes share one L2);
//   - masquerades traffic from pods to anything outside the pod subnet (the registry, the
//     docker network's gateway), which has no route back to pod addresses.
//
// It resyncs every few seconds from a node list: the clusters it serves have a handful of nodes.
// It execs ip and iptables from its image, which match the node's (Debian, iptables-nft).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, log); err != nil {
		stop()
		log.Error("kindnet failed", "err", err)
		os.Exit(1) //nolint:gocritic // stop ran: nothing deferred is left to do
	}
}

type config struct {
	hostIP    string
	podSubnet []string
	cniDir    string
	interval  time.Duration
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg := config{
		hostIP:   os.Getenv("HOST_IP"),
		cniDir:   envOr("CNI_CONFIG_DIR", "/etc/cni/net.d"),
		interval: 5 * time.Second,
	}
	for _, s := range strings.Split(os.Getenv("POD_SUBNET"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.podSubnet = append(cfg.podSubnet, s)
		}
	}
	if cfg.hostIP == "" || len(cfg.podSubnet) == 0 {
		return fmt.Errorf("invalid configuration: HOST_IP and POD_SUBNET must be set")
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("in-cluster config: %w", err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	log.Info("kindnet started", "hostIP", cfg.hostIP, "podSubnet", cfg.podSubnet)
	t := time.NewTicker(cfg.interval)
	defer t.Stop()
	for {
		if err := sync(ctx, log, kube, cfg); err != nil {
			log.Error("sync failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func sync(ctx context.Context, log *slog.Logger, kube kubernetes.Interface, cfg config) error {
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	var errs []error
	for i := range nodes.Items {
		n := &nodes.Items[i]
		ip := internalIPv4(n)
		cidrs := podCIDRsV4(n)
		if ip == "" || len(cidrs) == 0 {
			continue
		}
		if ip == cfg.hostIP {
			changed, err := writeCNIConfig(cfg.cniDir, cidrs)
			if err != nil {
				return err
			}
			if changed {
				log.Info("wrote CNI config", "node", n.Name, "podCIDRs", cidrs)
			}
			continue
		}
		for _, c := range cidrs {
			if out, err := exec.CommandContext(ctx, "ip", "route", "replace", c, "via", ip).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("route %s via %s (node %s): %w: %s", c, ip, n.Name, err, out))
			}
		}
	}
	if err := ensureMasquerade(cfg.podSubnet); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func internalIPv4(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && net.ParseIP(a.Address).To4() != nil {
			return a.Address
		}
	}
	return ""
}

func podCIDRsV4(n *corev1.Node) []string {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var out []string
	for _, c := range cidrs {
		if ip, _, err := net.ParseCIDR(c); err == nil && ip.To4() != nil {
			out = append(out, c)
		}
	}
	return out
}

// writeCNIConfig writes the node's CNI config list when it differs, atomically.
func writeCNIConfig(dir string, cidrs []string) (bool, error) {
	var ranges [][]map[string]string
	for _, c := range cidrs {
		ranges = append(ranges, []map[string]string{{"subnet": c}})
	}
	conf := map[string]any{
		"cniVersion": "0.3.1",
		"name":       "kindnet",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    1500,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"ranges":  ranges,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return false, err
	}
	path := filepath.Join(dir, "10-kindnet.conflist")
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return false, nil
	}
	tmp := filepath.Join(dir, ".10-kindnet.conflist.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

// ensureMasquerade keeps a nat chain that masquerades pod traffic leaving the pod subnet.
func ensureMasquerade(podSubnet []string) error {
	var b strings.Builder
	b.WriteString("*nat\n:KIND-MASQ-AGENT - [0:0]\n")
	for _, s := range podSubnet {
		fmt.Fprintf(&b, "-A KIND-MASQ-AGENT -d %s -j RETURN\n", s)
	}
	b.WriteString("-A KIND-MASQ-AGENT -j MASQUERADE\nCOMMIT\n")
	restore := exec.Command("iptables-restore", "--noflush")
	restore.Stdin = strings.NewReader(b.String())
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, out)
	}
	rule := []string{"POSTROUTING", "-m", "addrtype", "!", "--dst-type", "LOCAL", "-m", "comment", "--comment", "kind-masq-agent", "-j", "KIND-MASQ-AGENT"}
	if exec.Command("iptables", append([]string{"-t", "nat", "-C"}, rule...)...).Run() == nil {
		return nil
	}
	if out, err := exec.Command("iptables", append([]string{"-t", "nat", "-A"}, rule...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables -A POSTROUTING: %w: %s", err, out)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
