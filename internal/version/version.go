// Package version is the agent's version: what tcpspan -version prints, and
// what the instrumentation scope of its spans and metrics carries.
//
// It holds the version and nothing else: it must not import other tcpspan
// packages, so that any of them can use it.
package version

import (
	"runtime/debug"
	"sync"
)

// version, when set at link time, overrides the version Go recorded:
//
//	go build -ldflags "-X github.com/tcpspan/tcpspan/internal/version.version=v1.2.3" ./cmd/tcpspan
var version string

// Devel is the version of a build that has no other: a test binary, or a
// build outside a module or repository.
const Devel = "(devel)"

// Version returns the release the binary was built as: the link-time value
// if one was given, else the main module's version that the go command
// recorded (a tag, or a pseudo-version of the commit, with +dirty for a
// tree with uncommitted changes), else [Devel].
func Version() string {
	return cached()
}

var cached = sync.OnceValue(func() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Devel
	}
	return fromBuildInfo(info)
})

func fromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != Devel {
		return v
	}
	return Devel
}
