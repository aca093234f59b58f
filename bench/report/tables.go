package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

func printTables(w io.Writer, res *Results) {
	fmt.Fprintf(w, "\n== tcpspan bench, %s, commit %s: %d CPUs (%s), kernel %s\n", res.Date, res.Commit, res.Machine.NProc, res.Machine.CPU, res.Machine.Kernel)
	fmt.Fprintf(w, "   %s; %d rounds, medians\n\n", res.Load, maxRounds(res.Modes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\trate/s\tx base\tpaired\tload µs/conn\t+kernel\t+agent\tx cost\tagent CPU\tpeak RSS\trec/conn\tlost\tmissed\tspans exported\texpected\tdropped\tfolded\tbackend CPU\thost busy\t")
	for _, m := range res.Modes {
		unit := map[string]string{kindStorm: "RST", kindKeepalive: "req", kindSyscall: "call"}[m.Kind]
		if unit == "" {
			unit = "conn"
		}
		row := []string{m.Mode, fmt.Sprintf("%.0f %s", m.RateMedian, unit), fmt.Sprintf("%.2f", m.Ratio), fmt.Sprintf("%.2f", m.PairedRatio)}
		cost := func(v float64, f string) string {
			if m.LoadUsPerConn == 0 {
				return "-"
			}
			return fmt.Sprintf(f, v)
		}
		row = append(row, cost(m.LoadUsPerConn, "%.1f"))
		switch m.Mode {
		case m.Baseline:
			row = append(row, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-")
		case "bpftrace":
			row = append(row, cost(m.KernelUsPerConn, "%.1f"), fmt.Sprintf("%.1f", m.AgentUsPerConn), cost(m.CostRatio, "%.2f"),
				fmt.Sprintf("%.0f%%", m.AgentCPUPct), fmt.Sprintf("%.0f MB", m.AgentRSSMB), "-", "-", "-", "-", "-", "-", "-")
		default:
			exp := "-"
			if m.SpansExpected > 0 {
				exp = fmt.Sprint(m.SpansExpected)
			}
			row = append(row, cost(m.KernelUsPerConn, "%.1f"), fmt.Sprintf("%.1f", m.AgentUsPerConn), cost(m.CostRatio, "%.2f"),
				fmt.Sprintf("%.0f%%", m.AgentCPUPct), fmt.Sprintf("%.0f MB", m.AgentRSSMB),
				fmt.Sprintf("%.2f", m.RecordsPerConn), fmt.Sprint(m.Lost), fmt.Sprint(m.Missed),
				fmt.Sprint(m.SpansExported), exp, fmt.Sprint(m.SpansDropped), fmt.Sprint(m.SpansFolded))
		}
		row = append(row, fmt.Sprintf("%.0f%%", m.JaegerCPUPct), fmt.Sprintf("%.0f%%", m.HostBusyPct))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w, "\n   rate/s: connections/s (TcpActiveOpens), or RSTs/s for storm modes (attempts; each one RST),")
	fmt.Fprintln(w, "   requests/s for keepalive modes (wrk without 'Connection: close'), getpid calls/s for syscall modes,")
	fmt.Fprintln(w, "   connections/s of connloop's fastest batch for loop modes (one thread on one CPU);")
	fmt.Fprintln(w, "   x base: ratio of medians to no agent (storm: to storm-none, keepalive: to keepalive-none, syscall: to")
	fmt.Fprintln(w, "   syscall-none, loop: to loop-none); paired: median of per-round ratios; keepalive and syscall: µs per request, per call;")
	fmt.Fprintln(w, "   load µs/conn: CPU of nginx+wrk (storm: rstorm) per connection (storm: per attempt), softirq in their context included, from a cgroup;")
	fmt.Fprintln(w, "   +kernel: what that grew by against no agent: the agent's BPF programs and hooks, which run in the workload's context, and the")
	fmt.Fprintln(w, "   cost of sharing CPU caches with a busy agent (and receiver); +agent: the agent's own CPU per connection;")
	fmt.Fprintln(w, "   x cost: load / (load + kernel + agent) of no agent, the rate ratio those costs give when the workload saturates the CPUs;")
	fmt.Fprintln(w, "   agent CPU: % of one core over the load; rec/conn: (connections+orphans)/TcpActiveOpens, tcpspan's records")
	fmt.Fprintln(w, "   per TCP connection (one per socket: 2 for a loopback connection); lost/missed/spans summed over rounds;")
	fmt.Fprintln(w, "   dropped: spans the full export queue dropped; folded: connections it folded into storm spans of their kind instead;")
	fmt.Fprintln(w, "   backend CPU: Jaeger's, or the counting receiver's for export-sink.")
	for _, m := range res.Modes {
		if m.Mode == "export-sink" {
			fmt.Fprintf(w, "   export-sink: the counting receiver got %d spans of %d expected.\n", m.SinkSpans, m.SpansExpected)
		}
	}

	printFastest(w, res.Modes, kindSyscall, "getpid ns/call (fastest batch, median over rounds)",
		func(m *Mode) (float64, float64) { return m.NsPerCall, m.NsPerCallDiff })
	printFastest(w, res.Modes, kindLoop, "connloop µs/conn (one pinned thread, fastest batch, median over rounds)",
		func(m *Mode) (float64, float64) { return m.NsPerConn / 1000, m.NsPerConnDiff / 1000 })

	fmt.Fprintln(w, "\n   per round (rate/s):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "mode\t"
	for i := 1; i <= maxRounds(res.Modes); i++ {
		hdr += fmt.Sprintf("r%d\t", i)
	}
	fmt.Fprintln(tw, hdr)
	for _, m := range res.Modes {
		line := m.Mode + "\t"
		for _, r := range m.Rates {
			line += fmt.Sprintf("%.0f\t", r)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()

	var checked bool
	for _, m := range res.Modes {
		if m.Verified > 0 {
			if !checked {
				fmt.Fprintln(w, "\n   what Jaeger holds (spans starting while the agent ran, all services):")
				checked = true
			}
			for _, r := range m.runs {
				if r.Jaeger == nil {
					continue
				}
				fmt.Fprintf(w, "     r%d %-17s spans %7d (agent exported %7d)  tcp.rst_sent events %7d (TcpOutRsts %7d)  query %.0fs\n",
					r.Round, r.Mode, r.Jaeger.Spans, r.SpansExported, r.Jaeger.RSTSent, r.OutRsts, r.Jaeger.QuerySeconds)
			}
		}
	}

	warned := map[string]bool{}
	for _, r := range res.Runs {
		for _, wmsg := range r.Warnings {
			if !warned[wmsg] {
				if len(warned) == 0 {
					fmt.Fprintln(w, "\n   agent warnings (first of each):")
				}
				warned[wmsg] = true
				fmt.Fprintf(w, "     %s (r%d %s)\n", wmsg, r.Round, r.Mode)
			}
		}
	}
	for _, r := range res.Runs {
		if r.StopSignal != "" && r.StopSignal != "INT" {
			fmt.Fprintf(w, "   WARNING: r%d %s: the agent was still running 10 s after SIGINT; stopped with SIG%s\n", r.Round, r.Mode, r.StopSignal)
		}
		if r.agentKind() == "tcpspan" && !r.Stopped {
			fmt.Fprintf(w, "   WARNING: r%d %s: no final msg=stopped line in the agent's log\n", r.Round, r.Mode)
		}
	}

	fmt.Fprintln(w, "\n   targets:")
	for _, t := range res.Targets {
		state := "MISSED"
		if t.Met {
			state = "met   "
		}
		fmt.Fprintf(w, "     %s  %-40s %-52s %s\n", state, t.Name, t.Goal, t.Measured)
	}
	fmt.Fprintln(w)
}

func maxRounds(ms []*Mode) int {
	n := 0
	for _, m := range ms {
		n = max(n, m.Rounds)
	}
	return n
}

// printFastest writes one line of the pinned loops' figures for the modes
// of a kind: each mode's value, and what it adds to its baseline's.
func printFastest(w io.Writer, modes []*Mode, kind, label string, value func(*Mode) (v, diff float64)) {
	var parts []string
	for _, m := range modes {
		v, diff := value(m)
		if m.Kind != kind || v <= 0 {
			continue
		}
		s := fmt.Sprintf("%s %.1f", m.Mode, v)
		if m.Mode != m.Baseline {
			s += fmt.Sprintf(" (%+.1f)", diff)
		}
		parts = append(parts, s)
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "   %s: %s.\n", label, strings.Join(parts, ", "))
	}
}
