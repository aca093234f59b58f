// Package jaegerapi reads spans back from Jaeger v2's query API (the
// OTLP/JSON shaped /api/v3). The end-to-end tests assert on what it returns,
// and the demo builds its report from it, so that both show what a user
// querying Jaeger would see, not what the agent meant to send.
//
// It is for tests, the demo and tcpspan-report: the agent must not import
// it, and it must not write to Jaeger.
package jaegerapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Client queries one Jaeger.
type Client struct {
	// BaseURL is the query service, e.g. http://127.0.0.1:16686.
	BaseURL string
	// MaxTraces bounds one query (query.num_traces); 0 means 1000.
	MaxTraces int
}

// Trace is the spans of one trace as the query API returns them.
type Trace struct {
	TraceID string
	Spans   []Span
}

// ServiceSpans returns the trace's spans of one service. A query by
// service returns whole traces, and a tcpspan trace holds both ends of a
// connection, often of two services: taking every span of every service's
// traces would count each connection's spans twice.
func (t Trace) ServiceSpans(service string) []Span {
	var spans []Span
	for _, sp := range t.Spans {
		if sp.Service == service {
			spans = append(spans, sp)
		}
	}
	return spans
}

// Span is one span, decoded from OTLP/JSON, with the service.name of its
// resource.
type Span struct {
	TraceID      string
	SpanID       string
	ParentSpanID string
	Name         string
	Kind         SpanKind
	Start, End   time.Time
	// Attributes hold string, bool, int64, float64, []byte, []any and
	// map[string]any values.
	Attributes map[string]any
	Events     []Event
	Links      []Link
	Status     Status

	Service  string         // the resource's service.name
	Resource map[string]any // all resource attributes
	Scope    string         // instrumentation scope name
}

// Connections returns how many connections the span stands for: the count
// of a tcpspan storm span (tcpspan.storm.count), else 1.
func (s *Span) Connections() int {
	if n, ok := s.Attributes["tcpspan.storm.count"].(int64); ok {
		return int(n)
	}
	return 1
}

// EventCount returns how many events named name (e.g. "tcp.rst_sent") the
// span stands for: on a tcpspan storm span, the storm's total
// (tcpspan.storm.events.<event>); otherwise its own events of that name.
func (s *Span) EventCount(name string) int {
	if _, storm := s.Attributes["tcpspan.storm.count"]; storm {
		n, _ := s.Attributes["tcpspan.storm.events."+strings.TrimPrefix(name, "tcp.")].(int64)
		return int(n)
	}
	n := 0
	for _, e := range s.Events {
		if e.Name == name {
			n++
		}
	}
	return n
}

// Link is a span link: a reference to another span, with attributes.
type Link struct {
	TraceID    string
	SpanID     string
	Attributes map[string]any
}

// Event is a span event.
type Event struct {
	Name       string
	Time       time.Time
	Attributes map[string]any
}

// Status is a span's status.
type Status struct {
	Code    StatusCode
	Message string
}

// SpanKind is OTLP's span kind.
type SpanKind int

const (
	SpanKindUnspecified SpanKind = iota
	SpanKindInternal
	SpanKindServer
	SpanKindClient
	SpanKindProducer
	SpanKindConsumer
)

var spanKindNames = []string{"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"}

func (k SpanKind) String() string {
	if int(k) >= 0 && int(k) < len(spanKindNames) {
		return spanKindNames[k]
	}
	return "SpanKind(" + strconv.Itoa(int(k)) + ")"
}

// UnmarshalJSON takes OTLP/JSON's number (2) or enum name ("SPAN_KIND_SERVER").
func (k *SpanKind) UnmarshalJSON(b []byte) error {
	v, err := enumJSON(b, "SPAN_KIND_", spanKindNames)
	*k = SpanKind(v)
	return err
}

// StatusCode is OTLP's span status code.
type StatusCode int

const (
	StatusUnset StatusCode = iota
	StatusOK
	StatusError
)

var statusCodeNames = []string{"UNSET", "OK", "ERROR"}

func (c StatusCode) String() string {
	if int(c) >= 0 && int(c) < len(statusCodeNames) {
		return statusCodeNames[c]
	}
	return "StatusCode(" + strconv.Itoa(int(c)) + ")"
}

