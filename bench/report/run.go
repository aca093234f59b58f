package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Run is one measured run: a mode in a round.
type Run struct {
	Mode  string `json:"mode"`
	Round int    `json:"round"`
	Dir   string `json:"-"`
	// Kind is "http" (nginx and wrk, a connection per request),
	// "keepalive" (the same, connections kept), "storm" (connects to a
	// closed port), "syscall" (a getpid loop) or "loop" (connloop).
	Kind string `json:"kind"`

	// The load, as its tool measured it.
	Seconds        float64          `json:"load_seconds"`
	Requests       int64            `json:"wrk_requests,omitempty"`
	RequestsPerSec float64          `json:"wrk_requests_per_second,omitempty"`
	SocketErrors   map[string]int64 `json:"wrk_socket_errors,omitempty"`
	Non2xx         int64            `json:"wrk_non_2xx,omitempty"`
	Attempts       int64            `json:"storm_attempts,omitempty"`
	Refused        int64            `json:"storm_refused,omitempty"`
	AttemptErrors  int64            `json:"storm_other_errors,omitempty"`
	// The getpid loop (syscall): calls made, and ns per call, the fastest
	// batch's and the median batch's.
	Calls           int64   `json:"syscall_calls,omitempty"`
	NsPerCall       float64 `json:"syscall_ns_per_call,omitempty"`
	NsPerCallMedian float64 `json:"syscall_ns_per_call_median_batch,omitempty"`
	// The connection loop (loop): connections made, and ns per connection,
	// the fastest batch's and the median batch's.
	LoopConns       int64   `json:"loop_connections,omitempty"`
	NsPerConn       float64 `json:"loop_ns_per_connection,omitempty"`
	NsPerConnMedian float64 `json:"loop_ns_per_connection_median_batch,omitempty"`

	// Deltas of the namespace's counters (nstat) from the agent being
	// attached to one second after the load.
	ActiveOpens     int64 `json:"tcp_active_opens"`
	PassiveOpens    int64 `json:"tcp_passive_opens"`
	OutRsts         int64 `json:"tcp_out_rsts"`
	AttemptFails    int64 `json:"tcp_attempt_fails"`
	EstabResets     int64 `json:"tcp_estab_resets"`
	ListenOverflows int64 `json:"tcp_listen_overflows"`

	// Rate is connections per second (http: TcpActiveOpens over the load's
	// duration; storm: connection attempts, each answered by an RST);
	// keepalive: requests per second; syscall: calls per second of the
	// fastest batch; loop: connections per second of the fastest batch.
	Rate       float64 `json:"rate"`
	RSTsPerSec float64 `json:"rsts_per_second"`

	// CPU over the load: % of one core for the agent and Jaeger, % of all
	// cores for the host.
	AgentCPUPct float64 `json:"agent_cpu_pct_of_one_core"`
	// AgentUsPerConn is the agent's CPU time over the load per connection
	// made (storm: per attempt), in microseconds.
	AgentUsPerConn float64 `json:"agent_cpu_us_per_connection,omitempty"`
	JaegerCPUPct   float64 `json:"jaeger_cpu_pct_of_one_core"`
	// LoadUsPerConn is the workload's CPU time (nginx and wrk, or rstorm)
	// per connection (storm: per attempt), in microseconds, from its
	// accounting cgroup: softirq work done in its context included, so it
	// grows by what the agent's programs cost in the kernel. 0 when the
	// bench ran without cgroups. BackendUsPerConn is the trace backend's.
	LoadUsPerConn    float64 `json:"load_cpu_us_per_connection,omitempty"`
	BackendUsPerConn float64 `json:"backend_cpu_us_per_connection,omitempty"`
	HostBusyPct      float64 `json:"host_busy_pct_of_all_cores"`
	LoadAvg          float64 `json:"loadavg_1m_before"`
	AgentRSSMB       float64 `json:"agent_peak_rss_mb"`
	AgentThreads     int     `json:"agent_threads,omitempty"`
	StopSeconds      float64 `json:"agent_stop_seconds,omitempty"`
	// StopSignal is INT, or TERM or KILL when the agent outlived SIGINT by 10 s.
	StopSignal string `json:"agent_stop_signal,omitempty"`

	// From tcpspan's final line.
	Stopped        bool              `json:"agent_final_line"`
	Final          map[string]string `json:"final,omitempty"`
	Connections    int64             `json:"connections"`
	Orphans        int64             `json:"orphans"`
	Lost           int64             `json:"lost"`
	Missed         int64             `json:"missed"`
	SpansRecorded  int64             `json:"spans_recorded"`
	SpansExported  int64             `json:"spans_exported"`
	SpansFailed    int64             `json:"spans_failed"`
	SpansDropped   int64             `json:"spans_dropped"`
	SpansFolded    int64             `json:"spans_folded"`
	SampledOut     int64             `json:"sampled_out"`
	RecordsPerConn float64           `json:"records_per_connection"`
	// Midlife counts connections first seen mid-life (kernel side).
	Midlife int64 `json:"midlife,omitempty"`
	// SpansExpected is 2 per connection (client and server) when every
	// connection is exported, plus the connections seen mid-life; 0 when
	// not known.
	SpansExpected int64    `json:"spans_expected,omitempty"`
	Warnings      []string `json:"agent_warnings,omitempty"`

	// SinkSpans is what the counting receiver got (export-sink).
	SinkSpans int64 `json:"sink_spans,omitempty"`

	// What Jaeger holds for the run (VERIFY=1).
	Jaeger *JaegerCount `json:"jaeger,omitempty"`
}

