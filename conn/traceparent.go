package conn

import (
	"errors"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
)

// MaxRequests bounds the requests a connection keeps (Connection.Requests):
// the latest ones, the one in flight among them. Connection.RequestsSeen
// counts them all.
const MaxRequests = 8

// maxPendingRequestSockets bounds the sockets whose requests wait for their
// connection's record (about 600 bytes each); beyond it new ones are
// dropped and counted (Stats.RequestsDropped).
const maxPendingRequestSockets = 65536

// requestsIdle is how long the requests of a socket wait for its
// connection's record after the latest of them: a connection the kernel
// side stopped tracking (evicted from its full map) never sends one.
// Longer-lived idle keep-alive connections lose their links; they are
// counted in Stats.RequestsDropped.
const requestsIdle = 10 * time.Minute

// Request is a request a connection carried with a W3C traceparent header
// (https://www.w3.org/TR/trace-context/): the application span that made
// it, from the header's value. No other byte of the request leaves the
// kernel.
type Request struct {
	Time time.Time
	// Sent: this end sent the request (a client); else it received it.
	Sent bool
	// TraceID and SpanID are the header's trace-id and parent-id: the
	// application's trace and the span that sent the request.
	TraceID [16]byte
	SpanID  [8]byte
	// Sampled is the header's sampled flag.
	Sampled bool
	// InFlight: no byte of an answer moved after the request, up to the
	// connection's end. Set when the connection ends.
	InFlight bool

	answerBytes uint64 // the answer's byte counter as the request passed
}

// Errors of ParseTraceparent.
var (
	ErrTraceparentTruncated = errors.New("traceparent: value shorter than 55 characters (cut by the packet's end, or malformed)")
	ErrTraceparentMalformed = errors.New("traceparent: not version-traceid-parentid-flags in lowercase hex")
	ErrTraceparentInvalid   = errors.New("traceparent: version ff, or an all-zero trace-id or parent-id")
)

// ParseTraceparent parses the value of a traceparent header, as the W3C
// Trace Context specification (level 1) says: "00-<32 hex>-<16 hex>-<2
// hex>", lowercase; a later version may append fields after a dash. Leading
// and trailing blanks are ignored. value may be cut short by the kernel
// side (it copies at most 64 bytes).
func ParseTraceparent(value []byte) (trace [16]byte, span [8]byte, flags byte, err error) {
	v := trimBlanks(value)
	if len(v) < 55 {
		return trace, span, 0, ErrTraceparentTruncated
	}
	version, ok := hexByte(v[0], v[1])
	switch {
	case !ok || v[2] != '-' || v[35] != '-' || v[52] != '-':
		return trace, span, 0, ErrTraceparentMalformed
	case version == 0xff:
		return trace, span, 0, ErrTraceparentInvalid
	case version == 0 && len(v) != 55:
		return trace, span, 0, ErrTraceparentMalformed
	case version > 0 && len(v) > 55 && v[55] != '-':
		return trace, span, 0, ErrTraceparentMalformed
	}
	if !hexInto(trace[:], v[3:35]) || !hexInto(span[:], v[36:52]) {
		return trace, span, 0, ErrTraceparentMalformed
	}
	if flags, ok = hexByte(v[53], v[54]); !ok {
		return trace, span, 0, ErrTraceparentMalformed
	}
	if trace == [16]byte{} || span == [8]byte{} {
		return trace, span, 0, ErrTraceparentInvalid
	}
	return trace, span, flags, nil
}

func trimBlanks(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// hexInto decodes lowercase hex src into dst, len(src) == 2*len(dst).
func hexInto(dst, src []byte) bool {
	for i := range dst {
		b, ok := hexByte(src[2*i], src[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexDigit(hi)
	l, ok2 := hexDigit(lo)
	return h<<4 | l, ok1 && ok2
}

// hexDigit accepts lowercase hex only: the specification's HEXDIGLC.
func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// socketRequests are the requests seen on one socket whose connection has
// not ended yet.
type socketRequests struct {
	last      [MaxRequests]Request // a ring: the latest MaxRequests
	n         uint32               // valid requests seen
	malformed uint32               // headers that did not parse
	seen      time.Time            // when the latest came (wall clock)
}

// HandleTraceparent takes the traceparent of a request on a tracked
// socket. It implements [bpf.Handler]. The request joins its connection
// when the connection's record comes.
func (t *Tracker) HandleTraceparent(r *bpf.TraceparentRecord) {
	var buf [len(r.Value)]byte
	n := min(int(r.Len), len(r.Value))
	for i, c := range r.Value[:n] {
		buf[i] = byte(c)
	}
	trace, span, flags, err := ParseTraceparent(buf[:n])
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.requests[r.Sk]
	if s == nil {
		if len(t.requests) >= maxPendingRequestSockets {
			t.stats.RequestsDropped++
			return
		}
		s = &socketRequests{}
		t.requests[r.Sk] = s
	}
	s.seen = time.Now()
	if err != nil {
		s.malformed++
		t.stats.RequestsMalformed++
		return
	}
	s.last[s.n%MaxRequests] = Request{Time: t.cfg.bootTime(r.TsNs), Sent: r.Dir == bpf.RequestSent,
		TraceID: trace, SpanID: span, Sampled: flags&1 != 0, answerBytes: r.AnswerBytes}
	s.n++
	t.stats.Requests++
}

// joinRequests gives c, whose record r just came, the requests seen on its
// socket, in time order, and decides which was in flight at its end.
// Requests left on the socket by an earlier connection at the same address
// (whose record was never sent) are dropped.
func (t *Tracker) joinRequests(c *Connection, r *bpf.ConnRecord) {
	s := t.requests[r.Sk]
	if s == nil {
		return
	}
	delete(t.requests, r.Sk)
	if r.Traceparents == 0 {
		return // stale: none of them were this connection's
	}
	n := min(s.n, MaxRequests)
	first := s.n - n
	for i := first; i < s.n; i++ {
		q := s.last[i%MaxRequests]
		if q.Time.Before(c.Start) {
			continue // an earlier socket's at this address
		}
		answered := c.BytesReceived
		if !q.Sent {
			answered = c.BytesSent
		}
		q.InFlight = answered == q.answerBytes
		c.Requests = append(c.Requests, q)
		c.RequestsSeen++
	}
	// Those beyond the ring were this connection's too, if the ring's
	// oldest was.
	if len(c.Requests) == int(n) {
		c.RequestsSeen = s.n
	}
	c.RequestsMalformed = s.malformed
}

// expireRequests drops the requests of sockets idle for requestsIdle, at
// most once a minute: a pass over all of them.
func (t *Tracker) expireRequests(now time.Time) {
	if len(t.requests) == 0 || now.Sub(t.requestsSwept) < time.Minute {
		return
	}
	t.requestsSwept = now
	for sk, s := range t.requests {
		if now.Sub(s.seen) >= requestsIdle {
			delete(t.requests, sk)
			t.stats.RequestsDropped += uint64(min(s.n, MaxRequests))
		}
	}
}
