package main

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
	"github.com/tcpspan/tcpspan/semconv"
)

// summary is what the report says of the spans Jaeger returned, computed
// once and written as text or as an HTML page, so that both say the same.
type summary struct {
	start, end time.Time
	spans      []jaegerapi.Span
	spanByID   map[string]*jaegerapi.Span

	errorSpans, diagnoses int
	// groups are the error spans by diagnosis, most connections first.
	groups []*group
	// events counts kernel events by name (and reset reason), storms
	// counted by their totals.
	events map[string]int
	// storms are the spans that stand for many connections, most first.
	storms []*jaegerapi.Span
}

// group is the error spans of one service, side and diagnosis shape.
type group struct {
	service, kind, shape string
	errorKind
	count int // connections (a storm counts its own)
}

var (
	// numbers are the numbers that vary between alike errors (pids, fds,
	// ports, counts, addresses); digits inside a word, as in python3 or
	// FIN_WAIT2, are part of a name.
	numbers = regexp.MustCompile(`\b\d+`)
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

// instrumentationScope is the scope of tcpspan's spans (the exporter's);
// the project's own tools, such as tools/otelapp, have scopes below it.
const instrumentationScope = "github.com/tcpspan/tcpspan"

// isTCPSpan says whether a span is tcpspan's own, not an application's.
func isTCPSpan(sp *jaegerapi.Span) bool {
	return sp.Scope == instrumentationScope
}

// isDiagnosis says whether a span is a diagnosis in an application's trace
// rather than a connection.
func isDiagnosis(sp *jaegerapi.Span) bool {
	_, ok := sp.Attributes["tcpspan.diagnosis.of"]
	return ok
}

func summarize(spans []jaegerapi.Span, start, end time.Time) *summary {
	s := &summary{start: start, end: end, spans: spans, events: map[string]int{},
		spanByID: make(map[string]*jaegerapi.Span, len(spans))}
	groups := map[string]*group{}
	for i := range spans {
		s.spanByID[spans[i].SpanID] = &spans[i]
	}
	seen := map[string]bool{}
	for i := range spans {
		sp := &spans[i]
		if !isTCPSpan(sp) {
			continue // an application's own span
		}
		if isDiagnosis(sp) {
			s.diagnoses++
			continue
		}
		if sp.Connections() > 1 {
			s.storms = append(s.storms, sp)
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
					key += " " + attr(sp, "tcpspan.reset.reason")
				}
				s.events[key] += sp.EventCount(e.Name)
			}
			clear(seen)
		} else {
			for _, e := range sp.Events {
				key := e.Name
				if r, ok := e.Attributes["tcpspan.reset.reason"]; ok {
					key += " " + fmt.Sprint(r)
				}
				s.events[key]++
			}
		}
		if sp.Status.Code != jaegerapi.StatusError {
			continue
		}
		s.errorSpans++
		g := &group{service: sp.Service, kind: strings.ToLower(sp.Kind.String()),
			errorKind: kindOf(sp), shape: shape(sp.Status.Message)}
		key := g.service + "\x00" + g.kind + "\x00" + g.errorType + "\x00" + g.shape
		if groups[key] == nil {
			groups[key] = g
		}
		groups[key].count += sp.Connections()
	}
	s.groups = slices.Collect(maps.Values(groups))
	sort.Slice(s.groups, func(i, j int) bool {
		a, b := s.groups[i], s.groups[j]
		if a.count != b.count {
			return a.count > b.count
		}
		return a.service+a.kind+a.shape < b.service+b.kind+b.shape
	})
	sort.SliceStable(s.storms, func(i, j int) bool { return s.storms[i].Connections() > s.storms[j].Connections() })
	return s
}

// errorKind is one kind of error: an error.type, and for resets the
// kernel's reason.
type errorKind struct{ errorType, reason string }

