package bpf

import "time"

// WithPollIntervals sets the bounds of Read's sleeps, so that a test can
// tell a drain the kernel woke from one the timer started.
func WithPollIntervals(min, max time.Duration) Option {
	return optionFunc(func(c config) config { c.pollMin, c.pollMax = min, max; return c })
}

// Drains returns how many times Read has drained the ring buffer.
func Drains(t *Tracer) uint64 { return t.drains.Load() }

// WithSoftirqInTask makes the kernel side treat softirqs as running on the
// task's stack, as on PREEMPT_RT, whatever the running kernel does, so that
// the lock test that mode relies on runs on any kernel.
func WithSoftirqInTask(on bool) Option {
	return optionFunc(func(c config) config { c.softirqInTask = &on; return c })
}

// WithAcceptTracepoints makes Load hook accept() through its syscall
// tracepoints, the last fallback, even where a better hook works, so that
// every path is tested on such kernels.
func WithAcceptTracepoints() Option {
	return optionFunc(func(c config) config { c.acceptHook = acceptTracepoints; return c })
}

// WithAcceptPeerHook makes Load hook accept() through the cgroup
// getpeername hooks, the first fallback, even where fexit works.
func WithAcceptPeerHook() Option {
	return optionFunc(func(c config) config { c.acceptHook = acceptPeerHook; return c })
}
