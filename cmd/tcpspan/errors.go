package main

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// rateLimitedErrors logs the SDK's background errors (export failures while
// a collector is down) at most once per interval, with how many it held
// back. The SDK reports them through otel.Handle, which has no caller to
// return them to.
type rateLimitedErrors struct {
	log      *slog.Logger
	interval time.Duration

	total atomic.Uint64 // every error handled, logged or not

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newRateLimitedErrors(log *slog.Logger, interval time.Duration) *rateLimitedErrors {
	return &rateLimitedErrors{log: log, interval: interval}
}

func (r *rateLimitedErrors) Handle(err error) {
	r.total.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.last) >= r.interval {
		r.log.Warn("export", "err", oneLine(err.Error()), "similar_errors_suppressed", r.suppressed)
		r.last, r.suppressed = now, 0
		return
	}
	r.suppressed++
}
