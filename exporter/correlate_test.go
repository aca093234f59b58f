package exporter

import (
	"encoding/hex"
	"testing"

	"github.com/tcpspan/tcpspan/conn"
)

// The derivation is a contract with every other agent, and with anyone who
// computes a trace id from a capture (semconv/README.md, "Correlation"):
// these vectors were computed apart from this code, with Python's hashlib.
func TestHandshakeIDVectors(t *testing.T) {
	for _, tc := range []struct {
		isn               conn.ISN
		trace, own, other string
		side              conn.Side
		orphan            bool
	}{
		{conn.ISN{Client: 0x01020304, Server: 0xa0b0c0d0, HasClient: true, HasServer: true},
			"0e42c7a712d625d30dd3e137e0f48ec7", "fd921fdfcddff3c9", "a2584459b3382ad1", conn.SideClient, false},
		{conn.ISN{Client: 0x01020304, Server: 0xa0b0c0d0, HasClient: true, HasServer: true},
			"0e42c7a712d625d30dd3e137e0f48ec7", "a2584459b3382ad1", "fd921fdfcddff3c9", conn.SideServer, false},
		{conn.ISN{Client: 0x01020304, HasClient: true},
			"a3aab7deb61279f5efc32902bd8cd1e3", "4f38383f5434747f", "0454b7dae9715eea", conn.SideClient, false},
		{conn.ISN{Client: 0x01020304, HasClient: true},
			"a3aab7deb61279f5efc32902bd8cd1e3", "0454b7dae9715eea", "4f38383f5434747f", conn.SideServer, true},
	} {
		c := &conn.Connection{Side: tc.side, Orphan: tc.orphan, ISN: tc.isn}
		tid, sid, peer, derived := connIDs(c)
		if !derived {
			t.Fatalf("%+v: ids not derived", tc.isn)
		}
		if got := hex.EncodeToString(tid[:]); got != tc.trace {
			t.Errorf("%s %+v: trace id %s, want %s", tc.side, tc.isn, got, tc.trace)
		}
		if got := hex.EncodeToString(sid[:]); got != tc.own {
			t.Errorf("%s %+v: span id %s, want %s", tc.side, tc.isn, got, tc.own)
		}
		if peer.trace != tid || hex.EncodeToString(peer.span[:]) != tc.other {
			t.Errorf("%s %+v: peer link %x/%x, want %s/%s", tc.side, tc.isn, peer.trace, peer.span, tc.trace, tc.other)
		}
	}
}

// A client-only handshake never shares a trace with a full one whose
// server number happens to be zero, nor does an orphan share a span id
// with a server socket of the same handshake.
func TestHandshakeIDForms(t *testing.T) {
	half := conn.ISN{Client: 7, HasClient: true}
	full := conn.ISN{Client: 7, Server: 0, HasClient: true, HasServer: true}
	th, _, _, _ := connIDs(&conn.Connection{Side: conn.SideClient, ISN: half})
	tf, _, _, _ := connIDs(&conn.Connection{Side: conn.SideClient, ISN: full})
	if th == tf {
		t.Error("client-only and full forms share a trace id")
	}
	_, server, _, _ := connIDs(&conn.Connection{Side: conn.SideServer, ISN: full})
	_, orphan, _, _ := connIDs(&conn.Connection{Side: conn.SideServer, Orphan: true, ISN: full})
	if server == orphan {
		t.Error("a server socket and an orphan of one handshake share a span id")
	}
	for _, c := range []*conn.Connection{
		{Side: conn.SideUnknown, ISN: full, Midlife: true},                  // side unknown
		{Side: conn.SideClient, Midlife: true},                              // handshake unseen
		{Side: conn.SideServer, Orphan: true, Storm: &conn.Storm{Count: 9}}, // stands for many
	} {
		t1, _, _, d := connIDs(c)
		t2, _, _, _ := connIDs(c)
		if d || t1 == t2 {
			t.Errorf("%+v: ids derived (%v) or repeated; want random ones", c, d)
		}
	}
}

// A storm links to its sample, at most conn.StormSample connections.
func TestStormLinksSample(t *testing.T) {
	var tally conn.StormTally
	for i := range 20 {
		tally.Add(nil, at(0), at(1), noSocket().Remote.Addr(), conn.ISN{Client: uint32(i), HasClient: i%2 == 0})
	}
	links := appendStormSample(nil, &tally.Storm)
	if len(links) != conn.StormSample {
		t.Fatalf("%d links, want %d", len(links), conn.StormSample)
	}
	want := conn.ISN{Client: 2, HasClient: true}
	if l, _ := isnLink(want); links[1].trace != l.trace || links[1].span != l.span {
		t.Errorf("second link %x, want the client span of %+v", links[1].trace, want)
	}
}
