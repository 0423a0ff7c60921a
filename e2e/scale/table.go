package scale

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// WriteTable writes the figures as a Markdown table, each beside its baseline from the same run
// and their ratio. A run stopped early writes the rows it has.
func (r Result) WriteTable(w io.Writer, registries int) {
	row := func(what, got, base string, ratio float64) {
		q := ""
		if ratio > 0 {
			q = fmt.Sprintf("%.2f", ratio)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", what, got, base, q)
	}
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	s := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	fmt.Fprintf(w, "| what | pullpass | baseline (same run) | ratio |\n|---|---|---|---|\n")
	if r.PullSecrets > 0 {
		row("pull secrets (namespaces × registries)", fmt.Sprint(r.PullSecrets), "", 0)
		fmt.Fprintf(w, "| first pod of an opted-in namespace (writes %d secrets), p50 / p99; baseline: a pod in a plain namespace | %s / %s | %s / %s | %.2f / %.2f |\n", registries,
			ms(r.AdmissionP50), ms(r.AdmissionP99), ms(r.PlainAdmissionP50), ms(r.PlainAdmissionP99),
			div(r.AdmissionP50.Seconds(), r.PlainAdmissionP50.Seconds()), div(r.AdmissionP99.Seconds(), r.PlainAdmissionP99.Seconds()))
		row("opted-in pods admitted without their secrets (the webhook failed open)", fmt.Sprint(r.FailedOpen), "", 0)
	}
	if r.Converge > 0 {
		base := "not taken (the run stopped)"
		switch {
		case r.BaselineBefore == 0 && r.BaselineAfter > 0:
			base = fmt.Sprintf("%s (once, after)", s(r.Baseline))
		case r.BaselineAfter > 0:
			base = fmt.Sprintf("%s (%s before / %s after)", s(r.Baseline), s(r.BaselineBefore), s(r.BaselineAfter))
		case r.BaselineBefore > 0:
			base = fmt.Sprintf("%s (before only: the run stopped)", s(r.Baseline))
		}
		row("every source rotated into every namespace (the controller's keeper); baseline: as many plain Secret updates, one client, same limits",
			fmt.Sprintf("%s (%d writes)", s(r.Converge), r.ConvergeWrites), base, div(r.Converge.Seconds(), r.Baseline.Seconds()))
	}
	if len(r.Loaded.Webhook.Replicas)+len(r.Loaded.Controller.Replicas) == 0 {
		return
	}
	idle, ld := r.Idle, r.Loaded
	iw, lw := idle.Webhook, ld.Webhook
	ic, lc := idle.Controller, ld.Controller
	// The webhook: every replica, the worst, the sum.
	for _, rep := range slices.Concat(lw.Replicas, lc.Replicas) {
		if rep.Unread != "" {
			row("replica "+rep.Pod+": metrics unread at the end of the steady state", rep.Unread, "", 0)
		}
	}
	for _, rep := range lw.Replicas {
		base := find(iw, rep.Pod)
		row("webhook replica "+rep.Pod+": RSS / Go heap at steady state; baseline: idle, before the namespaces",
			MiB(rep.RSS)+" / "+MiB(rep.Heap), MiB(base.RSS)+" / "+MiB(base.Heap), div(rep.RSS, base.RSS))
	}
	lrss, lheap, lcpu := lw.Sum()
	irss, iheap, icpu := iw.Sum()
	row(fmt.Sprintf("webhook, worst of %d replicas: RSS", len(lw.Replicas)), MiB(lw.Worst().RSS), MiB(iw.Worst().RSS), div(lw.Worst().RSS, iw.Worst().RSS))
	row(fmt.Sprintf("webhook, all %d replicas: RSS / Go heap", len(lw.Replicas)), MiB(lrss)+" / "+MiB(lheap), MiB(irss)+" / "+MiB(iheap), div(lrss, irss))
	gc := func(r Replica) string {
		limit := "none"
		if r.MemLimit > 0 && r.MemLimit < 1<<60 {
			limit = MiB(r.MemLimit)
		}
		return MiB(r.HeapAlloc) + " / " + MiB(r.NextGC) + " / " + limit
	}
	row("webhook, worst replica: Go heap allocated / next GC at / GOMEMLIMIT", gc(lw.Worst()), gc(iw.Worst()), div(lw.Worst().HeapAlloc, iw.Worst().HeapAlloc))
	row("webhook, all replicas: CPU (cores)", fmt.Sprintf("%.4f", lcpu), fmt.Sprintf("%.4f", icpu), div(lcpu, icpu))
	row("webhook ServiceAccount: API requests per minute", fmt.Sprintf("%.1f", lw.RequestsPerMin), fmt.Sprintf("%.1f", iw.RequestsPerMin), div(lw.RequestsPerMin, iw.RequestsPerMin))
	// The controller: the leader, then the standbys.
	if l, ok := lc.Leader(); ok {
		il, _ := ic.Leader()
		row("controller leader ("+l.Pod+"): RSS", MiB(l.RSS), MiB(il.RSS), div(l.RSS, il.RSS))
		row("controller leader: Go heap in use", MiB(l.Heap), MiB(il.Heap), div(l.Heap, il.Heap))
		row("controller leader: Go heap allocated / next GC at / GOMEMLIMIT", gc(l), gc(il), div(l.HeapAlloc, il.HeapAlloc))
		row("controller leader: CPU (cores)", fmt.Sprintf("%.4f", l.CPU), fmt.Sprintf("%.4f", il.CPU), div(l.CPU, il.CPU))
	} else {
		row("controller: no replica told apart as the leader", "", "", 0)
	}
	standbys := lc.Standbys()
	for _, sb := range standbys {
		base := find(ic, sb.Pod)
		row("controller standby "+sb.Pod+": RSS / Go heap / CPU", fmt.Sprintf("%s / %s / %.4f", MiB(sb.RSS), MiB(sb.Heap), sb.CPU),
			fmt.Sprintf("%s / %s / %.4f", MiB(base.RSS), MiB(base.Heap), base.CPU), div(sb.RSS, base.RSS))
	}
	if len(standbys) == 0 {
		row("controller standby", "none running (one replica)", "", 0)
	}
	row("controller ServiceAccount: API requests per minute", fmt.Sprintf("%.1f", lc.RequestsPerMin), fmt.Sprintf("%.1f", ic.RequestsPerMin), div(lc.RequestsPerMin, ic.RequestsPerMin))
	restarts := func(b Binary) (n int32) {
		for _, r := range b.Replicas {
			n += r.Restarts
		}
		return n
	}
	row("container restarts (webhook / controller)", fmt.Sprintf("%d / %d", restarts(lw), restarts(lc)), fmt.Sprintf("%d / %d", restarts(iw), restarts(ic)), 0)
	if r.PeakWebhook.RSS > 0 || r.PeakController.RSS > 0 {
		row("most RSS / Go heap of a replica, from the namespaces' creation to the end (every 10 s): webhook", MiB(r.PeakWebhook.RSS)+" / "+MiB(r.PeakWebhook.Heap),
			MiB(iw.Worst().RSS)+" / "+MiB(iw.Worst().Heap), div(r.PeakWebhook.RSS, iw.Worst().RSS))
		row("the same: controller", MiB(r.PeakController.RSS)+" / "+MiB(r.PeakController.Heap),
			MiB(ic.Worst().RSS)+" / "+MiB(ic.Worst().Heap), div(r.PeakController.RSS, ic.Worst().RSS))
	}
	if len(r.EndWebhook.Replicas) > 0 {
		row("at the end, after the rotation: webhook worst RSS / Go heap", MiB(r.EndWebhook.Worst().RSS)+" / "+MiB(r.EndWebhook.Worst().Heap),
			MiB(iw.Worst().RSS)+" / "+MiB(iw.Worst().Heap), div(r.EndWebhook.Worst().RSS, iw.Worst().RSS))
		if l, ok := r.EndController.Leader(); ok {
			il, _ := ic.Leader()
			row("at the end: controller leader RSS / Go heap", MiB(l.RSS)+" / "+MiB(l.Heap), MiB(il.RSS)+" / "+MiB(il.Heap), div(l.RSS, il.RSS))
		}
	}
	row(fmt.Sprintf("Secret writes in %s, nothing changing", r.QuietPeriod), fmt.Sprint(ld.SecretWrites), fmt.Sprint(idle.SecretWrites), 0)
	objs := func(s Steady) string {
		var out []string
		for _, r := range []string{"namespaces", "secrets", "pods", "events"} {
			if s.Objects[r] < 0 { // -1: the API server could not count them (seen on the harness)
				out = append(out, "n/a")
				continue
			}
			out = append(out, fmt.Sprintf("%d (%s)", s.Objects[r], MiB(float64(max(s.ObjectBytes[r], 0)))))
		}
		return strings.Join(out, " / ")
	}
	row("objects in the API server (serialized size, its estimate): namespaces / secrets / pods / events", objs(ld), objs(idle), 0)
}

func find(b Binary, pod string) Replica {
	for _, r := range b.Replicas {
		if r.Pod == pod {
			return r
		}
	}
	return Replica{}
}
