package main

import (
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
)

// The HTML report: one self-contained page (no script, no font, no
// stylesheet from elsewhere; it works offline) with the diagnosis table,
// one example connection of each kind of error drawn as a timeline, the
// storms, and the kernel's events in total.

// maxLanes bounds the spans drawn for one example.
const maxLanes = 8

type htmlPage struct {
	Generated, From, To, Jaeger string
	Spans, ErrorSpans           int
	ErrorConnections            int
	Storms, Diagnoses           int
	Groups                      []htmlGroup
	Examples                    []htmlExample
	StormRows                   []htmlStorm
	Events                      []htmlCount
}

type htmlGroup struct {
	Count                           int
	BarW                            int
	Service, Kind, ErrorType, Shape string
}

type htmlExample struct {
	ID, Kind, Title, ErrorType, Reason string
	Connections                        int
	Description, Service               string
	SpanID, TraceID                    string
	SideBySide                         bool
	Timeline                           timeline
	Query                              string
}

type htmlStorm struct {
	Service, Kind, Shape, From, To, Duration string
	Connections, Peers                       int
	SpanID, TraceID                          string
	EventTotals                              string
}

type htmlCount struct {
	Count int
	Name  string
}

// spanFinder finds a span by trace and span id: among the spans fetched,
// else in its trace, read from Jaeger (a linked span may lie outside the
// report's window).
type spanFinder struct {
	s      *summary
	trace  func(traceID string) ([]jaegerapi.Span, error)
	traces map[string][]jaegerapi.Span
}

func (f *spanFinder) traceSpans(traceID string) []jaegerapi.Span {
	if spans, ok := f.traces[traceID]; ok {
		return spans
	}
	var spans []jaegerapi.Span
	if f.trace != nil {
		spans, _ = f.trace(traceID) // a trace Jaeger cannot give is drawn without
	}
	f.traces[traceID] = spans
	return spans
}

func (f *spanFinder) find(traceID, spanID string) *jaegerapi.Span {
	if sp := f.s.spanByID[spanID]; sp != nil && sp.TraceID == traceID {
		return sp
	}
	spans := f.traceSpans(traceID)
	for i := range spans {
		if spans[i].SpanID == spanID {
			return &spans[i]
		}
	}
	return nil
}

// lanes returns the spans to draw for an example: the span, the other end
// of its connection (same trace, linked as peer), the connection it was
// closed after (a forwarder's refused upstream connect), the application
// spans whose requests it carried, and the diagnosis spans placed in those
// applications' traces.
func (f *spanFinder) lanes(main *jaegerapi.Span) []lane {
	out := []lane{{span: main, role: "this end"}}
	have := map[string]bool{main.SpanID: true}
	add := func(sp *jaegerapi.Span, role string) {
		if sp == nil || have[sp.SpanID] || len(out) >= maxLanes {
			return
		}
		have[sp.SpanID] = true
		out = append(out, lane{span: sp, role: role})
	}
	ends := []*jaegerapi.Span{main}
	for _, l := range main.Links {
		if l.Attributes["tcpspan.link.reason"] == "peer" {
			if peer := f.find(l.TraceID, l.SpanID); peer != nil {
				add(peer, "the other end")
				ends = append(ends, peer)
			}
		}
	}
	// The other end may link to this one without the reverse (this end
	// was exported first).
	if len(ends) == 1 {
		spans := f.traceSpans(main.TraceID)
		for i := range spans {
			for _, l := range spans[i].Links {
				if l.SpanID == main.SpanID && l.Attributes["tcpspan.link.reason"] == "peer" {
					add(&spans[i], "the other end")
					ends = append(ends, &spans[i])
				}
			}
		}
	}
	for _, end := range ends {
		for _, l := range end.Links {
			if l.Attributes["tcpspan.link.reason"] == "closed_after_failure" {
				add(f.find(l.TraceID, l.SpanID), "closed after this failure")
			}
		}
	}
	for _, end := range ends {
		for _, l := range end.Links {
			if l.Attributes["tcpspan.link.reason"] != "traceparent" {
				continue
			}
			add(f.find(l.TraceID, l.SpanID), "the application's request")
			spans := f.traceSpans(l.TraceID)
			for i := range spans {
				if !isDiagnosis(&spans[i]) {
					continue
				}
				for _, dl := range spans[i].Links {
					if have[dl.SpanID] && dl.Attributes["tcpspan.link.reason"] == "connection" {
						add(&spans[i], "diagnosis in the application's trace")
						break
					}
				}
			}
		}
	}
	return out
}

