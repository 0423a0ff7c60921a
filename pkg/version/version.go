// Package version says which build of pullpass is running: version, commit and build date, set
// by the release build through -ldflags -X, else read from the Go toolchain's VCS stamp.
package version

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by the release build (hack/release):
//
//	-X github.com/pullpass/pullpass/pkg/version.version=v1.2.3
//	-X github.com/pullpass/pullpass/pkg/version.commit=<git sha>
//	-X github.com/pullpass/pullpass/pkg/version.date=<RFC 3339 UTC>
var version, commit, date string

// Info is one build's identity.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the running binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

// unknown stands for what neither the linker flags nor the build info say.
const unknown = "unknown"

// resolve prefers the linker's values (a release build says exactly what it is) and falls back
// to what `go build` stamps from git: the module version of `go install ...@vX`, or the VCS
// revision and commit time of a build in a checkout ("-dirty" when it had changes).
func resolve(ldVersion, ldCommit, ldDate string, bi *debug.BuildInfo) Info {
	info := Info{Version: ldVersion, Commit: ldCommit, BuildDate: ldDate,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		info.GoVersion = bi.GoVersion
		var revision, vcsTime string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Commit == "" && revision != "" {
			info.Commit = revision
			if modified {
				info.Commit += "-dirty"
			}
		}
		if info.BuildDate == "" {
			info.BuildDate = vcsTime
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = unknown
	}
	if info.BuildDate == "" {
		info.BuildDate = unknown
	}
	return info
}

// Line is the one line `NAME version` and `NAME --version` print.
func (i Info) Line(name string) string {
	return fmt.Sprintf("%s %s (commit %s, built %s, %s, %s)", name, i.Version, i.Commit, i.BuildDate, i.GoVersion, i.Platform)
}

// Flag registers --version on fs. After Parse, true means: print Get().Line(name) and exit 0.
func Flag(fs *flag.FlagSet) *bool {
	return fs.Bool("version", false, "print the version, commit and build date, and exit")
}
