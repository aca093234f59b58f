// Command tcpspan traces every TCP connection on this host, with the
// kernel's own account of resets, drops and overflows, and the process that
// really acted. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
)

const usage = `Usage: sudo tcpspan [flags]

tcpspan turns every TCP connection into a record of what the kernel saw:
handshake, close() and the process that called it, resets with the kernel's
reason, retransmits, drops and accept-queue overflows. It prints one line per
finished connection that had a problem, the diagnosis first; -v adds clean
connections.

It needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (and CAP_SYS_ADMIN
where kernel.perf_event_paranoid > 2), and a kernel with BTF
(/sys/kernel/btf/vmlinux).

Flags:
`

type options struct {
	netns      string
	ports      portList
	verbose    bool
	features   bool
	ringBytes  int
	maxConns   int
	orphanIdle time.Duration
	health     time.Duration
}

// portList is a repeatable, comma-separated -port flag.
type portList []uint16

func (p *portList) String() string { return fmt.Sprint(*p) }

func (p *portList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || v == 0 {
			return fmt.Errorf("%q is not a port (1-65535)", f)
		}
		*p = append(*p, uint16(v))
	}
	if len(*p) > 8 {
		return errors.New("at most 8 ports")
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("tcpspan", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line below
	fs.Usage = func() {}
	fs.StringVar(&o.netns, "netns", "", "trace only this network namespace: a path (/var/run/netns/NAME, /proc/PID/ns/net), a name from 'ip netns', or an inode number")
	fs.Var(&o.ports, "port", "trace only connections with this local or remote port (repeatable, or comma-separated; at most 8)")
	fs.BoolVar(&o.verbose, "v", false, "also print clean connections")
	fs.BoolVar(&o.features, "features", false, "print which capabilities load on this kernel, then exit")
	fs.IntVar(&o.ringBytes, "ring-buffer-bytes", bpf.DefaultRingBufferBytes, "kernel-to-agent ring buffer size (power of two, multiple of the page size)")
	fs.IntVar(&o.maxConns, "max-connections", bpf.DefaultMaxConnections, "open connections tracked in the kernel at once (about 600 bytes each); beyond it the oldest are evicted")
	fs.DurationVar(&o.orphanIdle, "orphan-idle", conn.DefaultOrphanIdle, "how long events without a socket (resets, dropped handshakes) wait to be joined by 4-tuple")
	fs.DurationVar(&o.health, "health-interval", agent.DefaultHealthInterval, "how often to log the agent's own counts (0 to disable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "tcpspan: %v (see tcpspan -h)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tcpspan: unexpected argument %q (see -h)\n", fs.Arg(0))
		return 2
	}
	if o.ringBytes <= 0 || o.ringBytes&(o.ringBytes-1) != 0 || o.ringBytes%os.Getpagesize() != 0 {
		fmt.Fprintf(stderr, "tcpspan: -ring-buffer-bytes %d: must be a power of two and a multiple of %d\n", o.ringBytes, os.Getpagesize())
		return 2
	}
	if o.maxConns <= 0 {
		fmt.Fprintf(stderr, "tcpspan: -max-connections must be positive\n")
		return 2
	}
	if o.netns != "" && !strings.Contains(o.netns, "/") {
		if inode, err := strconv.ParseUint(o.netns, 10, 32); err == nil {
			path, err := agent.NetnsPath(uint32(inode))
			if err != nil {
				fmt.Fprintf(stderr, "tcpspan: -netns %s: %v\n", o.netns, err)
				return 2
			}
			o.netns = path
		} else {
			o.netns = "/var/run/netns/" + o.netns
		}
	}
	if o.health == 0 {
		o.health = -1
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.features {
		return printFeatures(stdout, stderr)
	}

	view := newTerminal(stdout, o.verbose)
	cfg := agent.Config{
		NetnsPath:       o.netns,
		Ports:           o.ports,
		RingBufferBytes: o.ringBytes,
		MaxConnections:  o.maxConns,
		OrphanIdle:      o.orphanIdle,
		HealthInterval:  o.health,
		Logger:          log,
		Ready: func(tr *bpf.Tracer) {
			log.Info("tracing", "netns", orAll(o.netns), "ports", o.ports, "features", fmt.Sprintf("%+v", tr.Features()))
		},
	}
	health, err := agent.Run(ctx, cfg, view.print)
	if err != nil {
		fmt.Fprintf(stderr, "tcpspan: %v\n", err)
		return 1
	}
	view.summary()
	log.Info("stopped", "connections", health.Tracker.Connections, "orphans", health.Tracker.Orphans,
		"lost", health.Lost(), "printed", view.printed)
	return 0
}

func orAll(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

func printFeatures(stdout, stderr io.Writer) int {
	tr, err := bpf.Load(bpf.WithWarnings(func(s string) { fmt.Fprintln(stderr, "warning:", s) }))
	if err != nil {
		fmt.Fprintf(stderr, "tcpspan: %v\n", err)
		return 1
	}
	defer tr.Close()
	f := tr.Features()
	names := tr.Names()
	row := func(on bool, what, detail string) {
		state := "off"
		if on {
			state = "on "
		}
		fmt.Fprintf(stdout, "%s  %-28s %s\n", state, what, detail)
	}
	row(true, "connections, close(), resets", "tracepoints inet_sock_set_state, tcp_*, syscalls close/accept")
	row(f.ResetReasons, "reset reasons", "tcp_send_reset reason, names from "+orNone(names.ResetSource))
	row(f.DropReasons, "drop reasons", "kfree_skb reason, names from "+orNone(names.DropSource))
	row(f.ListenOverflow, "handshake ACK overflow", "drop reason TCP_LISTEN_OVERFLOW")
	row(f.SYNOverflow, "SYN accept-queue overflow", "cgroup_skb/ingress on "+orNone(f.CgroupPath))
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