func buildPage(c jaegerapi.Client, s *summary, trace func(string) ([]jaegerapi.Span, error)) htmlPage {
	f := &spanFinder{s: s, trace: trace, traces: map[string][]jaegerapi.Span{}}
	for i := range s.spans {
		f.traces[s.spans[i].TraceID] = append(f.traces[s.spans[i].TraceID], s.spans[i])
	}
	p := htmlPage{
		Generated: time.Now().UTC().Format("2006-01-02 15:04:05 UTC"),
		From:      s.start.UTC().Format("2006-01-02 15:04:05"),
		To:        s.end.UTC().Format("15:04:05 UTC"),
		Jaeger:    c.BaseURL,
		Spans:     len(s.spans), ErrorSpans: s.errorSpans, Storms: len(s.storms), Diagnoses: s.diagnoses,
	}
	most := 1
	for _, g := range s.groups {
		most = max(most, g.count)
		p.ErrorConnections += g.count
	}
	for _, g := range s.groups {
		p.Groups = append(p.Groups, htmlGroup{Count: g.count, BarW: max(1, g.count*120/most), Service: g.service,
			Kind: g.kind, ErrorType: g.errorType, Shape: g.shape})
	}
	kinds, counts := s.kinds()
	for i, k := range kinds {
		sp := s.example(k)
		if sp == nil {
			continue
		}
		lanes := f.lanes(sp)
		ex := htmlExample{
			ID: fmt.Sprintf("example-%d", i+1), Kind: k.String(), Title: k.Title(), ErrorType: k.errorType, Reason: k.reason,
			Connections: counts[k], Description: sp.Status.Message, Service: sp.Service,
			SpanID: sp.SpanID, TraceID: sp.TraceID, Timeline: layout(lanes),
			Query: c.BaseURL + "/api/v3/traces/" + sp.TraceID,
		}
		for _, l := range lanes[1:] {
			if l.role == "the other end" {
				ex.SideBySide = true
			}
		}
		p.Examples = append(p.Examples, ex)
	}
	for _, sp := range s.storms {
		var totals []string
		for _, k := range slices.Sorted(maps.Keys(sp.Attributes)) {
			if name, ok := strings.CutPrefix(k, "tcpspan.storm.events."); ok {
				totals = append(totals, fmt.Sprintf("%s %v", name, sp.Attributes[k]))
			}
		}
		peers := 0
		if n, ok := sp.Attributes["tcpspan.storm.peer_addresses"].(int64); ok {
			peers = int(n)
		}
		p.StormRows = append(p.StormRows, htmlStorm{
			Service: sp.Service, Kind: strings.ToLower(sp.Kind.String()), Shape: shape(sp.Status.Message),
			From: sp.Start.UTC().Format("15:04:05.000"), To: sp.End.UTC().Format("15:04:05.000"),
			Duration: strings.TrimPrefix(fmtOffset(sp.End.Sub(sp.Start)), "+"), Connections: sp.Connections(),
			Peers: peers, SpanID: sp.SpanID, TraceID: sp.TraceID, EventTotals: strings.Join(totals, " · "),
		})
	}
	for _, k := range slices.Sorted(maps.Keys(s.events)) {
		p.Events = append(p.Events, htmlCount{Count: s.events[k], Name: k})
	}
	sort.SliceStable(p.Events, func(i, j int) bool { return p.Events[i].Count > p.Events[j].Count })
	return p
}

func writeHTML(w io.Writer, p htmlPage) error {
	return pageTemplate.Execute(w, p)
}

