package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// modeOrder is the order of modes in the tables and the chart; baseline is
// the mode each is compared with.
var (
	modeOrder = []string{"none", "export-sink", "export-sink-b", "export-all", "errors-only", "errors-only-b", "bpftrace", "storm-none", "storm-errors"}
	baseline  = map[string]string{
		"none": "none", "export-sink": "none", "export-sink-b": "none", "export-all": "none", "errors-only": "none", "errors-only-b": "none", "bpftrace": "none",
		"storm-none": "storm-none", "storm-errors": "storm-none",
	}
	modeWhat = map[string]string{
		"none":          "no agent",
		"export-sink":   "tcpspan -clean-ratio 1 -> counting OTLP receiver",
		"export-sink-b": "BIN_B -clean-ratio 1 -> counting OTLP receiver",
		"export-all":    "tcpspan -clean-ratio 1 -> Jaeger",
		"errors-only":   "tcpspan -clean-ratio 0 -> Jaeger",
		"errors-only-b": "BIN_B -clean-ratio 0 -> Jaeger",
		"bpftrace":      "bpftrace, 1 line per inet_sock_set_state",
		"storm-none":    "RST storm, no agent",
		"storm-errors":  "RST storm, tcpspan -clean-ratio 0",
	}
)

// Mode is the summary of one mode over its rounds.
type Mode struct {
	Mode     string    `json:"mode"`
	What     string    `json:"what"`
	Kind     string    `json:"kind"`
	Baseline string    `json:"baseline"`
	Rounds   int       `json:"rounds"`
	Rates    []float64 `json:"rates"`
	// RateMedian is connections/s (http) or RSTs/s (storm), median over rounds.
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
	AgentRSSMB        float64 `json:"agent_peak_rss_mb_max"`

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

// Target is one of the goals, judged on this run.
type Target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// Results is bench/results.json.
type Results struct {
	Date    string   `json:"date"`
	Commit  string   `json:"commit"`
	Machine Machine  `json:"machine"`
	Load    string   `json:"load"`
	Modes   []*Mode  `json:"modes"`
	Targets []Target `json:"targets"`
	Runs    []*Run   `json:"runs"`
}

// Machine describes where the run was.
type Machine struct {
	NProc  int     `json:"nproc"`
	Kernel string  `json:"kernel"`
	CPU    string  `json:"cpu"`
	MemGB  float64 `json:"mem_gb"`
}

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.Split(string(b), "\n")[0], "MemTotal:"), "%f", &kb)
		m.MemGB = math.Round(kb/1024/1024*10) / 10
	}
	return m
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
	var modes []*Mode
	for _, name := range modeOrder {
		rs := byMode[name]
		if len(rs) == 0 {
			continue
		}
		m := &Mode{Mode: name, What: modeWhat[name], Kind: rs[0].Kind, Baseline: baseline[name], Rounds: len(rs)}
		var cpu, us, jcpu, busy, rpc, paired, load, backend []float64
		for _, r := range rs {
			m.Rates = append(m.Rates, math.Round(r.Rate))
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
		modes = append(modes, m)
	}
	for _, m := range modes {
		for _, b := range modes {
			if b.Mode == m.Baseline && b.RateMedian > 0 {
				m.Ratio = m.RateMedian / b.RateMedian
			}
			if b.Mode == m.Baseline && b != m && b.LoadUsPerConn > 0 && m.LoadUsPerConn > 0 {
				m.KernelUsPerConn = m.LoadUsPerConn - b.LoadUsPerConn
				m.OverheadUsPerConn = m.KernelUsPerConn + m.AgentUsPerConn
				m.CostRatio = b.LoadUsPerConn / (b.LoadUsPerConn + m.OverheadUsPerConn)
			}
		}
	}
	return modes
}

func findMode(modes []*Mode, name string) *Mode {
	for _, m := range modes {
		if m.Mode == name {
			return m
		}
	}
	return nil
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

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func printTables(w io.Writer, res *Results) {
	fmt.Fprintf(w, "\n== tcpspan bench, %s, commit %s: %d CPUs (%s), kernel %s\n", res.Date, res.Commit, res.Machine.NProc, res.Machine.CPU, res.Machine.Kernel)
	fmt.Fprintf(w, "   %s; %d rounds, medians\n\n", res.Load, maxRounds(res.Modes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\trate/s\tx base\tpaired\tload µs/conn\t+kernel\t+agent\tx cost\tagent CPU\tpeak RSS\trec/conn\tlost\tmissed\tspans exported\texpected\tdropped\tfolded\tbackend CPU\thost busy\t")
	for _, m := range res.Modes {
		unit := "conn"
		if m.Kind == "storm" {
			unit = "RST"
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
		case "none", "storm-none":
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
	fmt.Fprintln(w, "\n   rate/s: connections/s (TcpActiveOpens), or RSTs/s for storm modes (attempts; each one RST);")
	fmt.Fprintln(w, "   x base: ratio of medians to no agent (storm: to storm-none); paired: median of per-round ratios;")
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
				fmt.Fprintf(w, "     r%d %-13s spans %7d (agent exported %7d)  tcp.rst_sent events %7d (TcpOutRsts %7d)  query %.0fs\n",
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
		fmt.Fprintf(w, "     %s  %-40s %-46s %s\n", state, t.Name, t.Goal, t.Measured)
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

func cmdSummarize(args []string) error {
	fs := flag.NewFlagSet("summarize", flag.ExitOnError)
	jsonOut := fs.String("json", "", "write the results here")
	pngOut := fs.String("png", "", "write the bar chart here")
	conf := fs.String("conf", "", "the load, in words, for the header")
	commit := fs.String("commit", "", "the commit measured")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	runs, err := loadRuns(fs.Arg(0))
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("no runs in %s", fs.Arg(0))
	}
	modes := summarize(runs)
	for _, m := range modes {
		for _, r := range runs {
			if r.Mode == m.Mode {
				m.runs = append(m.runs, r)
			}
		}
	}
	res := &Results{
		Date: time.Now().UTC().Format(time.RFC3339), Commit: *commit, Machine: machine(), Load: *conf,
		Modes: modes, Targets: targets(modes), Runs: runs,
	}
	printTables(os.Stdout, res)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("report: wrote %s\n", *jsonOut)
	}
	if *pngOut != "" {
		if err := writeChart(*pngOut, res); err != nil {
			return err
		}
		fmt.Printf("report: wrote %s\n", *pngOut)
	}
	return nil
}

// cmdChart draws the chart of a results.json again, for when the chart
// changes after the runs' directories are gone.
func cmdChart(args []string) error {
	fs := flag.NewFlagSet("chart", flag.ExitOnError)
	pngOut := fs.String("png", "", "write the bar chart here")
	fs.Parse(args)
	if fs.NArg() != 1 || *pngOut == "" {
		usage()
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	for _, m := range res.Modes {
		for _, r := range res.Runs {
			if r.Mode == m.Mode {
				m.runs = append(m.runs, r)
			}
		}
	}
	return writeChart(*pngOut, &res)
}
