//go:build linux

package bpf

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// SynWatchMode says when the SYN watch is attached: the cgroup_skb/ingress
// program that sees each SYN reach a listener, and so each SYN a full
// accept queue drops, which nothing else in the kernel reports.
type SynWatchMode uint8

const (
	// SynWatchAuto attaches the SYN watch only while an accept queue is
	// half full or more, or overflows, or while a listener with a limit
	// below 64 exists (the kernel side asks for it), and for
	// [SynWatchLinger] after ([SynWatchOverflowLinger] after an overflow). The cgroup hook runs for every packet the host
	// receives, wanted or not: 0.9 to 1.9 µs per loopback connection in the
	// benchmarks (docs/performance.md). While it is off, a server span's
	// SYN is placed one handshake RTT before the handshake completed (the
	// kernel's own sample): at its SYN-ACK, microseconds after the SYN. The
	// SYNs of a burst that fills a queue faster than the watch attaches
	// (80-180 µs in the tests, once the reader is woken) are not seen; the
	// kernel still counts them in TcpExtListenOverflows.
	SynWatchAuto SynWatchMode = iota
	// SynWatchAlways keeps the SYN watch attached: every SYN seen, at its
	// own time, whatever it costs.
	SynWatchAlways
)

func (m SynWatchMode) String() string {
	if m == SynWatchAlways {
		return "always"
	}
	return "auto"
}

// ParseSynWatchMode reads "auto" or "always".
func ParseSynWatchMode(s string) (SynWatchMode, error) {
	switch s {
	case "auto":
		return SynWatchAuto, nil
	case "always":
		return SynWatchAlways, nil
	}
	return 0, fmt.Errorf("SYN watch %q: want auto or always", s)
}

// WithSynWatch sets when the SYN watch is attached. Default [SynWatchAuto].
func WithSynWatch(m SynWatchMode) Option {
	return optionFunc(func(c config) config { c.synWatch = m; return c })
}

// WithNotices receives notices of what the Tracer does on its own, such as
// attaching the SYN watch and why.
func WithNotices(f func(string)) Option {
	return optionFunc(func(c config) config { c.notice = f; return c })
}

// SynWatchLinger is how long the SYN watch stays on in [SynWatchAuto] after
// the kernel side last asked for it, once no accept queue is high.
const SynWatchLinger = 2 * time.Second

// SynWatchOverflowLinger is how long it stays on after an accept queue last
// overflowed. Clients retry dropped SYNs 1, 3, 7 and 15 s later, in waves
// that refill a small queue in microseconds, faster than the watch attaches.
const SynWatchOverflowLinger = 30 * time.Second

// synWatchLearnWait is how long a listener that predates the agent may take
// to be learned at its first accept() before the watch goes on to learn it
// from its SYNs: a listener whose process accepts nothing may be filling.
const synWatchLearnWait = 200 * time.Millisecond

// synWatchTick is how often the watch looks at its deadlines.
const synWatchTick = 100 * time.Millisecond

// SynWatchAsk is the kernel side's request for the SYN watch (struct
// syn_watch_ask).
type SynWatchAsk = tcpspanSynWatchAsk

// Why the kernel side asks.
const (
	WatchUnlearnedListener = uint8(tcpspanSynWatchWhyWATCH_UNLEARNED_LISTENER)
	WatchQueueHigh         = uint8(tcpspanSynWatchWhyWATCH_QUEUE_HIGH)
	WatchOverflow          = uint8(tcpspanSynWatchWhyWATCH_OVERFLOW)
	WatchSmallQueue        = uint8(tcpspanSynWatchWhyWATCH_SMALL_QUEUE)
)

// smallQueue is SMALL_QUEUE in records.h: a listener whose accept queue's
// limit is lower keeps the SYN watch on while it exists, because one burst
// of connections fills it faster than the watch attaches.
const smallQueue = uint32(tcpspanQueueLimitSMALL_QUEUE)

const kindSynWatch = uint32(tcpspanRecordKindRECORD_SYN_WATCH)

// decodeSynWatch reads a SYN watch request, or returns nil if b is another
// kind of record.
func decodeSynWatch(b []byte) *SynWatchAsk {
	if len(b) < int(unsafe.Sizeof(SynWatchAsk{})) || *(*uint32)(unsafe.Pointer(&b[0])) != kindSynWatch {
		return nil
	}
	return (*SynWatchAsk)(unsafe.Pointer(&b[0]))
}

// queueHigh mirrors queue_high in tcpspan.bpf.c: an accept queue of backlog
// connections (at most max+1) is half full or more.
func queueHigh(backlog, max uint32) bool {
	return backlog > 0 && 2*uint64(backlog) >= uint64(max)
}

