package version

import (
	"flag"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/pullpass/pullpass", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0f361c8aa"},
			{Key: "vcs.time", Value: "2026-12-06T07:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name                string
		ldVersion, ldCommit string
		ldDate              string
		bi                  *debug.BuildInfo
		want                Info
	}{{
		name:      "release build: the linker's values win over the VCS stamp",
		ldVersion: "v1.2.3", ldCommit: "abc123", ldDate: "2026-12-06T08:00:00Z", bi: stamped,
		want: Info{Version: "v1.2.3", Commit: "abc123", BuildDate: "2026-12-06T08:00:00Z", GoVersion: "go1.26.8", Platform: platform},
	}, {
		name: "build in a checkout with changes: the VCS stamp, marked dirty",
		bi:   stamped,
		want: Info{Version: "devel", Commit: "0f361c8aa-dirty", BuildDate: "2026-12-06T07:00:00Z", GoVersion: "go1.26.8", Platform: platform},
	}, {
		name: "go install ...@v1.4.0: the module version",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}},
		want: Info{Version: "v1.4.0", Commit: "unknown", BuildDate: "unknown", GoVersion: "go1.26.8", Platform: platform},
	}, {
		name: "no build info at all",
		want: Info{Version: "devel", Commit: "unknown", BuildDate: "unknown", GoVersion: runtime.Version(), Platform: platform},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolve(tc.ldVersion, tc.ldCommit, tc.ldDate, tc.bi); got != tc.want {
				t.Errorf("resolve() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLine(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "abc123", BuildDate: "2026-12-06T08:00:00Z", GoVersion: "go1.26.8", Platform: "linux/arm64"}
	want := "pullpass-agent v1.2.3 (commit abc123, built 2026-12-06T08:00:00Z, go1.26.8, linux/arm64)"
	if got := i.Line("pullpass-agent"); got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
}

func TestFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	v := Flag(fs)
	if err := fs.Parse([]string{"--version"}); err != nil {
		t.Fatal(err)
	}
	if !*v {
		t.Error("--version did not set the flag")
	}
}
