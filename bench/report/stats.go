package main

import (
	"math"
	"sort"
)

// Mode is the summary of one mode over its rounds.
type Mode struct {
	Mode     string    `json:"mode"`
	What     string    `json:"what"`
	Kind     string    `json:"kind"`
	Baseline string    `json:"baseline"`
	Rounds   int       `json:"rounds"`
	Rates    []float64 `json:"rates"`
	// RateMedian is connections/s (http, and loop's fastest batch),
	// requests/s (keepalive), RSTs/s (storm) or calls/s (syscall), median
	// over rounds.
	RateMedian float64 `json:"rate_median"`
	// Ratio is RateMedian over the baseline's RateMedian; PairedRatio is the
	// median over rounds of each round's ratio to the same round's baseline.
	Ratio       float64 `json:"ratio"`
	PairedRatio float64 `json:"paired_ratio"`

	AgentCPUPct float64 `json:"agent_cpu_pct_median"`
	// AgentUsPerConn is the median agent CPU per connection (storm: per
	// attempt), in microseconds.
	AgentUsPerConn float64 `json:"agent_cpu_us_per_connection_median"`
	JaegerCPUPct   float64 `json:"jaeger_cpu_pct_median"`
	HostBusyPct    float64 `json:"host_busy_pct_median"`

	// CPU cost per connection from the accounting cgroups (0 without):
	// LoadUsPerConn is the workload's median; KernelUsPerConn what it grew
	// by against the baseline's median: the agent's programs run in the
	// workload's context, and a busy agent also costs it cache misses;
	// OverheadUsPerConn that plus the agent's own CPU. CostRatio is
	// base / (base + overhead), base the baseline's LoadUsPerConn: the rate
	// ratio these costs give on a machine the workload saturates, less
	// sensitive to other load than Ratio.
	LoadUsPerConn     float64 `json:"load_cpu_us_per_connection_median,omitempty"`
	KernelUsPerConn   float64 `json:"kernel_cpu_us_per_connection,omitempty"`
	OverheadUsPerConn float64 `json:"overhead_cpu_us_per_connection,omitempty"`
	CostRatio         float64 `json:"cost_ratio,omitempty"`
	BackendUsPerConn  float64 `json:"backend_cpu_us_per_connection_median,omitempty"`
	// NsPerCall is the getpid loop's ns per call (syscall modes), median
	// over rounds of each run's fastest batch; NsPerCallDiff what it is
	// over the baseline's.
	NsPerCall     float64 `json:"syscall_ns_per_call_median,omitempty"`
	NsPerCallDiff float64 `json:"syscall_ns_per_call_over_baseline,omitempty"`
	// NsPerConn is the connection loop's ns per connection (loop modes),
	// median over rounds of each run's fastest batch; NsPerConnDiff what it
	// is over the baseline's.
	NsPerConn     float64 `json:"loop_ns_per_connection_median,omitempty"`
	NsPerConnDiff float64 `json:"loop_ns_per_connection_over_baseline,omitempty"`
	AgentRSSMB    float64 `json:"agent_peak_rss_mb_max"`

	Connections    int64   `json:"connections_made"` // sum of TcpActiveOpens deltas
	OutRsts        int64   `json:"tcp_out_rsts"`
	RecordsPerConn float64 `json:"records_per_connection_median"`
	Lost           int64   `json:"lost"`
	Missed         int64   `json:"missed"`
	SpansExported  int64   `json:"spans_exported"`
	SpansExpected  int64   `json:"spans_expected,omitempty"`
	SpansDropped   int64   `json:"spans_dropped"`
	SpansFolded    int64   `json:"spans_folded"`
	SpansFailed    int64   `json:"spans_failed"`
	FinalLines     int     `json:"final_lines"`

	// SinkSpans is what the counting receiver got (export-sink).
	SinkSpans int64 `json:"sink_spans,omitempty"`

	JaegerSpans int64 `json:"jaeger_spans,omitempty"`
	// JaegerConnections is what JaegerSpans stand for (storm spans count
	// their tcpspan.storm.count).
	JaegerConnections int64 `json:"jaeger_connections,omitempty"`
	JaegerRSTSent     int64 `json:"jaeger_rst_sent_events,omitempty"`
	Verified          int   `json:"jaeger_verified_rounds,omitempty"`

	runs []*Run
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(runs []*Run) []*Mode {
	byMode := map[string][]*Run{}
	for _, r := range runs {
		byMode[r.Mode] = append(byMode[r.Mode], r)
	}
	rateOf := func(mode string, round int) float64 {
		for _, r := range byMode[mode] {
			if r.Round == round {
				return r.Rate
			}
		}
		return 0
	}
	var out []*Mode
	for _, spec := range modes {
		rs := byMode[spec.Name]
		if len(rs) == 0 {
			continue
		}
		m := &Mode{Mode: spec.Name, What: spec.What, Kind: rs[0].Kind, Baseline: spec.Baseline, Rounds: len(rs)}
		var cpu, us, jcpu, busy, rpc, paired, load, backend, ns, nsConn []float64
		for _, r := range rs {
			m.Rates = append(m.Rates, math.Round(r.Rate))
			if r.NsPerCall > 0 {
				ns = append(ns, r.NsPerCall)
			}
			if r.NsPerConn > 0 {
				nsConn = append(nsConn, r.NsPerConn)
			}
			cpu = append(cpu, r.AgentCPUPct)
			us = append(us, r.AgentUsPerConn)
			jcpu = append(jcpu, r.JaegerCPUPct)
			busy = append(busy, r.HostBusyPct)
			if r.LoadUsPerConn > 0 {
				load = append(load, r.LoadUsPerConn)
				backend = append(backend, r.BackendUsPerConn)
			}
			if r.RecordsPerConn > 0 {
				rpc = append(rpc, r.RecordsPerConn)
			}
			if b := rateOf(m.Baseline, r.Round); b > 0 {
				paired = append(paired, r.Rate/b)
			}
			m.AgentRSSMB = math.Max(m.AgentRSSMB, r.AgentRSSMB)
			m.Connections += r.ActiveOpens
			m.OutRsts += r.OutRsts
			m.Lost += r.Lost
			m.Missed += r.Missed
			m.SpansExported += r.SpansExported
			m.SpansExpected += r.SpansExpected
			m.SpansDropped += r.SpansDropped
			m.SpansFolded += r.SpansFolded
			m.SpansFailed += r.SpansFailed
			m.SinkSpans += r.SinkSpans
			if r.Stopped {
				m.FinalLines++
			}
			if r.Jaeger != nil {
				m.Verified++
				m.JaegerSpans += r.Jaeger.Spans
				m.JaegerConnections += r.Jaeger.Connections
				m.JaegerRSTSent += r.Jaeger.RSTSent
			}
		}
		m.RateMedian = median(m.Rates)
		m.AgentCPUPct = median(cpu)
		m.AgentUsPerConn = median(us)
		m.JaegerCPUPct = median(jcpu)
		m.HostBusyPct = median(busy)
		m.RecordsPerConn = median(rpc)
		m.PairedRatio = median(paired)
		m.LoadUsPerConn = median(load)
		m.BackendUsPerConn = median(backend)
		m.NsPerCall = median(ns)
		m.NsPerConn = median(nsConn)
		out = append(out, m)
	}
	for _, m := range out {
		for _, b := range out {
			if b.Mode == m.Baseline && b.RateMedian > 0 {
				m.Ratio = m.RateMedian / b.RateMedian
			}
			if b.Mode == m.Baseline && b != m && b.LoadUsPerConn > 0 && m.LoadUsPerConn > 0 {
				m.KernelUsPerConn = m.LoadUsPerConn - b.LoadUsPerConn
				m.OverheadUsPerConn = m.KernelUsPerConn + m.AgentUsPerConn
				m.CostRatio = b.LoadUsPerConn / (b.LoadUsPerConn + m.OverheadUsPerConn)
			}
			if b.Mode == m.Baseline && b != m && b.NsPerCall > 0 && m.NsPerCall > 0 {
				m.NsPerCallDiff = m.NsPerCall - b.NsPerCall
			}
			if b.Mode == m.Baseline && b != m && b.NsPerConn > 0 && m.NsPerConn > 0 {
				m.NsPerConnDiff = m.NsPerConn - b.NsPerConn
			}
		}
	}
	return out
}

func findMode(modes []*Mode, name string) *Mode {
	for _, m := range modes {
		if m.Mode == name {
			return m
		}
	}
	return nil
}
