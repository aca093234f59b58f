package bpf

import "time"

// WithPollIntervals sets the bounds of Read's sleeps, so that a test can
// tell a drain the kernel woke from one the timer started.
func WithPollIntervals(min, max time.Duration) Option {
	return optionFunc(func(c config) config { c.pollMin, c.pollMax = min, max; return c })
}

// Drains returns how many times Read has drained the ring buffer.
func Drains(t *Tracer) uint64 { return t.drains.Load() }