// Title names a kind of error for people: what happened, then the
// kernel's reason of a reset.
func (k errorKind) Title() string {
	title, ok := map[string]string{
		semconv.ErrorTypeRSTSent:             "Reset sent",
		semconv.ErrorTypeRSTReceived:         "Reset received",
		semconv.ErrorTypeRefused:             "Connection refused",
		semconv.ErrorTypeTimeout:             "Connection timed out",
		semconv.ErrorTypeAcceptQueueOverflow: "Handshake dropped: accept queue full",
		semconv.ErrorTypeHandshakeDropped:    "Handshake dropped",
		semconv.ErrorTypeRequestUnanswered:   "Request unanswered",
	}[k.errorType]
	switch {
	case !ok && k.errorType == "":
		return "Error without error.type"
	case !ok:
		title = "Error " + k.errorType // an errno's name, such as EPIPE
	}
	if k.reason != "" {
		title += " (" + k.reason + ")"
	}
	return title
}

func (k errorKind) String() string {
	if k.errorType == "" {
		return "error without error.type"
	}
	if k.reason == "" {
		return k.errorType
	}
	return k.errorType + " " + k.reason
}

func kindOf(sp *jaegerapi.Span) errorKind {
	k := errorKind{errorType: attr(sp, "error.type")}
	if strings.HasPrefix(k.errorType, "tcp.rst_") {
		k.reason = attr(sp, "tcpspan.reset.reason")
	}
	return k
}

// kinds returns the kinds of error among the connection spans, most
// frequent first, and the connections of each.
func (s *summary) kinds() ([]errorKind, map[errorKind]int) {
	count := map[errorKind]int{}
	for _, g := range s.groups {
		count[g.errorKind] += g.count
	}
	kinds := slices.Collect(maps.Keys(count))
	sort.Slice(kinds, func(i, j int) bool {
		if count[kinds[i]] != count[kinds[j]] {
			return count[kinds[i]] > count[kinds[j]]
		}
		return kinds[i].String() < kinds[j].String()
	})
	return kinds, count
}

// example returns the span to draw for a kind of error: the most telling
// one (see pick) of the kind's largest group, so that the example looks
// like most of its kind.
func (s *summary) example(k errorKind) *jaegerapi.Span {
	var top *group
	for _, g := range s.groups { // most connections first
		if g.errorKind == k {
			top = g
			break
		}
	}
	if top == nil {
		return nil
	}
	return s.pickWhere(k.errorType, k.reason, func(sp *jaegerapi.Span) bool {
		return sp.Service == top.service && strings.ToLower(sp.Kind.String()) == top.kind && shape(sp.Status.Message) == top.shape
	})
}

// pick returns the most telling error span of an error type: one whose
// chain of events ends in a reset if there is one, one whose other end is
// in the trace store next, else the one with most events. Storm spans come
// last: they stand for many.
func (s *summary) pick(errType, reason string) *jaegerapi.Span {
	return s.pickWhere(errType, reason, func(*jaegerapi.Span) bool { return true })
}

func (s *summary) pickWhere(errType, reason string, where func(*jaegerapi.Span) bool) *jaegerapi.Span {
	var best *jaegerapi.Span
	score := func(sp *jaegerapi.Span) int {
		n := len(sp.Events)
		for _, e := range sp.Events {
			if e.Name == "tcp.rst_sent" {
				n += 1000
			}
		}
		for _, l := range sp.Links {
			if l.Attributes["tcpspan.link.reason"] == "peer" && s.spanByID[l.SpanID] != nil {
				n += 500
			}
		}
		if sp.Connections() > 1 {
			n -= 100000
		}
		return n
	}
	for i := range s.spans {
		sp := &s.spans[i]
		if !isTCPSpan(sp) || isDiagnosis(sp) || sp.Status.Code != jaegerapi.StatusError || attr(sp, "error.type") != errType ||
			(reason != "" && attr(sp, "tcpspan.reset.reason") != reason) || !where(sp) {
			continue
		}
		if best == nil || score(sp) > score(best) {
			best = sp
		}
	}
	return best
}
