package main

import (
	"fmt"
	"strings"
)

// Target is one of the goals, judged on this run.
type Target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// targets judges the goals of the issues on this run.
func targets(modes []*Mode) []Target {
	var ts []Target
	if m := findMode(modes, "export-sink"); m != nil {
		ts = append(ts, Target{
			Name: "export every connection: throughput", Goal: ">= 0.90x no agent (to a counting receiver)",
			Measured: throughput(m), Met: m.Ratio >= 0.90,
		})
		spans := fmt.Sprintf("received %d of %d expected (%.1f%%); exported %d, lost %d, dropped %d, failed %d",
			m.SinkSpans, m.SpansExpected, pct(m.SinkSpans, m.SpansExpected), m.SpansExported, m.Lost, m.SpansDropped, m.SpansFailed)
		met := m.SinkSpans == m.SpansExpected && m.SpansExported == m.SpansExpected && m.Lost == 0 &&
			m.SpansDropped == 0 && m.SpansFailed == 0 && m.FinalLines == m.Rounds
		ts = append(ts, Target{Name: "export every connection: spans", Goal: "received = 2 x connections, nothing lost", Measured: spans, Met: met})
	}
	if m := findMode(modes, "export-all"); m != nil {
		ts = append(ts, Target{
			Name: "export every connection to Jaeger: throughput", Goal: ">= 0.90x no agent (Jaeger on the same CPUs)",
			Measured: throughput(m), Met: m.Ratio >= 0.90,
		})
		spans := fmt.Sprintf("%d exported of %d expected (%.1f%%), lost %d, folded %d, dropped %d, failed %d",
			m.SpansExported, m.SpansExpected, pct(m.SpansExported, m.SpansExpected), m.Lost, m.SpansFolded, m.SpansDropped, m.SpansFailed)
		met := m.SpansExported == m.SpansExpected && m.Lost == 0 && m.SpansDropped == 0 && m.SpansFailed == 0 && m.FinalLines == m.Rounds
		if m.Verified > 0 {
			var exp int64
			for _, r := range m.runs {
				if r.Jaeger != nil {
					exp += r.SpansExpected
				}
			}
			spans += fmt.Sprintf("; Jaeger holds %d of %d in the %d round(s) checked, standing for %d (%.1f%%) with storm spans' counts",
				m.JaegerSpans, exp, m.Verified, m.JaegerConnections, pct(m.JaegerConnections, exp))
			met = met && m.JaegerSpans == exp
		}
		ts = append(ts, Target{Name: "export every connection to Jaeger: spans", Goal: "spans = 2 x connections, nothing lost", Measured: spans, Met: met})
	}
	if m := findMode(modes, "errors-only"); m != nil {
		ts = append(ts, Target{
			Name: "errors only: throughput", Goal: ">= 0.97x no agent",
			Measured: throughput(m), Met: m.Ratio >= 0.97,
		})
	}
	if m := findMode(modes, "storm-errors"); m != nil {
		ts = append(ts, Target{
			Name: "reset storm: rate under tcpspan", Goal: "> 20k RST/s",
			Measured: fmt.Sprintf("%.0f RST/s (%.2fx of no agent)", m.RateMedian, m.Ratio), Met: m.RateMedian > 20000,
		})
		acc := fmt.Sprintf("TcpOutRsts %d; agent lost %d, missed %d, spans dropped %d (folded %d)", m.OutRsts, m.Lost, m.Missed, m.SpansDropped, m.SpansFolded)
		met := m.Lost == 0 && m.Missed == 0 && m.SpansDropped == 0 && m.SpansFailed == 0 && m.FinalLines == m.Rounds
		if m.Verified > 0 {
			var rsts int64
			for _, r := range m.runs {
				if r.Jaeger != nil {
					rsts += r.OutRsts
				}
			}
			acc += fmt.Sprintf("; tcp.rst_sent events in Jaeger %d of %d (%.1f%%, %d round(s) checked)",
				m.JaegerRSTSent, rsts, pct(m.JaegerRSTSent, rsts), m.Verified)
			met = met && m.JaegerRSTSent == rsts
		}
		ts = append(ts, Target{Name: "reset storm: every RST accounted for", Goal: "tcp.rst_sent events = TcpOutRsts, nothing lost", Measured: acc, Met: met})
	}
	if m := findMode(modes, "keepalive-agent"); m != nil {
		ts = append(ts, Target{
			Name: "keep-alive requests: throughput", Goal: ">= 0.99x no agent (tcpspan's defaults)",
			Measured: fmt.Sprintf("%.2fx (paired %.2fx): %.0f requests/s with the agent, %.0f without", m.Ratio, m.PairedRatio, m.RateMedian, m.RateMedian/nonZero(m.Ratio)),
			Met:      m.Ratio >= 0.99,
		})
	}
	if m := findMode(modes, "syscall-agent"); m != nil {
		base := m.NsPerCall - m.NsPerCallDiff
		ts = append(ts, Target{
			Name: "host syscall tax (getpid)", Goal: "none measurable: within max(1 ns, 2%) of no agent",
			Measured: fmt.Sprintf("%.1f ns/call with the agent, %.1f without (%+.1f ns)", m.NsPerCall, base, m.NsPerCallDiff),
			Met:      m.NsPerCall > 0 && m.NsPerCallDiff <= max(1, 0.02*base),
		})
	}
	var rss float64
	var where string
	for _, m := range modes {
		if strings.HasPrefix(m.What, "tcpspan") || strings.Contains(m.What, "tcpspan") {
			if m.AgentRSSMB > rss {
				rss, where = m.AgentRSSMB, m.Mode
			}
		}
	}
	if where != "" {
		ts = append(ts, Target{Name: "agent memory under storms", Goal: "peak RSS <= 150 MB",
			Measured: fmt.Sprintf("%.0f MB (VmHWM, in %s)", rss, where), Met: rss <= 150})
	}
	return ts
}

// throughput states a mode's rate ratio, and the ratio its CPU costs give
// where the bench had accounting cgroups.
func throughput(m *Mode) string {
	s := fmt.Sprintf("%.2fx (paired %.2fx)", m.Ratio, m.PairedRatio)
	if m.CostRatio > 0 {
		s += fmt.Sprintf("; by CPU cost %.2fx (+%.1f µs/conn: kernel %.1f, agent %.1f)", m.CostRatio, m.OverheadUsPerConn, m.KernelUsPerConn, m.AgentUsPerConn)
	}
	return s
}

func nonZero(v float64) float64 {
	if v == 0 {
		return 1
	}
	return v
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