// synWatch attaches and detaches the SYN watch in [SynWatchAuto]. The reader
// hands it the kernel side's asks; its own goroutine attaches (a static key
// and the cgroups' program arrays updated), so that the reader never waits.
type synWatch struct {
	attach    func() (link.Link, error)
	listeners *ebpf.Map
	notice    func(string)
	asks      chan SynWatchAsk
	stop      chan struct{}
	done      chan struct{}

	mu       sync.Mutex // guards l against Close
	l        link.Link
	on       atomic.Bool
	attaches atomic.Uint64
	failed   uint64 // attach failures in a row; guarded by mu
}

func newSynWatch(attach func() (link.Link, error), listeners *ebpf.Map, notice func(string)) *synWatch {
	w := &synWatch{
		attach:    attach,
		listeners: listeners,
		notice:    notice,
		asks:      make(chan SynWatchAsk, 64),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go w.run()
	return w
}

// ask passes on a request from the kernel side without waiting. Asks repeat
// while their cause lasts, so one that finds the queue full is not missed.
func (w *synWatch) ask(a *SynWatchAsk) {
	select {
	case w.asks <- *a:
	default:
	}
}

func (w *synWatch) run() {
	defer close(w.done)
	tick := time.NewTicker(synWatchTick)
	defer tick.Stop()
	var last, overflow time.Time                    // the last ask that needs the watch on, the last overflow
	unlearned := map[tcpspanListenerKey]time.Time{} // listeners to learn, since
	for {
		now := time.Now()
		select {
		case <-w.stop:
			w.set(false, "")
			return
		case a := <-w.asks:
			key := tcpspanListenerKey{Netns: a.Netns, Port: a.Port}
			if a.Why == WatchUnlearnedListener {
				if _, ok := unlearned[key]; !ok {
					unlearned[key] = now
				}
				break
			}
			last = now
			if a.Why == WatchOverflow {
				overflow = now
			}
			w.set(true, describeAsk(&a))
		case <-tick.C:
		}
		for key, since := range unlearned {
			var l tcpspanListenerState
			if err := w.listeners.Lookup(&key, &l); err != nil || l.Sk != 0 {
				delete(unlearned, key) // closed, or learned
				continue
			}
			if now.Sub(since) >= synWatchLearnWait {
				delete(unlearned, key)
				last = now
				w.set(true, fmt.Sprintf("listener :%d in netns %d predates the agent and accepted nothing for %v: learning it from its SYNs",
					key.Port, key.Netns, synWatchLearnWait))
			}
		}
		if w.on.Load() && now.Sub(last) >= SynWatchLinger && now.Sub(overflow) >= SynWatchOverflowLinger {
			if w.anyListenerHigh() {
				last = now
				continue
			}
			w.set(false, fmt.Sprintf("no accept queue high for %v, none overflowed for %v", SynWatchLinger, SynWatchOverflowLinger))
		}
	}
}

// anyListenerHigh says whether a listener's queue was high when last seen,
// or its limit is small: the watch stays on while one is, though no child
// or SYN asks. A walk of the map that fails keeps it on too.
func (w *synWatch) anyListenerHigh() bool {
	var key tcpspanListenerKey
	var l tcpspanListenerState
	it := w.listeners.Iterate()
	for it.Next(&key, &l) {
		if l.QueueHigh != 0 || l.QueueSmall != 0 {
			return true
		}
	}
	return it.Err() != nil
}

func describeAsk(a *SynWatchAsk) string {
	if a.Why == WatchSmallQueue {
		return fmt.Sprintf("listener :%d in netns %d has a small accept queue (limit %d): one burst fills it faster than the watch attaches",
			a.Port, a.Netns, a.Max)
	}
	what := "half full or more"
	if a.Why == WatchOverflow {
		what = "overflowing"
	}
	if a.Max == 0 && a.Backlog == 0 {
		return fmt.Sprintf("accept queue of :%d in netns %d %s", a.Port, a.Netns, what)
	}
	return fmt.Sprintf("accept queue of :%d in netns %d %s (%d queued, limit %d)", a.Port, a.Netns, what, a.Backlog, a.Max)
}

// set attaches or detaches the watch, and says why.
func (w *synWatch) set(on bool, why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on == (w.l != nil) {
		return
	}
	if !on {
		err := w.l.Close()
		w.l = nil
		w.on.Store(false)
		if err != nil {
			w.notice(fmt.Sprintf("SYN watch off: detach: %v", err))
		} else if why != "" {
			w.notice("SYN watch off: " + why)
		}
		return
	}
	start := time.Now()
	l, err := w.attach()
	if err != nil {
		// Asked again while the cause lasts; said once per failure run.
		if w.failed++; w.failed == 1 {
			w.notice(fmt.Sprintf("SYN watch could not attach (%s): %v", why, err))
		}
		return
	}
	w.failed = 0
	w.l = l
	w.on.Store(true)
	w.attaches.Add(1)
	w.notice(fmt.Sprintf("SYN watch on in %v: %s", time.Since(start).Round(10*time.Microsecond), why))
}

// close detaches the watch and stops its goroutine; again, it does nothing.
func (w *synWatch) close() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	<-w.done
}
