package conn

import "time"

// Defaults of the tracker options.
const (
	// DefaultOrphanIdle is how long a 4-tuple's orphan events wait for more
	// before they are emitted as one connection. It covers the kernel's
	// handshake timers: SYN-ACK and data retransmits back off to seconds.
	DefaultOrphanIdle = 5 * time.Second
	// DefaultMaxOrphans bounds the pending orphan 4-tuples; beyond it the
	// oldest are emitted early (and counted in Stats.OrphansForced).
	DefaultMaxOrphans = 65536
	// DefaultLinger is how long a finished connection is held before it is
	// emitted, so that the kernel's last word on it can join it: when a
	// packet arrives for a closed, orphaned socket, tcp_reset() destroys
	// the socket and only then is the answering RST sent, as an orphan
	// event right behind the connection's record.
	DefaultLinger = 100 * time.Millisecond
)

// Option configures a [Tracker].
type Option interface {
	apply(config) config
}

type optionFunc func(config) config

func (f optionFunc) apply(c config) config { return f(c) }

type config struct {
	reuse       bool
	linger      time.Duration
	orphanIdle  time.Duration
	maxOrphans  int
	stormWindow time.Duration
	bootTime    func(ns uint64) time.Time
}

// WithOrphanIdle sets how long orphan events of a 4-tuple wait for more.
// Default [DefaultOrphanIdle].
func WithOrphanIdle(d time.Duration) Option {
	return optionFunc(func(c config) config { c.orphanIdle = d; return c })
}

// WithLinger sets how long finished connections are held for late events;
// zero emits them at once. They leave in the order they arrived: when a
// held connection's 4-tuple is reused, it leaves at once, with those that
// arrived before it. Default [DefaultLinger].
func WithLinger(d time.Duration) Option {
	return optionFunc(func(c config) config { c.linger = d; return c })
}

// WithMaxOrphans bounds pending orphan 4-tuples. Default [DefaultMaxOrphans].
func WithMaxOrphans(n int) Option {
	return optionFunc(func(c config) config { c.maxOrphans = n; return c })
}

// WithStormWindow sets how long orphans of one kind (see [Storm]) are
// folded into one connection after the first was emitted; zero turns
// folding off. Default [DefaultStormWindow].
func WithStormWindow(d time.Duration) Option {
	return optionFunc(func(c config) config { c.stormWindow = d; return c })
}

// WithReuse tells the tracker that out keeps nothing of a full connection
// after it returns: not the *Connection, nor its Events or Closer (strings
// may be kept; they are never changed). The tracker then reuses their
// memory for later records instead of allocating it anew for each; at
// thousands of connections a second that garbage was most of the cost of
// a record. Orphan connections are never reused. Default off.
func WithReuse(on bool) Option {
	return optionFunc(func(c config) config { c.reuse = on; return c })
}

// WithBootClock sets the conversion of kernel timestamps
// (bpf_ktime_get_boot_ns) to wall time. Default [BootClock].
func WithBootClock(f func(ns uint64) time.Time) Option {
	return optionFunc(func(c config) config { c.bootTime = f; return c })
}
