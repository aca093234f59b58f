package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, c := range []struct{ main, want string }{
		{"v1.2.3", "v1.2.3"},
		{"v0.0.0-20261206110000-0123456789ab+dirty", "v0.0.0-20261206110000-0123456789ab+dirty"},
		{"(devel)", Devel},
		{"", Devel},
	} {
		info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/tcpspan/tcpspan", Version: c.main}}
		if got := fromBuildInfo(info); got != c.want {
			t.Errorf("main module version %q: %q, want %q", c.main, got, c.want)
		}
	}
}
