package main

// The kinds of load a mode runs.
const (
	// kindHTTP is wrk -H 'Connection: close' against nginx: one new
	// connection per request; its rate is connections/s.
	kindHTTP = "http"
	// kindKeepalive is the same wrk without 'Connection: close': 32
	// connections for the whole run; its rate is requests/s.
	kindKeepalive = "keepalive"
	// kindStorm is bench/rstorm: connects to a closed port, each answered
	// by an RST; its rate is RSTs/s.
	kindStorm = "storm"
	// kindSyscall is bench/getpid: a tight getpid loop on one CPU; its rate
	// is calls/s, its figure ns per call.
	kindSyscall = "syscall"
	// kindLoop is bench/connloop: loopback connections one at a time on
	// one pinned CPU, in batches; its figure is ns per connection of the
	// fastest batch, its rate the connections/s that makes. Steadier than
	// wrk's rates, but not where the machine's speed drifts from round to
	// round (docs/performance.md); PROFILE=1's BPF statistics are not
	// moved by that.
	kindLoop = "loop"
)

// modeSpec is what a mode runs: its load, its agent and what it is compared
// with.
type modeSpec struct {
	Name string
	Kind string
	// Agent is "" (none), "tcpspan" or "bpftrace".
	Agent string
	// BinB runs BIN_B instead of bin/tcpspan (the modes named *-b).
	BinB bool
	// CleanRatio is tcpspan's -clean-ratio; "" leaves the flag out, so the
	// agent runs with its default (export every connection).
	CleanRatio string
	// Sink sends the spans to the counting receiver (bench/otlpsink), not
	// to Jaeger.
	Sink bool
	// Baseline is the mode with no agent that this one is compared with.
	Baseline string
	What     string
}

// modes lists every mode, in the order of the tables and the chart.
var modes = []modeSpec{
	{Name: "none", Kind: kindHTTP, Baseline: "none", What: "no agent"},
	{Name: "export-sink", Kind: kindHTTP, Agent: "tcpspan", CleanRatio: "1", Sink: true, Baseline: "none", What: "tcpspan -clean-ratio 1 -> counting OTLP receiver"},
	{Name: "export-sink-b", Kind: kindHTTP, Agent: "tcpspan", BinB: true, CleanRatio: "1", Sink: true, Baseline: "none", What: "BIN_B -clean-ratio 1 -> counting OTLP receiver"},
	{Name: "export-all", Kind: kindHTTP, Agent: "tcpspan", CleanRatio: "1", Baseline: "none", What: "tcpspan -clean-ratio 1 -> Jaeger"},
	{Name: "errors-only", Kind: kindHTTP, Agent: "tcpspan", CleanRatio: "0", Baseline: "none", What: "tcpspan -clean-ratio 0 -> Jaeger"},
	{Name: "errors-only-b", Kind: kindHTTP, Agent: "tcpspan", BinB: true, CleanRatio: "0", Baseline: "none", What: "BIN_B -clean-ratio 0 -> Jaeger"},
	{Name: "bpftrace", Kind: kindHTTP, Agent: "bpftrace", Baseline: "none", What: "bpftrace, 1 line per inet_sock_set_state"},
	{Name: "keepalive-none", Kind: kindKeepalive, Baseline: "keepalive-none", What: "keep-alive requests, no agent"},
	{Name: "keepalive-agent", Kind: kindKeepalive, Agent: "tcpspan", Sink: true, Baseline: "keepalive-none", What: "keep-alive requests, tcpspan (defaults) -> counting OTLP receiver"},
	{Name: "keepalive-agent-b", Kind: kindKeepalive, Agent: "tcpspan", BinB: true, Sink: true, Baseline: "keepalive-none", What: "keep-alive requests, BIN_B (defaults) -> counting OTLP receiver"},
	{Name: "syscall-none", Kind: kindSyscall, Baseline: "syscall-none", What: "getpid loop, no agent"},
	{Name: "syscall-agent", Kind: kindSyscall, Agent: "tcpspan", Sink: true, Baseline: "syscall-none", What: "getpid loop, tcpspan (defaults) attached"},
	{Name: "syscall-agent-b", Kind: kindSyscall, Agent: "tcpspan", BinB: true, Sink: true, Baseline: "syscall-none", What: "getpid loop, BIN_B (defaults) attached"},
	{Name: "storm-none", Kind: kindStorm, Baseline: "storm-none", What: "RST storm, no agent"},
	{Name: "storm-errors", Kind: kindStorm, Agent: "tcpspan", CleanRatio: "0", Baseline: "storm-none", What: "RST storm, tcpspan -clean-ratio 0"},
	{Name: "loop-none", Kind: kindLoop, Baseline: "loop-none", What: "pinned connection loop, no agent"},
	{Name: "loop-export", Kind: kindLoop, Agent: "tcpspan", CleanRatio: "1", Sink: true, Baseline: "loop-none", What: "pinned connection loop, tcpspan -clean-ratio 1 -> counting OTLP receiver"},
	{Name: "loop-errors", Kind: kindLoop, Agent: "tcpspan", CleanRatio: "0", Sink: true, Baseline: "loop-none", What: "pinned connection loop, tcpspan -clean-ratio 0"},
	{Name: "loop-errors-b", Kind: kindLoop, Agent: "tcpspan", BinB: true, CleanRatio: "0", Sink: true, Baseline: "loop-none", What: "pinned connection loop, BIN_B -clean-ratio 0"},
}

// specOf returns the mode's spec, or false for an unknown name.
func specOf(name string) (modeSpec, bool) {
	for _, m := range modes {
		if m.Name == name {
			return m, true
		}
	}
	return modeSpec{}, false
}

// kindOf is a mode's kind, also for a name from an older results.json.
func kindOf(name string) string {
	if m, ok := specOf(name); ok {
		return m.Kind
	}
	return kindHTTP
}

// baselineMode is the mode a run is compared with.
func (r *Run) baselineMode() string {
	if m, ok := specOf(r.Mode); ok {
		return m.Baseline
	}
	return "none"
}
