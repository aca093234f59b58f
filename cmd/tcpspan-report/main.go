// Command tcpspan-report reads tcpspan's spans back from Jaeger and prints
// what went wrong: error spans grouped by diagnosis with counts, one full
// example per root cause, and the queries that find them. It reports what
// the trace store holds, which is what a user investigating would see.
//
// It only reads: it must not talk to the agent or the kernel, nor write
// to the trace store.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tcpspan-report", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	query := fs.String("jaeger", "http://127.0.0.1:16686", "Jaeger query service URL")
	since := fs.Duration("since", 15*time.Minute, "report spans that started this long ago or later")
	slice := fs.Duration("slice", time.Second, "query Jaeger in windows of this length (bounds each answer)")
	examples := fs.String("examples", "tcp.accept_queue_overflow,tcp.rst_sent:TCP_ABORT_ON_CLOSE",
		"error types (optionally :reset reason) to print one full example span of, comma-separated")
	traceIDs := fs.String("traces", "", "application trace ids (comma-separated) to print as trees, with tcpspan's diagnosis spans inside")
	htmlPath := fs.String("html", "", "also write the report as a self-contained HTML page to this file, with a timeline of one connection of each kind of error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: tcpspan-report [-jaeger URL] [-since 15m] [-examples list] [-html FILE]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "tcpspan-report: %v (see -h)\n", err)
		return 2
	}
	if *slice <= 0 || *since <= 0 {
		fmt.Fprintln(stderr, "tcpspan-report: -since and -slice must be positive")
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tcpspan-report: unexpected argument %q (see -h)\n", fs.Arg(0))
		return 2
	}
	if *htmlPath != "" {
		// Before reading Jaeger, which takes a while: the page must have
		// somewhere to go.
		if st, err := os.Stat(filepath.Dir(*htmlPath)); err != nil || !st.IsDir() {
			fmt.Fprintf(stderr, "tcpspan-report: -html %s: no directory %s\n", *htmlPath, filepath.Dir(*htmlPath))
			return 2
		}
	}
	client := jaegerapi.Client{BaseURL: strings.TrimSuffix(*query, "/"), MaxTraces: 100000}
	end := time.Now()
	start := end.Add(-*since)
	spans, err := fetch(client, start, end, *slice)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.ECONNREFUSED) {
			hint = " (is Jaeger running? make jaeger starts one; make demo leaves one running)"
		}
		fmt.Fprintf(stderr, "tcpspan-report: %v%s\n", err, hint)
		return 1
	}
	sum := summarize(spans, start, end)
	writeText(stdout, client, sum, strings.Split(*examples, ","))
	if *htmlPath != "" {
		if err := writeHTMLFile(*htmlPath, buildPage(client, sum, func(id string) ([]jaegerapi.Span, error) {
			tr, err := client.Trace(id)
			return tr.Spans, err
		})); err != nil {
			fmt.Fprintf(stderr, "tcpspan-report: %v\n", err)
			return 1
		}
	}
	for _, id := range strings.Split(*traceIDs, ",") {
		if id = strings.TrimSpace(id); id == "" {
			continue
		}
		tr, err := client.Trace(id)
		if err != nil {
			fmt.Fprintf(stderr, "tcpspan-report: trace %s: %v\n", id, err)
			return 1
		}
		printTrace(stdout, tr)
	}
	return 0
}

// writeHTMLFile writes the page to a temporary file beside path and renames
// it, so that a reader never sees half a page.
func writeHTMLFile(path string, p htmlPage) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tcpspan-report-*.html")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := writeHTML(f, p); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// fetch reads every span of every service but Jaeger's own, in time slices
// so that no single answer is huge.
func fetch(c jaegerapi.Client, start, end time.Time, slice time.Duration) ([]jaegerapi.Span, error) {
	services, err := c.Services()
	if err != nil {
		return nil, err
	}
	var spans []jaegerapi.Span
	for _, svc := range services {
		if svc == "jaeger" {
			continue
		}
		for from := start; from.Before(end); from = from.Add(slice) {
			traces, err := c.Traces(svc, from, from.Add(slice))
			if err != nil {
				return nil, fmt.Errorf("service %s: %w", svc, err)
			}
			for _, tr := range traces {
				for _, sp := range tr.ServiceSpans(svc) {
					// A span starting exactly on a boundary is in both windows.
					if !sp.Start.Before(from.Add(slice)) {
						continue
					}
					spans = append(spans, sp)
				}
			}
		}
	}
	return spans, nil
}

func report(w io.Writer, c jaegerapi.Client, spans []jaegerapi.Span, start, end time.Time, examples []string) {
	writeText(w, c, summarize(spans, start, end), examples)
}

