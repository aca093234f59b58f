// Package agent wires tcpspan's pipeline together, in the one direction data
// flows: kernel (package bpf) → reader → tracker (package conn) → a sink
// that receives finished connections. It also picks up what predates the
// agent (package sockdiag) and keeps the agent's own counts. The command
// and the end-to-end tests both run the pipeline through [Run].
//
// It must not decide what a span looks like (package exporter), read the
// kernel beyond the [bpf.Tracer] it is given, nor publish metrics (package
// selfmetrics reads [Health]). The layering is cmd → selfmetrics → agent →
// exporter → conn → bpf, with no arrow back up: agent imports no package
// above it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
	"github.com/tcpspan/tcpspan/sockdiag"
)

// Defaults of [Config].
const (
	// DefaultFlushInterval is how often pending orphan events are checked
	// for idleness.
	DefaultFlushInterval = 250 * time.Millisecond
	// DefaultHealthInterval is how often the health line is logged.
	DefaultHealthInterval = 30 * time.Second
)

// Config is what [Run] needs.
type Config struct {
	// NetnsPath restricts capture to one network namespace (a path such
	// as /var/run/netns/NAME or /proc/PID/ns/net); empty captures all.
	NetnsPath string
	// Ports restricts capture to connections with one of these local or
	// remote ports (at most 8); empty captures all.
	Ports []uint16
	// SkipClean keeps connections with no problem in the kernel side,
	// counted (Health.Kernel.CleanSkipped), for when nothing would export
	// or print them (see bpf.WithSkipClean).
	SkipClean bool
	// SynWatch says when the SYN watch is attached (see bpf.SynWatchAuto).
	SynWatch bpf.SynWatchMode
	// NoTraceparent turns off the capture of traceparent headers (see
	// bpf.WithTraceparent).
	NoTraceparent bool
	// RingBufferBytes and MaxConnections size the kernel side; zero
	// means bpf's defaults.
	RingBufferBytes int
	MaxConnections  int
	// ReuseConnections says that the sink keeps nothing of a connection
	// after it returns (see conn.WithReuse): the tracker then reuses its
	// memory for the next ones, which spares the garbage collector most of
	// its work per connection.
	ReuseConnections bool
	// OrphanIdle is how long socket-less events of a 4-tuple wait to be
	// joined; zero means conn.DefaultOrphanIdle.
	OrphanIdle time.Duration
	// HealthInterval is how often the health line is logged; zero means
	// DefaultHealthInterval, negative never.
	HealthInterval time.Duration
	// Logger receives warnings and health lines.
	Logger *slog.Logger
	// Ready, if set, is called once the programs are attached and what
	// predates the agent has been picked up.
	Ready func(*bpf.Tracer)
	// Export, if set, reports the span exporter's side of the health; it
	// is read with every health line and by Observe's function.
	Export func() ExportHealth
	// Observe, if set, is called before Ready with a function that returns
	// the current health. It is safe for concurrent use, cheap enough to
	// call every few seconds, and keeps returning the final health after
	// Run has returned.
	Observe func(current func() Health)
}

// Health is the agent's own account of what it saw and lost.
type Health struct {
	Kernel  bpf.Counters
	Tracker conn.Stats
	// Tracked is how many connections the kernel side tracks now, of the
	// Capacity it can (-max-connections; beyond it the oldest are evicted).
	Tracked, Capacity int
	// Export is the exporter's side; zero when there is no exporter.
	Export ExportHealth
}

// ExportHealth is what became of the connections handed to the exporter.
type ExportHealth struct {
	On    bool           // an exporter is configured
	Spans exporter.Stats // spans recorded, exported, failed, dropped
	// Errors counts the errors the OpenTelemetry SDK reported in the
	// background: failed or refused exports of spans and of metrics.
	Errors uint64
}

// Lost is the number of records lost anywhere before the tracker.
func (h Health) Lost() uint64 {
	return h.Kernel.RingbufLostConn + h.Kernel.RingbufLostOrphan + h.Kernel.RingbufLostTraceparent + h.Kernel.ConnMapFull + h.Kernel.Malformed
}

