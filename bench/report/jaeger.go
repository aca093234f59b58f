package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
)

// cmdJaeger prints what jaegerVals counts for a run directory.
func cmdJaeger(args []string) error {
	fs := flag.NewFlagSet("jaeger", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:16686", "Jaeger query service")
	slice := fs.Duration("slice", time.Second, "query window")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	kv, err := jaegerVals(*url, *slice, fs.Arg(0))
	fmt.Print(kv)
	return err
}

// jaegerVals counts the spans Jaeger holds that started while a run's agent
// was attached (from t_ready to t_stop), over all services, in windows of
// slice so that no answer is huge, as key=value lines for the run's vals.
func jaegerVals(url string, slice time.Duration, dir string) (string, error) {
	vals, err := readKV(filepath.Join(dir, "vals"))
	if err != nil {
		return "", err
	}
	unix := func(s string) time.Time {
		f := f64(s)
		return time.Unix(0, int64(f*1e9))
	}
	// The run's connections start after the agent is attached; allow for the
	// conversion of kernel timestamps to wall-clock time.
	from := unix(vals["t_ready"]).Add(-200 * time.Millisecond)
	to := unix(vals["t_stop"])
	if !to.After(from) {
		return "", fmt.Errorf("%s: no t_ready/t_stop", dir)
	}
	start := time.Now()
	c := jaegerapi.Client{BaseURL: strings.TrimSuffix(url, "/"), MaxTraces: 1000000}
	services, err := c.Services()
	if err != nil {
		return "", err
	}
	seen := map[string]bool{}
	var n JaegerCount
	for _, svc := range services {
		if svc == "jaeger" {
			continue
		}
		for t := from; t.Before(to); t = t.Add(slice) {
			traces, err := c.Traces(svc, t, t.Add(slice))
			if err != nil {
				return "", fmt.Errorf("service %s: %w", svc, err)
			}
			for _, tr := range traces {
				for _, sp := range tr.Spans {
					if seen[sp.SpanID] || sp.Start.Before(from) || !sp.Start.Before(to) {
						continue
					}
					seen[sp.SpanID] = true
					n.Spans++
					// A storm span (tcpspan.storm.count) stands for many
					// connections: orphans, or what a full queue folded.
					n.Connections += int64(sp.Connections())
					if sp.Status.Code == jaegerapi.StatusError {
						n.ErrorSpans++
					}
					n.RSTSent += int64(sp.EventCount("tcp.rst_sent"))
					n.RSTReceived += int64(sp.EventCount("tcp.rst_received"))
				}
			}
		}
	}
	return fmt.Sprintf("jaeger_spans=%d\njaeger_connections=%d\njaeger_error_spans=%d\njaeger_rst_sent=%d\njaeger_rst_received=%d\njaeger_query_seconds=%.1f\n",
		n.Spans, n.Connections, n.ErrorSpans, n.RSTSent, n.RSTReceived, time.Since(start).Seconds()), nil
}

// cmdBPFStats prints, for the BPF programs that appeared when the agent
// started (in BEFORE, not in PRE), their runs and run time during the load
// (AFTER minus BEFORE), as kernel.bpf_stats_enabled counts them.
func cmdBPFStats(args []string) error {
	if len(args) != 4 {
		usage()
	}
	return bpfStats(os.Stdout, args[0], args[1], args[2], f64(args[3]), "connection")
}

// bpfStats writes the table of cmdBPFStats for conns connections.
func bpfStats(w io.Writer, prePath, beforePath, afterPath string, conns float64, unit string) error {
	type prog struct {
		ID        int    `json:"id"`
		Type      string `json:"type"`
		Name      string `json:"name"`
		RunTimeNS int64  `json:"run_time_ns"`
		RunCnt    int64  `json:"run_cnt"`
		Misses    int64  `json:"recursion_misses"`
	}
	read := func(path string) (map[int]prog, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var ps []prog
		if err := json.Unmarshal(b, &ps); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		m := map[int]prog{}
		for _, p := range ps {
			m[p.ID] = p
		}
		return m, nil
	}
	pre, err := read(prePath)
	if err != nil {
		return err
	}
	before, err := read(beforePath)
	if err != nil {
		return err
	}
	after, err := read(afterPath)
	if err != nil {
		return err
	}
	type row struct {
		name          string
		runs, ns, mis int64
	}
	var rows []row
	var totRuns, totNS int64
	for id, b := range before {
		if _, old := pre[id]; old {
			continue
		}
		a, ok := after[id]
		if !ok {
			continue
		}
		r := row{b.Type + " " + b.Name, a.RunCnt - b.RunCnt, a.RunTimeNS - b.RunTimeNS, a.Misses - b.Misses}
		rows = append(rows, r)
		totRuns += r.runs
		totNS += r.ns
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ns > rows[j].ns })
	short := map[string]string{"connection": "conn", "request": "req"}[unit]
	fmt.Fprintf(w, "%-40s %12s %10s %9s %12s %8s\n", "program", "runs", "runs/"+short, "ns/run", "ms total", "misses")
	for _, r := range rows {
		per, nsPer := 0.0, 0.0
		if conns > 0 {
			per = float64(r.runs) / conns
		}
		if r.runs > 0 {
			nsPer = float64(r.ns) / float64(r.runs)
		}
		fmt.Fprintf(w, "%-40s %12d %10.2f %9.0f %12.1f %8d\n", r.name, r.runs, per, nsPer, float64(r.ns)/1e6, r.mis)
	}
	if conns > 0 && totRuns > 0 {
		fmt.Fprintf(w, "total: %d runs (%.1f per %s), %.1f ms of BPF time, %.2f µs per %s, %.0f ns per run; %.0f %ss\n",
			totRuns, float64(totRuns)/conns, unit, float64(totNS)/1e6, float64(totNS)/conns/1e3, unit, float64(totNS)/float64(totRuns), conns, unit)
	}
	return nil
}