func writeText(w io.Writer, c jaegerapi.Client, s *summary, examples []string) {
	fmt.Fprintf(w, "== from Jaeger: %d spans, %d with status Error (%d of them storms of alike connections), %s to %s\n",
		len(s.spans), s.errorSpans, len(s.storms), s.start.Format("15:04:05"), s.end.Format("15:04:05"))
	if s.diagnoses > 0 {
		fmt.Fprintf(w, "   and %d diagnosis spans in applications' traces (tcpspan.diagnosis.of)\n", s.diagnoses)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "connections with an error, by diagnosis (a storm span counts its connections; numbers masked as N):")
	for _, g := range s.groups {
		fmt.Fprintf(w, "  %7d  %-8s %-7s %s\n", g.count, g.service, g.kind, g.shape)
	}
	fmt.Fprintln(w, "\nkernel events on those spans:")
	for _, k := range slices.Sorted(maps.Keys(s.events)) {
		fmt.Fprintf(w, "  %7d  %s\n", s.events[k], k)
	}

	for _, ex := range examples {
		errType, reason, _ := strings.Cut(strings.TrimSpace(ex), ":")
		sp := s.pick(errType, reason)
		fmt.Fprintf(w, "\n== example: error.type=%s", errType)
		if reason != "" {
			fmt.Fprintf(w, " tcpspan.reset.reason=%s", reason)
		}
		fmt.Fprintln(w)
		if sp == nil {
			fmt.Fprintln(w, "  (none in this window)")
			continue
		}
		printSpan(w, sp, s.spanByID)
		fmt.Fprintf(w, "  find them: curl -s '%s%s'\n", c.BaseURL, c.TracesQuery(sp.Service, s.start, s.end))
		fmt.Fprintf(w, "  then filter on attributes error.type=%s", errType)
		if reason != "" {
			fmt.Fprintf(w, " and tcpspan.reset.reason=%s", reason)
		}
		fmt.Fprintln(w)
	}
}

func printSpan(w io.Writer, sp *jaegerapi.Span, spanByID map[string]*jaegerapi.Span) {
	fmt.Fprintf(w, "  span %q  kind %s  service %s  trace %s\n", sp.Name, sp.Kind, sp.Service, sp.TraceID)
	fmt.Fprintf(w, "  %s -> %s (%s)\n", sp.Start.Format("15:04:05.000000"), sp.End.Format("15:04:05.000000"),
		sp.End.Sub(sp.Start).Round(time.Microsecond))
	fmt.Fprintf(w, "  status %s: %s\n", sp.Status.Code, sp.Status.Message)
	fmt.Fprintln(w, "  attributes:")
	for _, k := range slices.Sorted(maps.Keys(sp.Attributes)) {
		fmt.Fprintf(w, "    %-28s %v\n", k, sp.Attributes[k])
	}
	for _, l := range sp.Links {
		fmt.Fprintf(w, "  link: trace %s span %s %v\n", l.TraceID, l.SpanID, l.Attributes)
		if linked := spanByID[l.SpanID]; linked != nil {
			fmt.Fprintf(w, "        -> %q  %s  status %s: %s\n", linked.Name, linked.Service, linked.Status.Code, linked.Status.Message)
		}
	}
	fmt.Fprintln(w, "  events, in time order:")
	evs := slices.Clone(sp.Events)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	for _, e := range evs {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(e.Attributes)) {
			parts = append(parts, fmt.Sprintf("%s=%v", k, e.Attributes[k]))
		}
		fmt.Fprintf(w, "    %s  +%-10s %-22s %s\n", e.Time.Format("15:04:05.000000"),
			e.Time.Sub(sp.Start).Round(time.Microsecond), e.Name, strings.Join(parts, " "))
	}
}

// printTrace prints an application's trace as a tree, as a trace view
// would: each span under its parent, in start order, with its service,
// duration and, for errors, the status message; tcpspan's diagnosis spans
// sit under the request span they explain.
func printTrace(w io.Writer, tr jaegerapi.Trace) {
	fmt.Fprintf(w, "\n== the application's trace %s (%d spans)\n", tr.TraceID, len(tr.Spans))
	if len(tr.Spans) == 0 {
		fmt.Fprintln(w, "  (not in Jaeger)")
		return
	}
	children := map[string][]*jaegerapi.Span{}
	ids := map[string]bool{}
	for i := range tr.Spans {
		ids[tr.Spans[i].SpanID] = true
	}
	var roots []*jaegerapi.Span
	for i := range tr.Spans {
		sp := &tr.Spans[i]
		if sp.ParentSpanID == "" || !ids[sp.ParentSpanID] {
			roots = append(roots, sp)
			continue
		}
		children[sp.ParentSpanID] = append(children[sp.ParentSpanID], sp)
	}
	t0 := tr.Spans[0].Start
	for _, sp := range tr.Spans {
		if sp.Start.Before(t0) {
			t0 = sp.Start
		}
	}
	var walk func(sp *jaegerapi.Span, depth int)
	walk = func(sp *jaegerapi.Span, depth int) {
		line := fmt.Sprintf("  %s%-*s %-14s +%-9s %9s", strings.Repeat("  ", depth), 28-2*depth, sp.Name, sp.Service,
			sp.Start.Sub(t0).Round(time.Microsecond), sp.End.Sub(sp.Start).Round(time.Microsecond))
		if sp.Status.Code == jaegerapi.StatusError {
			line += "  ERROR " + sp.Status.Message
		}
		if sp.ParentSpanID != "" && !ids[sp.ParentSpanID] {
			line += "  (parent " + sp.ParentSpanID + " not in Jaeger)"
		}
		fmt.Fprintln(w, line)
		kids := children[sp.SpanID]
		sort.SliceStable(kids, func(i, j int) bool { return kids[i].Start.Before(kids[j].Start) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	sort.SliceStable(roots, func(i, j int) bool { return roots[i].Start.Before(roots[j].Start) })
	for _, r := range roots {
		walk(r, 0)
	}
}