// JaegerCount is what Jaeger's query API returns for a run's time window.
type JaegerCount struct {
	Spans        int64   `json:"spans"`
	Connections  int64   `json:"connections"` // the spans stand for: a storm span's tcpspan.storm.count, else 1
	ErrorSpans   int64   `json:"error_spans"`
	RSTSent      int64   `json:"rst_sent_events"`
	RSTReceived  int64   `json:"rst_received_events"`
	QuerySeconds float64 `json:"query_seconds"`
}

func (r *Run) agentKind() string {
	if m, ok := specOf(r.Mode); ok {
		return m.Agent
	}
	return "tcpspan"
}

func readKV(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok {
			m[k] = v
		}
	}
	return m, sc.Err()
}

func readCounters(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				m[f[0]] = n
			}
		}
	}
	return m, nil
}

// cpuLine returns total and idle jiffies from /proc/stat's first line.
func cpuLine(path string) (total, idle float64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("%s: not a /proc/stat cpu line", path)
	}
	for i := 1; i <= 8; i++ { // user nice system idle iowait irq softirq steal
		v, _ := strconv.ParseFloat(f[i], 64)
		total += v
		if i == 4 || i == 5 {
			idle += v
		}
	}
	return total, idle, nil
}

var (
	reRequests   = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)\b`)
	reRPS        = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reSockErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func f64(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

func i64(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// loadRun reads one run directory written by scripts/bench.sh.
func loadRun(dir string) (*Run, error) {
	vals, err := readKV(filepath.Join(dir, "vals"))
	if err != nil {
		return nil, err
	}
	r := &Run{Mode: vals["mode"], Round: int(i64(vals["round"])), Dir: dir, Kind: kindOf(vals["mode"])}
	out, _ := os.ReadFile(filepath.Join(dir, "load.out"))
	kv := map[string]string{}
	for _, tok := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(tok, "="); ok {
			kv[k] = v
		}
	}
	switch r.Kind {
	case kindStorm:
		r.Attempts, r.Refused, r.AttemptErrors = i64(kv["attempts"]), i64(kv["refused"]), i64(kv["errors"])
		r.Seconds = f64(kv["seconds"])
	case kindSyscall:
		r.Calls, r.Seconds = i64(kv["calls"]), f64(kv["seconds"])
		r.NsPerCall, r.NsPerCallMedian = f64(kv["ns_per_call"]), f64(kv["ns_per_call_median"])
	case kindLoop:
		if kv["unit"] == "connection" {
			r.LoopConns = i64(kv["n"]) * i64(kv["batches"])
			r.NsPerConn, r.NsPerConnMedian = f64(kv["ns_per_unit"]), f64(kv["ns_per_unit_median"])
		}
	default:
		if m := reRequests.FindStringSubmatch(string(out)); m != nil {
			r.Requests = i64(m[1])
			r.Seconds = f64(m[2]) * map[string]float64{"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m[3]]
		}
		if m := reRPS.FindStringSubmatch(string(out)); m != nil {
			r.RequestsPerSec = f64(m[1])
		}
		if m := reSockErrors.FindStringSubmatch(string(out)); m != nil {
			r.SocketErrors = map[string]int64{"connect": i64(m[1]), "read": i64(m[2]), "write": i64(m[3]), "timeout": i64(m[4])}
		}
		if m := reNon2xx.FindStringSubmatch(string(out)); m != nil {
			r.Non2xx = i64(m[1])
		}
	}
	if r.Seconds == 0 { // the load tool said nothing usable: fall back to the wall clock
		r.Seconds = f64(vals["t_load_end"]) - f64(vals["t_load_start"])
	}

	before, err1 := readCounters(filepath.Join(dir, "counters.before"))
	after, err2 := readCounters(filepath.Join(dir, "counters.after"))
	if err1 == nil && err2 == nil {
		d := func(k string) int64 { return after[k] - before[k] }
		r.ActiveOpens, r.PassiveOpens, r.OutRsts = d("TcpActiveOpens"), d("TcpPassiveOpens"), d("TcpOutRsts")
		r.AttemptFails, r.EstabResets, r.ListenOverflows = d("TcpAttemptFails"), d("TcpEstabResets"), d("TcpExtListenOverflows")
	}
	if r.Seconds > 0 {
		switch r.Kind {
		case kindStorm:
			r.Rate = float64(r.Attempts) / r.Seconds
		case kindKeepalive:
			r.Rate = r.RequestsPerSec
		case kindSyscall:
			if r.NsPerCall > 0 {
				r.Rate = 1e9 / r.NsPerCall
			}
		case kindLoop:
			if r.NsPerConn > 0 {
				r.Rate = 1e9 / r.NsPerConn
			}
		default:
			r.Rate = float64(r.ActiveOpens) / r.Seconds
		}
		r.RSTsPerSec = float64(r.OutRsts) / r.Seconds
	}

	wall := f64(vals["t_load_end"]) - f64(vals["t_load_start"])
	tck := f64(vals["clk_tck"])
	if wall > 0 && tck > 0 {
		r.AgentCPUPct = 100 * f64(vals["agent_ticks"]) / tck / wall
		if n := r.units(); n > 0 {
			r.AgentUsPerConn = 1e6 * f64(vals["agent_ticks"]) / tck / n
		}
		r.JaegerCPUPct = 100 * f64(vals["jaeger_ticks"]) / tck / wall
	}
	// The cgroups' exact CPU times, where the bench had them; the agent's
	// then replaces its clock-tick figure.
	if n := r.units(); n > 0 {
		cg := func(g string) (float64, bool) {
			b, okb := vals[g+"_ns_before"]
			a, oka := vals[g+"_ns_after"]
			if !okb || !oka || f64(a) <= 0 {
				return 0, false
			}
			return (f64(a) - f64(b)) / 1e3 / n, true
		}
		if us, ok := cg("load"); ok {
			r.LoadUsPerConn = us
			if us, ok := cg("agent"); ok && vals["agent_pid"] != "" {
				r.AgentUsPerConn = us
				if wall > 0 {
					r.AgentCPUPct = 100 * us * n / 1e6 / wall
				}
			}
			if us, ok := cg("backend"); ok {
				r.BackendUsPerConn = us
			}
		}
	}
	t0, i0, e0 := cpuLine(filepath.Join(dir, "cpu.before"))
	t1, i1, e1 := cpuLine(filepath.Join(dir, "cpu.after"))
	if e0 == nil && e1 == nil && t1 > t0 {
		r.HostBusyPct = 100 * (1 - (i1-i0)/(t1-t0))
	}
	r.LoadAvg = f64(vals["loadavg"])
	r.AgentRSSMB = f64(vals["agent_hwm_kb"]) / 1024
	r.AgentThreads = int(i64(vals["agent_threads"]))
	r.StopSeconds = f64(vals["stop_seconds"])
	r.StopSignal = vals["stop_signal"]

	if r.agentKind() == "tcpspan" {
		r.readAgentLog(filepath.Join(dir, "agent.log"))
		if r.ActiveOpens > 0 {
			r.RecordsPerConn = float64(r.Connections+r.Orphans) / float64(r.ActiveOpens)
		}
		if m, _ := specOf(r.Mode); m.Kind == kindHTTP && m.CleanRatio == "1" {
			// A socket of an earlier run still closing when the agent
			// started is seen mid-life, and is a span too.
			r.SpansExpected = 2*r.ActiveOpens + r.Midlife
		}
	}
	r.SinkSpans = i64(vals["sink_spans"])
	if _, ok := vals["jaeger_spans"]; ok {
		r.Jaeger = &JaegerCount{
			Spans: i64(vals["jaeger_spans"]), Connections: i64(vals["jaeger_connections"]), ErrorSpans: i64(vals["jaeger_error_spans"]),
			RSTSent: i64(vals["jaeger_rst_sent"]), RSTReceived: i64(vals["jaeger_rst_received"]),
			QuerySeconds: f64(vals["jaeger_query_seconds"]),
		}
	}
	return r, nil
}

// units is what the CPU figures are per: connections (storm: attempts;
// keepalive: requests; syscall: calls; loop: connections) over the load.
func (r *Run) units() float64 {
	switch r.Kind {
	case kindKeepalive:
		return float64(r.Requests)
	case kindSyscall:
		return float64(r.Calls)
	case kindLoop:
		return float64(r.LoopConns)
	}
	return r.Rate * r.Seconds
}

// readAgentLog finds tcpspan's final "msg=stopped" line and its warnings.
func (r *Run) readAgentLog(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		kv := parseLogfmt(line)
		switch {
		case kv["msg"] == "stopped":
			r.Stopped = true
			r.Final = kv
			delete(r.Final, "time")
			delete(r.Final, "level")
			delete(r.Final, "msg")
			r.Connections, r.Orphans = i64(kv["connections"]), i64(kv["orphans"])
			r.Lost, r.Missed = i64(kv["lost"]), i64(kv["missed"])
			r.SpansRecorded, r.SpansExported = i64(kv["spans_recorded"]), i64(kv["spans_exported"])
			r.SpansFailed, r.SpansDropped = i64(kv["spans_failed"]), i64(kv["spans_dropped"])
			r.SampledOut, r.SpansFolded = i64(kv["sampled_out"]), i64(kv["spans_folded"])
			r.Midlife = i64(kv["midlife"])
		case kv["level"] == "WARN" || kv["level"] == "ERROR":
			w := kv["level"] + " " + kv["msg"]
			if !seen[w] && len(r.Warnings) < 8 {
				seen[w] = true
				r.Warnings = append(r.Warnings, w)
			}
		}
	}
}

// parseLogfmt splits a log/slog text line into key=value pairs, unquoting
// quoted values.
func parseLogfmt(line string) map[string]string {
	m := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key := line[:eq]
		if strings.ContainsAny(key, " \"") {
			break
		}
		rest := line[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				end = len(rest) - 1
			}
			q := rest[:end+1]
			if u, err := strconv.Unquote(q); err == nil {
				val = u
			} else {
				val = q
			}
			line = rest[end+1:]
		} else {
			sp := strings.IndexByte(rest, ' ')
			if sp < 0 {
				sp = len(rest)
			}
			val, line = rest[:sp], rest[sp:]
		}
		m[key] = val
	}
	return m
}

func loadRuns(dir string) ([]*Run, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var runs []*Run
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r, err := loadRun(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		runs = append(runs, r)
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Dir < runs[j].Dir })
	return runs, nil
}

// cmdLine prints one progress line for a run.
func cmdLine(args []string) error {
	if len(args) != 1 {
		usage()
	}
	r, err := loadRun(args[0])
	if err != nil {
		return err
	}
	w := os.Stdout
	fmt.Fprint(w, progressLine(r))
	return nil
}

// progressLine is one line for a finished run.
func progressLine(r *Run) string {
	var b strings.Builder
	switch r.Kind {
	case kindStorm:
		fmt.Fprintf(&b, "  r%d %-17s %8.0f RST/s  (TcpOutRsts %d, attempts %d)", r.Round, r.Mode, r.Rate, r.OutRsts, r.Attempts)
	case kindKeepalive:
		fmt.Fprintf(&b, "  r%d %-17s %8.0f req/s  (%d requests, %d connections)", r.Round, r.Mode, r.Rate, r.Requests, r.ActiveOpens)
	case kindSyscall:
		fmt.Fprintf(&b, "  r%d %-17s %8.1f ns/call (median batch %.1f; %d calls)", r.Round, r.Mode, r.NsPerCall, r.NsPerCallMedian, r.Calls)
	case kindLoop:
		fmt.Fprintf(&b, "  r%d %-17s %8.0f ns/conn (median batch %.0f; %d connections)", r.Round, r.Mode, r.NsPerConn, r.NsPerConnMedian, r.LoopConns)
	default:
		fmt.Fprintf(&b, "  r%d %-17s %8.0f conn/s (%d connections)", r.Round, r.Mode, r.Rate, r.ActiveOpens)
	}
	if r.agentKind() != "" {
		fmt.Fprintf(&b, "  agent %5.1f%% CPU (%.1f µs/conn) %4.0f MB", r.AgentCPUPct, r.AgentUsPerConn, r.AgentRSSMB)
	}
	if r.agentKind() == "tcpspan" {
		if !r.Stopped {
			fmt.Fprintf(&b, "  NO FINAL LINE")
		} else {
			fmt.Fprintf(&b, "  lost %d missed %d spans %d/%d dropped %d folded %d", r.Lost, r.Missed, r.SpansExported, r.SpansRecorded, r.SpansDropped, r.SpansFolded)
		}
	}
	b.WriteString("\n")
	return b.String()
}
