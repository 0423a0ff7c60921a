package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1/crd"
)

// The chart ships the same CRD the code embeds (and the e2e suite installs).
func TestChartCRDIsTheEmbeddedOne(t *testing.T) {
	chartCRD, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "charts/pullpass/crds/pullpass.io_registries.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chartCRD, crd.Registries) {
		t.Fatal("charts/pullpass/crds/pullpass.io_registries.yaml differs from pkg/apis/pullpass/v1alpha1/crd: copy it over")
	}
}
