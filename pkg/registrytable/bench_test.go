package registrytable_test

import (
	"fmt"
	"testing"

	"github.com/pullpass/pullpass/pkg/allocbudget"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// benchRegistries is a 1,000-entry table shaped like a large platform's: exact hosts, hosts with
// ports, per-team path prefixes on shared registries, and globs.
func benchRegistries() []*v1alpha1.Registry {
	var regs []*v1alpha1.Registry
	for i := 0; len(regs) < 1000; i++ {
		switch i % 5 {
		case 0:
			regs = append(regs, reg(fmt.Sprintf("exact-%d", i), fmt.Sprintf("registry-%d.example.com", i)))
		case 1:
			regs = append(regs, reg(fmt.Sprintf("port-%d", i), fmt.Sprintf("harbor-%d.internal:5000", i)))
		case 2:
			regs = append(regs, reg(fmt.Sprintf("team-%d", i), fmt.Sprintf("ghcr.io/team-%d", i)))
		case 3:
			regs = append(regs, reg(fmt.Sprintf("ecr-%d", i), fmt.Sprintf("%012d.dkr.ecr.*.amazonaws.com", i)))
		case 4:
			regs = append(regs, reg(fmt.Sprintf("glob-%d", i), fmt.Sprintf("*.zone-%d.example.*", i)))
		}
	}
	return regs
}

// benchPod is the images of one pod with 10 containers, some served and some not.
var benchPod = []string{
	"nginx:1.27",
	"ghcr.io/team-502/api:v1.4.2",
	"ghcr.io/unknown-team/tool:latest",
	"000000000003.dkr.ecr.eu-west-1.amazonaws.com/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	"registry-500.example.com/platform/sidecar:3",
	"harbor-996.internal:5000/batch/job:7",
	"a.zone-4.example.org/x:1",
	"quay.io/prometheus/node-exporter:v1.8.0",
	"registry.k8s.io/pause:3.10",
	"busybox",
}

// benchTable is the 1,000-entry table, checked to serve five of benchPod's images.
func benchTable(t testing.TB) *registrytable.Table {
	table := registrytable.Build(benchRegistries())
	if table.Len() != 1000 {
		t.Fatalf("table has %d entries", table.Len())
	}
	served := 0
	for _, img := range benchPod {
		if _, ok, _ := table.Lookup(img); ok {
			served++
		}
	}
	if served != 5 {
		t.Fatalf("%d of the pod's images are served, want 5", served)
	}
	return table
}

// The lookups of a 10-image pod allocate only for Docker Hub short forms ("nginx" is
// docker.io/library/nginx) and the digest, which the reference library parses.
func TestPod10ImagesAllocationBudget(t *testing.T) {
	table := benchTable(t)
	allocbudget.Check(t, "table lookups of a 10-image pod", 13, func() {
		for _, img := range benchPod {
			_, _, _ = table.Lookup(img)
		}
	})
}

func BenchmarkPod10Images1000Registries(b *testing.B) {
	table := benchTable(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, img := range benchPod {
			if _, _, err := table.Lookup(img); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkPod10Images1000RegistriesLinear is the baseline: the kubelet's way, every pattern
// tried against every image, most specific kept.
func BenchmarkPod10Images1000RegistriesLinear(b *testing.B) {
	var entries []match.Entry[*v1alpha1.Registry]
	for _, r := range benchRegistries() {
		for _, h := range r.Spec.Hosts {
			p, err := match.ParsePattern(h)
			if err != nil {
				b.Fatal(err)
			}
			entries = append(entries, match.Entry[*v1alpha1.Registry]{Name: r.Name, Pattern: p, Value: r})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, img := range benchPod {
			ref, err := image.Parse(img)
			if err != nil {
				b.Fatal(err)
			}
			repo := ref.Repository()
			var best *match.Entry[*v1alpha1.Registry]
			for i := range entries {
				if entries[i].Pattern.Matches(repo) && (best == nil || len(entries[i].Pattern.Path()) > len(best.Pattern.Path())) {
					best = &entries[i]
				}
			}
		}
	}
}
