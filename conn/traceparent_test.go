package conn

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
)

func TestParseTraceparent(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		value string
		err   error
	}{
		{good, nil},
		{" " + good + "\t", nil}, // optional whitespace
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", nil},       // not sampled
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", nil}, // a later version may add fields
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", nil},
		{"", ErrTraceparentTruncated},
		{good[:40], ErrTraceparentTruncated}, // split across packets, cut by the kernel side
		{good[:54], ErrTraceparentTruncated},
		{good + "-extra", ErrTraceparentMalformed}, // version 00 has exactly four fields
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", ErrTraceparentMalformed},
		{strings.ToUpper(good), ErrTraceparentMalformed}, // lowercase hex only
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrTraceparentMalformed},
		{"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", ErrTraceparentMalformed},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z", ErrTraceparentMalformed},
		{"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrTraceparentMalformed},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrTraceparentInvalid},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ErrTraceparentInvalid},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ErrTraceparentInvalid},
		{strings.Repeat("0", 64), ErrTraceparentMalformed}, // oversized, no dashes
	} {
		trace, span, flags, err := ParseTraceparent([]byte(tc.value))
		if !errors.Is(err, tc.err) {
			t.Errorf("%q: error %v, want %v", tc.value, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		v := strings.TrimSpace(tc.value)
		if hex.EncodeToString(trace[:]) != v[3:35] || hex.EncodeToString(span[:]) != v[36:52] || flags != map[byte]byte{'0': 0, '1': 1}[v[54]] {
			t.Errorf("%q: parsed %x %x %x", tc.value, trace, span, flags)
		}
	}
}

// FuzzParseTraceparent: any value either parses into non-zero ids that
// print back as the value's fields, or fails with one of the errors.
func FuzzParseTraceparent(f *testing.F) {
	f.Add([]byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	f.Add([]byte("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"))
	f.Add([]byte("  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"))
	f.Fuzz(func(t *testing.T, value []byte) {
		trace, span, _, err := ParseTraceparent(value)
		if err != nil {
			if !errors.Is(err, ErrTraceparentTruncated) && !errors.Is(err, ErrTraceparentMalformed) && !errors.Is(err, ErrTraceparentInvalid) {
				t.Fatalf("%q: unexpected error %v", value, err)
			}
			return
		}
		if trace == [16]byte{} || span == [8]byte{} {
			t.Fatalf("%q: zero id accepted", value)
		}
		v := string(trimBlanks(value))
		if v[3:35] != hex.EncodeToString(trace[:]) || v[36:52] != hex.EncodeToString(span[:]) {
			t.Fatalf("%q: ids %x %x do not print back", value, trace, span)
		}
	})
}

// Requests join their connection's record by socket; those left by a
// socket whose record never came are dropped when the address is reused,
// or after requestsIdle.
func TestRequestsJoinTheirConnection(t *testing.T) {
	var got []*Connection
	tk := New(fakeNames{}, func(c *Connection) { got = append(got, c) }, WithLinger(0), WithBootClock(func(ns uint64) time.Time { return time.Unix(0, int64(ns)) }))
	tp := func(sk, ts uint64, value string, answer uint64) *bpf.TraceparentRecord {
		r := &bpf.TraceparentRecord{Sk: sk, TsNs: ts, Dir: bpf.RequestSent, Len: uint8(len(value)), AnswerBytes: answer}
		for i := range value {
			r.Value[i] = int8(value[i])
		}
		return r
	}
	const v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tk.HandleTraceparent(tp(1, 10, v, 0))
	tk.HandleTraceparent(tp(1, 20, v, 5))
	tk.HandleTraceparent(tp(1, 30, "00-bad", 0))
	tk.HandleConn(&bpf.ConnRecord{Sk: 1, Side: bpf.SideClient, StartNs: 5, EndNs: 40, BytesReceived: 5, Traceparents: 3})
	// Socket 2's connection was never sent (say, evicted): its request
	// must not join the next connection at that address.
	tk.HandleTraceparent(tp(2, 50, v, 0))
	tk.HandleConn(&bpf.ConnRecord{Sk: 2, Side: bpf.SideClient, StartNs: 60, EndNs: 70})
	if len(got) != 2 {
		t.Fatalf("%d connections", len(got))
	}
	c := got[0]
	if len(c.Requests) != 2 || c.RequestsSeen != 2 || c.RequestsMalformed != 1 {
		t.Fatalf("requests %+v seen %d malformed %d, want 2, 2, 1", c.Requests, c.RequestsSeen, c.RequestsMalformed)
	}
	if c.Requests[0].InFlight || !c.Requests[1].InFlight || c.Unanswered() != &c.Requests[1] {
		t.Errorf("in flight: %v %v; want only the second (no byte came after it)", c.Requests[0].InFlight, c.Requests[1].InFlight)
	}
	if len(got[1].Requests) != 0 {
		t.Errorf("a stale request joined a later connection at the same address: %+v", got[1].Requests)
	}
	tk.HandleTraceparent(tp(3, 80, v, 0))
	tk.Flush(time.Now().Add(2 * requestsIdle))
	if n := tk.Stats().RequestsDropped; n != 1 || len(tk.requests) != 0 {
		t.Errorf("after the idle time: %d dropped, %d sockets pending; want 1 and 0", n, len(tk.requests))
	}
}
