// Command tcpspan-report reads tcpspan's spans back from Jaeger and prints
// what went wrong: error spans grouped by diagnosis with counts, one full
// example per root cause, and the queries that find them. It reports what
// the trace store holds, which is what a user investigating would see.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: tcpspan-report [-jaeger URL] [-since 15m] [-examples list]")
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
	client := jaegerapi.Client{BaseURL: strings.TrimSuffix(*query, "/"), MaxTraces: 100000}
	end := time.Now()
	start := end.Add(-*since)
	spans, err := fetch(client, start, end, *slice)
	if err != nil {
		fmt.Fprintf(stderr, "tcpspan-report: %v\n", err)
		return 1
	}
	report(stdout, client, spans, start, end, strings.Split(*examples, ","))
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

var (
	numbers = regexp.MustCompile(`\d+`)
	// stormSuffix ends a storm span's diagnosis: "; 4211 such in 998ms from 3 peers".
	stormSuffix = regexp.MustCompile(`; \d+ such in \S+ from \d+ peers?$`)
)

// shape is a diagnosis with its numbers (pids, fds, ports, counts) masked,
// and a storm's count dropped, so that alike errors group together.
func shape(description string) string {
	return numbers.ReplaceAllString(stormSuffix.ReplaceAllString(description, ""), "N")
}

func attr(sp *jaegerapi.Span, key string) string {
	if v, ok := sp.Attributes[key]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

func report(w io.Writer, c jaegerapi.Client, spans []jaegerapi.Span, start, end time.Time, examples []string) {
	type group struct {
		service, kind, shape string
		count                int
	}
	groups := map[string]*group{}
	spanByID := make(map[string]*jaegerapi.Span, len(spans))
	for i := range spans {
		spanByID[spans[i].SpanID] = &spans[i]
	}
	events := map[string]int{}
	seen := map[string]bool{}
	var errorSpans, storms, diagnoses int
	for i := range spans {
		sp := &spans[i]
		if sp.Scope != "" && !strings.HasPrefix(sp.Scope, "github.com/tcpspan/tcpspan") {
			continue // an application's own span
		}
		if _, ok := sp.Attributes["tcp.diagnosis.of"]; ok {
			// Not a connection: the diagnosis of one, in an
			// application's trace (printed with -traces).
			diagnoses++
			continue
		}
		if sp.Connections() > 1 {
			storms++
			// A storm span stands for many connections of one kind
			// (orphans the tracker folded, or what a full export queue
			// folded): its events are one example, the totals are
			// attributes. Every reset in a storm has the span's reason.
			for _, e := range sp.Events {
				if seen[e.Name] {
					continue
				}
				seen[e.Name] = true
				key := e.Name
				if e.Name == "tcp.rst_sent" {
					key += " " + attr(sp, "tcp.reset.reason")
				}
				events[key] += sp.EventCount(e.Name)
			}
			clear(seen)
		} else {
			for _, e := range sp.Events {
				key := e.Name
				if r, ok := e.Attributes["tcp.reset.reason"]; ok {
					key += " " + fmt.Sprint(r)
				}
				events[key]++
			}
		}
		if sp.Status.Code != jaegerapi.StatusError {
			continue
		}
		errorSpans++
		g := &group{service: sp.Service, kind: strings.ToLower(sp.Kind.String()), shape: shape(sp.Status.Message)}
		key := g.service + "\x00" + g.kind + "\x00" + g.shape
		if groups[key] == nil {
			groups[key] = g
		}
		groups[key].count += sp.Connections()
	}

	fmt.Fprintf(w, "== from Jaeger: %d spans, %d with status Error (%d of them storms of alike connections), %s to %s\n",
		len(spans), errorSpans, storms, start.Format("15:04:05"), end.Format("15:04:05"))
	if diagnoses > 0 {
		fmt.Fprintf(w, "   and %d diagnosis spans in applications' traces (tcp.diagnosis.of)\n", diagnoses)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "connections with an error, by diagnosis (a storm span counts its connections; numbers masked as N):")
	sorted := slices.Collect(maps.Values(groups))
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].count > sorted[j].count })
	for _, g := range sorted {
		fmt.Fprintf(w, "  %7d  %-8s %-7s %s\n", g.count, g.service, g.kind, g.shape)
	}
	fmt.Fprintln(w, "\nkernel events on those spans:")
	for _, k := range slices.Sorted(maps.Keys(events)) {
		fmt.Fprintf(w, "  %7d  %s\n", events[k], k)
	}

	for _, ex := range examples {
		errType, reason, _ := strings.Cut(strings.TrimSpace(ex), ":")
		sp := pick(spans, errType, reason)
		fmt.Fprintf(w, "\n== example: error.type=%s", errType)
		if reason != "" {
			fmt.Fprintf(w, " tcp.reset.reason=%s", reason)
		}
		fmt.Fprintln(w)
		if sp == nil {
			fmt.Fprintln(w, "  (none in this window)")
			continue
		}
		printSpan(w, sp, spanByID)
		fmt.Fprintf(w, "  find them: curl -s '%s%s'\n", c.BaseURL, c.TracesQuery(sp.Service, start, end))
		fmt.Fprintf(w, "  then filter on attributes error.type=%s", errType)
		if reason != "" {
			fmt.Fprintf(w, " and tcp.reset.reason=%s", reason)
		}
		fmt.Fprintln(w)
	}
}

// pick returns the most telling span of an error type: one whose chain of
// events ends in a reset if there is one, else the one with most events.
func pick(spans []jaegerapi.Span, errType, reason string) *jaegerapi.Span {
	var best *jaegerapi.Span
	score := func(sp *jaegerapi.Span) int {
		n := len(sp.Events)
		for _, e := range sp.Events {
			if e.Name == "tcp.rst_sent" {
				n += 1000
			}
		}
		return n
	}
	for i := range spans {
		sp := &spans[i]
		if attr(sp, "error.type") != errType || (reason != "" && attr(sp, "tcp.reset.reason") != reason) {
			continue
		}
		if best == nil || score(sp) > score(best) {
			best = sp
		}
	}
	return best
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