var pageTemplate = template.Must(template.New("report").
	Funcs(template.FuncMap{"add": func(a, b int) int { return a + b }}).
	Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tcpspan report {{.From}} to {{.To}}</title>
<style>
:root { --ink:#1d2430; --muted:#6b7480; --line:#e3e7ec; --bg:#f6f7f9; --card:#fff;
  --state:#2a9d8f; --process:#3a6ea5; --rst-sent:#d62828; --rst-received:#f77f00;
  --drop:#8e44ad; --retransmit:#e0a800; --error:#b5179e; --other:#7f8c8d; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background:#18202b; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; letter-spacing:.2px; }
header h1 span { color:#7fd1c7; }
header p { margin:0; color:#b8c2cc; font-size:13px; }
main { max-width:1120px; margin:0 auto; padding:20px 24px 48px; }
.stats { display:flex; gap:12px; flex-wrap:wrap; margin:0 0 22px; }
.stat { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 18px; min-width:150px; }
.stat b { display:block; font-size:26px; font-weight:650; font-variant-numeric: tabular-nums; }
.stat span { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.5px; }
.stat.err b { color:var(--rst-sent); }
section.card { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:18px 20px; margin:0 0 20px; }
h2 { font-size:17px; margin:0 0 12px; font-weight:620; }
h2 small { color:var(--muted); font-weight:400; font-size:13px; margin-left:6px; }
table { border-collapse:collapse; width:100%; }
th { text-align:left; font-size:11.5px; color:var(--muted); text-transform:uppercase; letter-spacing:.4px;
  font-weight:600; border-bottom:1px solid var(--line); padding:6px 8px; }
td { border-bottom:1px solid var(--line); padding:6px 8px; vertical-align:top; }
tr:last-child td { border-bottom:none; }
td.num { text-align:right; font-variant-numeric: tabular-nums; font-weight:600; white-space:nowrap; }
td.bar { width:130px; }
td code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size:12.5px; }
.tag { display:inline-block; border-radius:4px; padding:0 6px; font-size:12px; background:#eef1f4; color:#334; white-space:nowrap; }
.tag.server { background:#e3f1ef; color:#1c6b62; } .tag.client { background:#e6eef8; color:#2c5687; }
.example h2 code.kind { font-size:12px; font-weight:500; color:#556; background:#eef1f4; border-radius:4px; padding:1px 6px; vertical-align:2px; }
.desc { margin:0 0 10px; padding:8px 12px; background:#fff5f5; border-left:3px solid var(--rst-sent); border-radius:4px; }
.meta { color:var(--muted); font-size:12px; margin:0 0 10px; }
.meta a { color:inherit; }
svg.timeline { display:block; width:100%; height:auto; overflow:visible; }
svg text { font-family: system-ui, "DejaVu Sans", sans-serif; }
.lane-title { font-size:12.5px; font-weight:600; fill:var(--ink); }
.lane-sub { font-size:11px; fill:var(--muted); }
.lane-role { font-size:10.5px; fill:#9aa3ad; text-transform:uppercase; letter-spacing:.5px; }
.bar { fill:#dfe7ee; stroke:#b9c6d2; }
.bar.error { fill:#fbe3e3; stroke:#e49a9a; }
.ev-label { font-size:10.5px; fill:#4a5360; }
.tick line { stroke:#eef1f4; } .tick text { font-size:10px; fill:var(--muted); }
.event { stroke:#fff; stroke-width:1.5; }
.ev-state { fill:var(--state); color:var(--state); } .ev-process { fill:var(--process); color:var(--process); }
.ev-rst-sent { fill:var(--rst-sent); color:var(--rst-sent); } .ev-rst-received { fill:var(--rst-received); color:var(--rst-received); }
.ev-drop { fill:var(--drop); color:var(--drop); } .ev-retransmit { fill:var(--retransmit); color:var(--retransmit); }
.ev-error { fill:var(--error); color:var(--error); } .ev-other { fill:var(--other); color:var(--other); }
.dot { display:inline-block; width:9px; height:9px; border-radius:50%; background:currentColor; margin-right:6px; vertical-align:0; }
.legend { display:flex; gap:14px; flex-wrap:wrap; font-size:12px; color:var(--muted); margin:4px 0 14px; }
details { margin-top:8px; } summary { cursor:pointer; color:var(--muted); font-size:12.5px; }
table.events td { font-size:12.5px; padding:3px 8px; }
.empty { color:var(--muted); font-style:italic; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:12px; }
</style>
</head>
<body>
<header>
<h1><span>tcpspan</span> report</h1>
<p>Spans read back from Jaeger at <span class="mono">{{.Jaeger}}</span>, started {{.From}} to {{.To}}. Generated {{.Generated}}.</p>
</header>
<main>
<div class="stats">
<div class="stat"><b data-stat="spans">{{.Spans}}</b><span>spans</span></div>
<div class="stat err"><b data-stat="error-spans">{{.ErrorSpans}}</b><span>with status Error</span></div>
<div class="stat err"><b data-stat="error-connections">{{.ErrorConnections}}</b><span>connections with an error</span></div>
<div class="stat"><b data-stat="storms">{{.Storms}}</b><span>storm spans</span></div>
<div class="stat"><b data-stat="diagnoses">{{.Diagnoses}}</b><span>diagnoses in app traces</span></div>
</div>

<section class="card" id="diagnoses">
<h2>Connections with an error, by diagnosis <small>a storm span counts its connections; numbers masked as N</small></h2>
{{if .Groups}}<table>
<thead><tr><th>connections</th><th></th><th>service</th><th>side</th><th>error.type</th><th>diagnosis</th></tr></thead>
<tbody>
{{range .Groups}}<tr class="diagnosis" data-count="{{.Count}}" data-error-type="{{.ErrorType}}" data-service="{{.Service}}" data-kind="{{.Kind}}">
<td class="num">{{.Count}}</td>
<td class="bar"><svg width="124" height="10" aria-hidden="true"><rect width="{{.BarW}}" height="10" rx="2" fill="#e07a7a"/></svg></td>
<td>{{.Service}}</td><td><span class="tag {{.Kind}}">{{.Kind}}</span></td><td><code>{{.ErrorType}}</code></td><td>{{.Shape}}</td>
</tr>
{{end}}</tbody>
</table>{{else}}<p class="empty">No span with status Error in this window.</p>{{end}}
</section>

{{if .Examples}}<div class="legend">
<span class="ev-state"><i class="dot"></i>SYN, state change</span>
<span class="ev-process"><i class="dot"></i>accept, close (a process)</span>
<span class="ev-rst-sent"><i class="dot"></i>RST sent</span>
<span class="ev-rst-received"><i class="dot"></i>RST received</span>
<span class="ev-drop"><i class="dot"></i>overflow, drop</span>
<span class="ev-retransmit"><i class="dot"></i>retransmit</span>
<span class="ev-error"><i class="dot"></i>error to the application</span>
</div>{{end}}
{{range .Examples}}
<section class="card example" id="{{.ID}}" data-kind="{{.Kind}}" data-error-type="{{.ErrorType}}" data-reason="{{.Reason}}" data-span-id="{{.SpanID}}" data-trace-id="{{.TraceID}}" data-connections="{{.Connections}}" data-side-by-side="{{.SideBySide}}">
<h2>{{.Title}} <code class="kind">{{.Kind}}</code> <small>{{.Connections}} connection{{if ne .Connections 1}}s{{end}} of this kind; one drawn{{if .SideBySide}}, both ends of it{{end}}</small></h2>
<p class="desc">{{.Description}}</p>
<p class="meta">trace <a class="mono" href="{{.Query}}">{{.TraceID}}</a> · span <span class="mono">{{.SpanID}}</span></p>
{{with .Timeline}}<svg class="timeline" viewBox="0 0 {{.Width}} {{.Height}}" width="{{.Width}}" height="{{.Height}}" role="img">
{{range .Ticks}}<g class="tick"><line x1="{{.X}}" x2="{{.X}}" y1="{{.Y1}}" y2="{{.Y2}}"/><text x="{{.X}}" y="14" text-anchor="middle">{{.Text}}</text></g>
{{end}}{{range .Lanes}}<g class="lane" data-span-id="{{.SpanID}}" data-trace-id="{{.TraceID}}" data-role="{{.Role}}">
<text class="lane-role" x="0" y="{{.Y}}">{{.Role}}</text>
<text class="lane-title" x="0" y="{{add .Y 15}}">{{.Title}}</text>
<text class="lane-sub" x="0" y="{{add .Y 29}}">{{.Subtitle}}</text>
<rect class="bar{{if .Error}} error{{end}}" x="{{.BarX}}" y="{{.BarY}}" width="{{.BarW}}" height="14" rx="3"/>
{{range .Markers}}<circle class="event {{.Class}}" data-event="{{.Event}}" cx="{{.X}}" cy="{{.Y}}" r="6"><title>{{.Tooltip}}</title></circle>
{{end}}{{range .Labels}}<text class="ev-label" x="{{.X}}" y="{{.Y}}">{{.Text}}</text>
{{end}}</g>
{{end}}</svg>
<details><summary>events in time order ({{len .Events}})</summary>
<table class="events"><tbody>
{{range .Events}}<tr><td class="num">{{.Offset}}</td><td>{{.Lane}}</td><td class="{{.Class}}"><i class="dot"></i><code>{{.Event}}</code></td><td class="mono">{{.Details}}</td></tr>
{{end}}</tbody></table></details>{{end}}
</section>
{{end}}

<section class="card" id="storms">
<h2>Storms <small>alike connections folded into one span each</small></h2>
{{if .StormRows}}<table>
<thead><tr><th>connections</th><th>peers</th><th>service</th><th>side</th><th>diagnosis</th><th>from</th><th>for</th><th>events in all</th></tr></thead>
<tbody>
{{range .StormRows}}<tr class="storm" data-count="{{.Connections}}" data-span-id="{{.SpanID}}">
<td class="num">{{.Connections}}</td><td class="num">{{.Peers}}</td><td>{{.Service}}</td><td><span class="tag {{.Kind}}">{{.Kind}}</span></td>
<td>{{.Shape}}</td><td class="mono">{{.From}}</td><td class="mono">{{.Duration}}</td><td class="mono">{{.EventTotals}}</td>
</tr>
{{end}}</tbody>
</table>{{else}}<p class="empty">No storm in this window.</p>{{end}}
</section>

<section class="card" id="events">
<h2>Kernel events on tcpspan's spans <small>storms counted by their totals</small></h2>
<table><tbody>
{{range .Events}}<tr class="event-total" data-count="{{.Count}}" data-name="{{.Name}}"><td class="num">{{.Count}}</td><td><code>{{.Name}}</code></td></tr>
{{end}}</tbody></table>
</section>
<footer>tcpspan-report · one self-contained page: no script, nothing fetched from the network</footer>
</main>
</body>
</html>
`