// Missed is the number of kernel events whose program the kernel skipped
// (recursion on one CPU), summed over hooks.
func (h Health) Missed() uint64 {
	var n uint64
	for _, v := range h.Kernel.Missed {
		n += v
	}
	return n
}

// Run loads the kernel side and delivers every finished connection to sink
// until ctx is done. Then it emits what is pending, detaches everything and
// returns the final health. sink runs on the reader's goroutine: it must
// not block for long, or the ring buffer fills and records are lost (and
// counted).
func Run(ctx context.Context, cfg Config, sink func(*conn.Connection)) (Health, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []bpf.Option{
		bpf.WithWarnings(func(s string) { log.Warn(s) }),
		bpf.WithVerifierLogs(true),
		bpf.WithSynWatch(cfg.SynWatch),
		bpf.WithTraceparent(!cfg.NoTraceparent),
		bpf.WithNotices(func(s string) { log.Info(s) }),
		// Closed-port resets are folded in the kernel by the window the
		// tracker folds storms by, so that both make one storm span.
		bpf.WithResetFolding(conn.DefaultStormWindow),
	}
	var netns uint32
	if cfg.NetnsPath != "" {
		var err error
		if netns, err = bpf.NetnsInode(cfg.NetnsPath); err != nil {
			return Health{}, err
		}
		opts = append(opts, bpf.WithNetns(netns))
	}
	if len(cfg.Ports) > 0 {
		opts = append(opts, bpf.WithPorts(cfg.Ports...))
	}
	if cfg.RingBufferBytes > 0 {
		opts = append(opts, bpf.WithRingBufferBytes(cfg.RingBufferBytes))
	}
	if cfg.MaxConnections > 0 {
		opts = append(opts, bpf.WithMaxConnections(cfg.MaxConnections))
	}
	if cfg.SkipClean {
		opts = append(opts, bpf.WithSkipClean(true))
	}
	tr, err := bpf.Load(opts...)
	if err != nil {
		return Health{}, err
	}
	defer tr.Close()

	trackerOpts := []conn.Option{conn.WithReuse(cfg.ReuseConnections)}
	if cfg.OrphanIdle > 0 {
		trackerOpts = append(trackerOpts, conn.WithOrphanIdle(cfg.OrphanIdle))
	}
	tk := conn.New(tr.Names(), sink, trackerOpts...)
	if err := seed(tr, tk, cfg.NetnsPath); err != nil {
		log.Warn("connections open before the agent will lack owners", "err", err)
	}
	// The kernel counters can be read only while the tracer is open; after
	// that, the final health stands.
	var healthMu sync.Mutex
	var final *Health
	health := func() Health {
		healthMu.Lock()
		defer healthMu.Unlock()
		if final != nil {
			h := *final
			if cfg.Export != nil {
				h.Export = cfg.Export()
			}
			return h
		}
		k, err := tr.Counters()
		if err != nil {
			log.Warn("read kernel counters", "err", err)
		}
		h := Health{Kernel: k, Tracker: tk.Stats()}
		if h.Tracked, h.Capacity, err = tr.Occupancy(); err != nil {
			log.Warn("count tracked connections", "err", err)
		}
		if cfg.Export != nil {
			h.Export = cfg.Export()
		}
		return h
	}
	defer func() {
		h := health()
		healthMu.Lock()
		final = &h
		healthMu.Unlock()
	}()
	if cfg.Observe != nil {
		cfg.Observe(health)
	}
	if cfg.Ready != nil {
		cfg.Ready(tr)
	}

	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	readErr := make(chan error, 1)
	go func() { readErr <- tr.Read(readCtx, tk) }()

	flush := time.NewTicker(DefaultFlushInterval)
	defer flush.Stop()
	healthEvery := cfg.HealthInterval
	if healthEvery == 0 {
		healthEvery = DefaultHealthInterval
	}
	var healthC <-chan time.Time
	if healthEvery > 0 {
		h := time.NewTicker(healthEvery)
		defer h.Stop()
		healthC = h.C
	}
	for {
		select {
		case now := <-flush.C:
			tk.Flush(now)
		case <-healthC:
			logHealth(log, health())
		case err := <-readErr:
			// The reader stops on cancel (after draining) or on error.
			tk.Close()
			h := health()
			if err != nil {
				return h, err
			}
			return h, nil
		case <-ctx.Done():
			stopRead()
		}
	}
}

