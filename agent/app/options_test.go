package app

import (
	"strings"
	"testing"
	"time"
)

// The restart and taint flags say what they need rather than fail later on a node.
func TestOptionsRestartKubeletNeeds(t *testing.T) {
	for name, c := range map[string]struct {
		set  func(*Options)
		want string
	}{
		"restart in legacy mode": {func(o *Options) { o.RestartKubelet, o.Mode, o.KubeletDockerConfig = true, ModeLegacy, "/x" }, "--restart-kubelet needs provider mode"},
		"restart without a node": {func(o *Options) { o.RestartKubelet, o.NodeName = true, "" }, "--restart-kubelet needs provider mode, --node-name"},
		"a short lease":          {func(o *Options) { o.RestartKubelet, o.RestartLeaseDuration = true, time.Second }, "--restart-lease-duration of at least 3s"},
		"taint without a node":   {func(o *Options) { o.RemoveStartupTaint, o.NodeName = true, "" }, "--remove-startup-taint needs --node-name"},
		"both, well set":         {func(o *Options) { o.RestartKubelet, o.RemoveStartupTaint = true, true }, ""},
	} {
		t.Run(name, func(t *testing.T) {
			o := DefaultOptions()
			o.NodeName = "node-a"
			c.set(o)
			err := o.Validate()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("Validate: %v, want %q", err, c.want)
			}
		})
	}
}