// UnmarshalJSON takes OTLP/JSON's number (2) or enum name ("STATUS_CODE_ERROR").
func (c *StatusCode) UnmarshalJSON(b []byte) error {
	v, err := enumJSON(b, "STATUS_CODE_", statusCodeNames)
	*c = StatusCode(v)
	return err
}

func enumJSON(b []byte, prefix string, names []string) (int, error) {
	var s string
	if json.Unmarshal(b, &s) == nil {
		for i, n := range names {
			if s == prefix+n {
				return i, nil
			}
		}
		return 0, fmt.Errorf("unknown enum value %q", s)
	}
	var n int
	err := json.Unmarshal(b, &n)
	return n, err
}

// Services lists the services Jaeger has spans of (GET /api/v3/services).
func (c Client) Services() ([]string, error) {
	var resp struct {
		Services []string `json:"services"`
	}
	if _, err := c.getJSON("/api/v3/services", &resp); err != nil {
		return nil, err
	}
	sort.Strings(resp.Services)
	return resp.Services, nil
}

// TracesQuery is the URL path and query that [Client.Traces] requests: the
// query a user would run.
func (c Client) TracesQuery(service string, since, until time.Time) string {
	n := c.MaxTraces
	if n == 0 {
		n = 1000
	}
	q := url.Values{}
	q.Set("query.service_name", service)
	q.Set("query.start_time_min", since.UTC().Format(time.RFC3339Nano))
	q.Set("query.start_time_max", until.UTC().Format(time.RFC3339Nano))
	q.Set("query.num_traces", strconv.Itoa(n))
	return "/api/v3/traces?" + q.Encode()
}

// Traces returns the traces that have a span of service starting between
// since and until, through
//
//	GET /api/v3/traces?query.service_name=S&query.start_time_min=T&query.start_time_max=T&query.num_traces=N
//
// whose answer is {"result": OTLP/JSON TracesData}; a trace may span several
// resourceSpans. No trace is an empty result (the API answers 404). Spans are
// in start order within a trace, traces in order of their first span.
func (c Client) Traces(service string, since, until time.Time) ([]Trace, error) {
	var resp struct {
		Result otlpTracesData `json:"result"`
	}
	status, err := c.getJSON(c.TracesQuery(service, since, until), &resp)
	if status == http.StatusNotFound {
		return nil, nil // "No traces found"
	}
	if err != nil {
		return nil, err
	}
	return resp.Result.traces()
}

// Trace returns the spans of one trace (GET /api/v3/traces/ID), or an
// empty trace when Jaeger has none of it.
func (c Client) Trace(id string) (Trace, error) {
	var resp struct {
		Result otlpTracesData `json:"result"`
	}
	status, err := c.getJSON("/api/v3/traces/"+url.PathEscape(id), &resp)
	if status == http.StatusNotFound {
		return Trace{TraceID: id}, nil
	}
	if err != nil {
		return Trace{}, err
	}
	traces, err := resp.Result.traces()
	if err != nil || len(traces) == 0 {
		return Trace{TraceID: id}, err
	}
	return traces[0], nil
}

func (c Client) getJSON(path string, v any) (int, error) {
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Get(c.BaseURL + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %v", path, err)
	}
	return resp.StatusCode, nil
}

// OTLP/JSON, as much of it as the structs above need.
type otlpTracesData struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []otlpKeyValue `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Scope struct {
				Name string `json:"name"`
			} `json:"scope"`
			Spans []otlpSpan `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

type otlpSpan struct {
	TraceID           string         `json:"traceId"`
	SpanID            string         `json:"spanId"`
	ParentSpanID      string         `json:"parentSpanId"`
	Name              string         `json:"name"`
	Kind              SpanKind       `json:"kind"`
	StartTimeUnixNano otlpUint64     `json:"startTimeUnixNano"`
	EndTimeUnixNano   otlpUint64     `json:"endTimeUnixNano"`
	Attributes        []otlpKeyValue `json:"attributes"`
	Events            []struct {
		TimeUnixNano otlpUint64     `json:"timeUnixNano"`
		Name         string         `json:"name"`
		Attributes   []otlpKeyValue `json:"attributes"`
	} `json:"events"`
	Links []struct {
		TraceID    string         `json:"traceId"`
		SpanID     string         `json:"spanId"`
		Attributes []otlpKeyValue `json:"attributes"`
	} `json:"links"`
	Status struct {
		Code    StatusCode `json:"code"`
		Message string     `json:"message"`
	} `json:"status"`
}

