package testutil

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// NATPath is two hosts and a NAT router between them, as three network
// namespaces joined by veth pairs:
//
//	A (client)  a-r 10.77.1.2/24 --- r-a 10.77.1.1/24  R (router)
//	                                  r-b 10.77.2.1/24 --- b-r 10.77.2.2/24  B (server)
//
// A and B route everything through R, which forwards. R rewrites both ends
// of a connection with nftables: A dials [NATPath.VirtualAddr] on a port
// given to [NATPath.Forward], R sends it on to B's address on another port
// (DNAT), and hides A behind its own address towards B with a source port
// picked at random for each connection (masquerade random,fully-random).
// So A and B never see the same addresses or ports; the sequence numbers of
// the handshake pass unchanged.
//
// The links are created inside the namespaces, never in the host's, so the
// fixed interface names cannot collide between tests run in parallel.
// Everything goes with the namespaces at cleanup.
type NATPath struct {
	A, R, B *NetNS

	ClientAddr  netip.Addr // A's address, 10.77.1.2
	ServerAddr  netip.Addr // B's address, 10.77.2.2
	RouterAddr  netip.Addr // R's address on B's side, 10.77.2.1: the source B sees
	VirtualAddr netip.Addr // the address A dials; no interface has it: 10.77.3.100

	ClientIf string // A's interface, towards R
	ServerIf string // B's interface, towards R
}

// natTable is R's nftables table. Forward adds DNAT rules to its prerouting
// chain; the postrouting chain masquerades everything leaving towards B.
const natTable = "tcpspan_nat"

// NewNATPath builds the three namespaces, their links, routes and R's NAT,
// and removes them at cleanup. It needs root.
func NewNATPath(tb testing.TB) *NATPath {
	tb.Helper()
	p := &NATPath{
		A: NewNetNS(tb), R: NewNetNS(tb), B: NewNetNS(tb),
		ClientAddr:  netip.MustParseAddr("10.77.1.2"),
		ServerAddr:  netip.MustParseAddr("10.77.2.2"),
		RouterAddr:  netip.MustParseAddr("10.77.2.1"),
		VirtualAddr: netip.MustParseAddr("10.77.3.100"),
		ClientIf:    "a-r",
		ServerIf:    "b-r",
	}
	// Each pair is made in A (or B) with its peer created directly in R.
	MustRun(tb, "ip", "-n", p.A.Name, "link", "add", p.ClientIf, "type", "veth", "peer", "name", "r-a", "netns", p.R.Name)
	MustRun(tb, "ip", "-n", p.B.Name, "link", "add", p.ServerIf, "type", "veth", "peer", "name", "r-b", "netns", p.R.Name)
	for _, l := range []struct {
		ns       *NetNS
		dev, pfx string
	}{
		{p.A, p.ClientIf, "10.77.1.2/24"},
		{p.R, "r-a", "10.77.1.1/24"},
		{p.R, "r-b", "10.77.2.1/24"},
		{p.B, p.ServerIf, "10.77.2.2/24"},
	} {
		MustRun(tb, "ip", "-n", l.ns.Name, "addr", "add", l.pfx, "dev", l.dev)
		MustRun(tb, "ip", "-n", l.ns.Name, "link", "set", l.dev, "up")
	}
	MustRun(tb, "ip", "-n", p.A.Name, "route", "add", "default", "via", "10.77.1.1")
	MustRun(tb, "ip", "-n", p.B.Name, "route", "add", "default", "via", "10.77.2.1")
	p.R.Sysctl(tb, "net.ipv4.ip_forward", "1")

	ruleset := fmt.Sprintf(`table ip %s {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "r-b" masquerade random,fully-random
	}
}
`, natTable)
	path := filepath.Join(tb.TempDir(), "nat.nft")
	if err := os.WriteFile(path, []byte(ruleset), 0o644); err != nil {
		tb.Fatal(err)
	}
	p.R.Exec(tb, "nft", "-f", path)
	return p
}

// Forward makes R send connections from A to VirtualAddr:vport on to B's
// ServerAddr:bport, and returns the address A dials ("10.77.3.100:vport").
func (p *NATPath) Forward(tb testing.TB, vport, bport int) string {
	tb.Helper()
	p.R.Exec(tb, "nft", "add", "rule", "ip", natTable, "prerouting",
		"iifname", "r-a", "ip", "daddr", p.VirtualAddr.String(), "tcp", "dport", fmt.Sprint(vport),
		"dnat", "to", netip.AddrPortFrom(p.ServerAddr, uint16(bport)).String())
	return netip.AddrPortFrom(p.VirtualAddr, uint16(vport)).String()
}
