//go:build linux

package bpf

import "time"

// Defaults of the load options.
const (
	// DefaultRingBufferBytes is the size of the ring buffer. A connection
	// record is 568 bytes, so 16 MiB holds about 29k of them.
	DefaultRingBufferBytes = 16 << 20
	// DefaultMaxConnections is how many open connections the kernel tracks
	// at once. Each costs about 600 bytes of kernel memory (about 40 MiB at
	// the default). Beyond it the oldest entries are evicted and those
	// connections are reported mid-life when they next show activity.
	DefaultMaxConnections = 65536
	// DefaultWakeupBytes is how much must be pending before the kernel
	// signals the ring buffer's poller. The reader drains on a timer (see
	// [Tracer.Read]) and wakes early for the signal, so a burst is read
	// without waiting for the timer; it is kept rare so that it costs the
	// kernel little.
	DefaultWakeupBytes = 64 << 10
)

// Option configures [Load].
type Option interface {
	apply(config) config
}

type optionFunc func(config) config

func (f optionFunc) apply(c config) config { return f(c) }

type config struct {
	netns         uint32
	ports         []uint16
	ringBytes     int
	maxConns      int
	wakeupBytes   uint32
	pollMin       time.Duration // the reader's sleeps: see PollInterval
	pollMax       time.Duration
	cgroupPath    string
	verifierLogs  bool
	warn          func(string)
	skipClean     bool
	synWatch      SynWatchMode
	noTraceparent bool
	notice        func(string)
	resetWindow   time.Duration // see WithResetFolding
	// acceptHook: hook accept() through this fallback even where fexit
	// works (tests): acceptPeerHook or acceptTracepoints; "" for the best.
	acceptHook string
	// softirqInTask: the kernel runs softirqs on the task's stack
	// (PREEMPT_RT); nil means read /sys/kernel/realtime.
	softirqInTask *bool
}

func newConfig(opts ...Option) config {
	c := config{
		ringBytes:   DefaultRingBufferBytes,
		maxConns:    DefaultMaxConnections,
		wakeupBytes: DefaultWakeupBytes,
		pollMin:     PollInterval,
		pollMax:     MaxPollInterval,
		warn:        func(string) {},
		notice:      func(string) {},
	}
	for _, o := range opts {
		c = o.apply(c)
	}
	return c
}

// WithNetns restricts capture to the network namespace with this inode
// (see [NetnsInode]). Zero, the default, captures every namespace.
func WithNetns(inode uint32) Option {
	return optionFunc(func(c config) config { c.netns = inode; return c })
}

// WithPorts restricts capture to connections whose local or remote port is
// one of ports (at most 8). None, the default, captures all ports.
func WithPorts(ports ...uint16) Option {
	return optionFunc(func(c config) config { c.ports = ports; return c })
}

// WithRingBufferBytes sets the ring buffer size, a power of two multiple of
// the page size. Default [DefaultRingBufferBytes].
func WithRingBufferBytes(n int) Option {
	return optionFunc(func(c config) config { c.ringBytes = n; return c })
}

// WithMaxConnections sets how many open connections the kernel tracks.
// Default [DefaultMaxConnections].
func WithMaxConnections(n int) Option {
	return optionFunc(func(c config) config { c.maxConns = n; return c })
}

// WithSkipClean makes the kernel side keep connections that had no problem
// (no retransmit, reset, error, drop or overflow) to itself: it counts them
// ([Counters.CleanSkipped]) instead of sending a record. For when nothing
// would export or print them: it spares a ring-buffer write per socket in
// the kernel and the record's whole path in the agent.
func WithSkipClean(on bool) Option {
	return optionFunc(func(c config) config { c.skipClean = on; return c })
}

// WithTraceparent turns on or off the capture of W3C traceparent headers
// in HTTP/1.x requests (see [CapTraceparent]). Default on.
func WithTraceparent(on bool) Option {
	return optionFunc(func(c config) config { c.noTraceparent = !on; return c })
}

// WithCgroupPath sets the cgroup v2 directory the SYN-overflow program
// attaches to. By default it is found in /proc/self/mountinfo.
func WithCgroupPath(path string) Option {
	return optionFunc(func(c config) config { c.cgroupPath = path; return c })
}

// WithWarnings receives warnings about degraded capabilities.
func WithWarnings(f func(string)) Option {
	return optionFunc(func(c config) config { c.warn = f; return c })
}

// WithVerifierLogs prints the full verifier log when a program fails to load.
func WithVerifierLogs(on bool) Option {
	return optionFunc(func(c config) config { c.verifierLogs = on; return c })
}

// WithResetFolding makes the kernel count resets for closed ports, and the
// connects they refuse, per kind and window of d, sending only the first of
// each as a record: a closed-port storm then costs a map update per
// attempt, and the reader delivers the counts
// ([Handler.HandleFoldedResets], [Handler.HandleFoldedConns]) once each
// window has ended. The refused connects of a process that listens or
// accepts are never folded (see servers in maps.h). Zero, the default,
// sends a record for each.
func WithResetFolding(d time.Duration) Option {
	return optionFunc(func(c config) config { c.resetWindow = d; return c })
}