type otlpKeyValue struct {
	Key   string       `json:"key"`
	Value otlpAnyValue `json:"value"`
}

type otlpAnyValue struct {
	StringValue *string         `json:"stringValue"`
	BoolValue   *bool           `json:"boolValue"`
	IntValue    *otlpInt64      `json:"intValue"`
	DoubleValue *float64        `json:"doubleValue"`
	BytesValue  *string         `json:"bytesValue"`
	ArrayValue  *otlpArrayValue `json:"arrayValue"`
	KvlistValue *otlpKvlist     `json:"kvlistValue"`
}

type otlpArrayValue struct {
	Values []otlpAnyValue `json:"values"`
}

type otlpKvlist struct {
	Values []otlpKeyValue `json:"values"`
}

// otlpUint64 and otlpInt64 take OTLP/JSON's 64-bit integers, which are
// strings ("1700000000000000000") but may be numbers.
type otlpUint64 uint64

func (u *otlpUint64) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseUint(strings.Trim(string(b), `"`), 10, 64)
	*u = otlpUint64(v)
	return err
}

type otlpInt64 int64

func (i *otlpInt64) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	*i = otlpInt64(v)
	return err
}

func (v otlpAnyValue) value() any {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.BoolValue != nil:
		return *v.BoolValue
	case v.IntValue != nil:
		return int64(*v.IntValue)
	case v.DoubleValue != nil:
		return *v.DoubleValue
	case v.BytesValue != nil:
		b, err := base64.StdEncoding.DecodeString(*v.BytesValue)
		if err != nil {
			return *v.BytesValue
		}
		return b
	case v.ArrayValue != nil:
		out := make([]any, len(v.ArrayValue.Values))
		for i, e := range v.ArrayValue.Values {
			out[i] = e.value()
		}
		return out
	case v.KvlistValue != nil:
		return attrMap(v.KvlistValue.Values)
	}
	return nil
}

func attrMap(kvs []otlpKeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.value()
	}
	return m
}

func unixNano(u otlpUint64) time.Time {
	if u == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(u))
}

func (d otlpTracesData) traces() ([]Trace, error) {
	var order []string
	byID := map[string]*Trace{}
	for _, rs := range d.ResourceSpans {
		res := attrMap(rs.Resource.Attributes)
		service, _ := res["service.name"].(string)
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				span := Span{
					TraceID:      s.TraceID,
					SpanID:       s.SpanID,
					ParentSpanID: s.ParentSpanID,
					Name:         s.Name,
					Kind:         s.Kind,
					Start:        unixNano(s.StartTimeUnixNano),
					End:          unixNano(s.EndTimeUnixNano),
					Attributes:   attrMap(s.Attributes),
					Status:       Status{Code: s.Status.Code, Message: s.Status.Message},
					Service:      service,
					Resource:     res,
					Scope:        ss.Scope.Name,
				}
				for _, l := range s.Links {
					span.Links = append(span.Links, Link{TraceID: l.TraceID, SpanID: l.SpanID, Attributes: attrMap(l.Attributes)})
				}
				for _, e := range s.Events {
					span.Events = append(span.Events, Event{
						Name:       e.Name,
						Time:       unixNano(e.TimeUnixNano),
						Attributes: attrMap(e.Attributes),
					})
				}
				t := byID[s.TraceID]
				if t == nil {
					t = &Trace{TraceID: s.TraceID}
					byID[s.TraceID] = t
					order = append(order, s.TraceID)
				}
				t.Spans = append(t.Spans, span)
			}
		}
	}
	out := make([]Trace, 0, len(order))
	for _, id := range order {
		t := byID[id]
		sort.SliceStable(t.Spans, func(a, b int) bool { return t.Spans[a].Start.Before(t.Spans[b].Start) })
		out = append(out, *t)
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Spans[0].Start.Before(out[b].Spans[0].Start) })
	return out, nil
}