func logHealth(log *slog.Logger, h Health) {
	log.Info("health", h.LogAttrs()...)
}

// LogAttrs are the health as key-value pairs for one log line: scalars
// only, so that the line stays one line of key=value.
func (h Health) LogAttrs() []any {
	attrs := []any{
		"connections", h.Tracker.Connections, "orphans", h.Tracker.Orphans,
		"lost", h.Lost(), "lost_ringbuf", h.Kernel.RingbufLostConn + h.Kernel.RingbufLostOrphan + h.Kernel.RingbufLostTraceparent,
		"lost_map_full", h.Kernel.ConnMapFull, "events_truncated", h.Kernel.ConnEventsLost,
		"tracked", h.Tracked, "capacity", h.Capacity, "clean_in_kernel", h.Kernel.CleanSkipped,
		"midlife", h.Kernel.ConnMidlife, "untracked", h.Kernel.DestroyedUntracked, "stale", h.Kernel.ConnStale, "missed", h.Missed(),
		"orphans_forced", h.Tracker.OrphansForced, "orphans_folded", h.Tracker.OrphansFolded,
		"storms", h.Tracker.Storms, "resets_folded_in_kernel", h.Kernel.ResetsFolded,
		"reset_storms_full", h.Kernel.ResetStormsFull,
		"conn_storms", h.Tracker.ConnStorms, "conns_folded", h.Tracker.ConnsFolded,
		"refused_storms_full", h.Kernel.RefusedStormsFull, "retrans_unsent", h.Kernel.RetransUnsent,
		"traceparents", h.Tracker.Requests, "traceparents_malformed", h.Tracker.RequestsMalformed,
		"traceparents_dropped", h.Tracker.RequestsDropped,
		"syn_watch_on", h.Kernel.SynWatchOn, "syn_watch_attaches", h.Kernel.SynWatchAttaches,
	}
	if h.Export.On {
		st := h.Export.Spans
		attrs = append(attrs, "spans_recorded", st.Recorded, "spans_exported", st.Exported,
			"spans_failed", st.ExportFailed, "spans_dropped", st.Dropped(), "spans_folded", st.Folded, "sampled_out", st.SampledOut,
			"diagnosis_spans", st.Diagnoses,
			"export_errors", h.Export.Errors)
	}
	return attrs
}

// seed picks up sockets that predate the agent: the owners of open
// connections (whose records will be flagged mid-life) and of listeners.
func seed(tr *bpf.Tracer, tk *conn.Tracker, netnsPath string) error {
	socks, err := sockdiag.Snapshot(netnsPath)
	if err != nil && socks != nil && errors.Is(err, fs.ErrPermission) {
		// Some processes' fds could not be read (a security module can
		// deny even root); the sockets are listed, most with owners.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("list open sockets: %w", err)
	}
	for _, s := range socks {
		if len(s.Owners) == 0 {
			continue
		}
		owner := conn.Process{PID: s.Owners[0].PID, Comm: s.Owners[0].Comm}
		if conn.State(s.State) == conn.StateListen {
			if err := tr.AddListener(s.NetnsInode, s.Local.Port(), owner.PID, owner.Comm, s.RQueue, s.WQueue); err != nil {
				return err
			}
			continue
		}
		tk.SeedOwner(s.NetnsInode, s.Local, s.Remote, owner)
	}
	return nil
}

// NetnsPath finds a file for the network namespace with this inode: a
// name under /var/run/netns, or a process living in it.
func NetnsPath(inode uint32) (string, error) {
	named, _ := filepath.Glob("/var/run/netns/*")
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range append(named, procs...) {
		if ino, err := bpf.NetnsInode(p); err == nil && ino == inode {
			return p, nil
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return "", fmt.Errorf("cannot look up network namespaces: %w", err)
	}
	return "", fmt.Errorf("no network namespace with inode %d (not named in /var/run/netns, and no process in it)", inode)
}
