//go:build linux

package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// PollInterval is how often the reader drains the ring buffer while records
// arrive, and so bounds how long a record waits there. At 400k records/s
// (100k connections closing at once) 10 ms is 2.3 MB, far below the ring
// buffer's size.
const PollInterval = 10 * time.Millisecond

// MaxPollInterval is the longest the reader sleeps while the ring buffer
// stays empty: each drain that finds nothing doubles the sleep, from
// [PollInterval] up to this. The kernel also wakes it when
// [DefaultWakeupBytes] are pending, so a burst after a quiet spell waits
// for no timer. A woken thread costs about 0.2 ms of CPU on a small VM:
// 100 drains a second were 2% of a core with nothing to read.
const MaxPollInterval = 250 * time.Millisecond

// Handler receives decoded records. The pointers are valid only during the
// call; the reader reuses the memory behind them.
type Handler interface {
	HandleConn(*ConnRecord)
	HandleOrphan(*OrphanRecord)
	HandleTraceparent(*TraceparentRecord)
	// HandleFoldedResets receives the resets the kernel counted instead of
	// sending (see [WithResetFolding]), once their window has ended.
	HandleFoldedResets(*FoldedResets)
	// HandleFoldedConns receives the refused connects the kernel counted
	// instead of sending (see [WithResetFolding]), once their window has
	// ended.
	HandleFoldedConns(*FoldedConns)
}

// Counters are the kernel side's own counts, summed over CPUs.
type Counters struct {
	RingbufLostConn   uint64 // connection records lost: ring buffer full
	RingbufLostOrphan uint64 // orphan records lost: ring buffer full
	// RingbufLostTraceparent counts traceparent records lost: ring
	// buffer full (their connections' spans miss those links).
	RingbufLostTraceparent uint64
	ConnMapFull            uint64 // connections not tracked: map update failed
	ConnEventsLost         uint64 // events beyond a connection's MaxConnEvents
	ConnMidlife            uint64 // connections first seen mid-life, or re-tracked after eviction
	ConnsEmitted           uint64
	OrphansEmitted         uint64
	// DestroyedUntracked counts connections that ended with no kernel
	// entry: evicted from a full map (see WithMaxConnections), or open
	// and idle since before the agent started.
	DestroyedUntracked uint64
	// ConnStale counts connections emitted when a new connection reused
	// their socket address: their destroy was never seen (see Missed).
	ConnStale uint64
	// CleanSkipped counts connections with no problem that the kernel
	// side did not send (see [WithSkipClean]).
	CleanSkipped uint64
	// ResetsFolded counts resets for closed ports the kernel counted
	// instead of sending a record each (see [WithResetFolding]);
	// ResetStormsFull those it sent one record each because its map of
	// counts was full.
	ResetsFolded, ResetStormsFull uint64
	// RefusedFolded and RefusedStormsFull are the same for refused
	// connects.
	RefusedFolded, RefusedStormsFull uint64
	// RetransUnsent counts retransmits the kernel tried and gave up on
	// before sending or counting one (the segment still queued on this
	// host, the peer's window closed, no memory or no route): kernels
	// newer than 6.12 (6.18) tell them, and they are not retransmits.
	RetransUnsent uint64
	// Missed counts, per hook, the times the kernel skipped a program
	// because another run of it was under way on the same CPU (a softirq
	// interrupting it): those events were never seen. From the kernel's
	// own recursion_misses.
	Missed map[string]uint64
	// Malformed counts records the reader could not decode.
	Malformed uint64
	// SynWatchOn says whether the SYN watch is attached now, and
	// SynWatchAttaches how often it was attached on demand (see
	// [SynWatchAuto]).
	SynWatchOn       bool
	SynWatchAttaches uint64
}

// Read delivers records to h until ctx is done or the Tracer is closed. It
// never blocks the kernel: a full ring buffer drops records in the kernel,
// where they are counted (see [Tracer.Counters]).
//
// It drains the ring buffer without blocking and sleeps in between, every
// [PollInterval] while records come and up to [MaxPollInterval] while none
// do, parked in the Go runtime's poller until the kernel's wake-up or the
// timeout. It never waits in a blocking epoll_wait: a goroutine blocked in
// a system call keeps the runtime's monitor thread waking every 20 µs to
// retake its processor, which was a quarter of the agent's CPU when
// connections were not exported. Closing the Tracer ends it at its next
// drain, within the current sleep.
func (t *Tracer) Read(ctx context.Context, h Handler) error {
	// Capacity for a full connection record, so that Decode can complete a
	// short one in place.
	buf := make([]byte, 0, RecordBufferBytes)
	w := newRingWait(t.objs.Events)
	defer w.close()
	defer context.AfterFunc(ctx, w.interrupt)()
	sleep := t.pollMin
	var swept time.Time
	for {
		n, err := t.drain(buf, h)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			// What the kernel wrote before the cancel is delivered too,
			// and what it counted.
			if _, err := t.drain(buf, h); err != nil && !errors.Is(err, os.ErrClosed) {
				return err
			}
			if err := t.sweepFolded(h, true); err != nil && !errors.Is(err, os.ErrClosed) {
				return err
			}
			return nil
		}
		if now := time.Now(); now.Sub(swept) >= resetSweepInterval {
			swept = now
			if err := t.sweepFolded(h, false); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return nil
				}
				return err
			}
		}
		if n > 0 {
			sleep = t.pollMin
		} else {
			sleep = min(2*sleep, t.pollMax)
		}
		w.wait(ctx, sleep, sleep > t.pollMin)
	}
}

// ringWait sleeps until the kernel signals the ring buffer, a timeout, or
// an interrupt, parked in the Go runtime's poller on a duplicate of the
// ring buffer's descriptor. The kernel signals it only as the pending data
// crosses the wake-up threshold (see rb_flags in sock.h). Where the
// descriptor cannot be polled that way, it sleeps on a timer alone.
type ringWait struct {
	f  *os.File        // nil: timer only
	rc syscall.RawConn // f's
	// wake ends a timer-only sleep early.
	wake chan struct{}
}

func newRingWait(m *ebpf.Map) *ringWait {
	w := &ringWait{wake: make(chan struct{}, 1)}
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return w
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return w
	}
	// Non-blocking, so os.NewFile registers it with the runtime's poller;
	// a descriptor it could not register has no deadlines.
	f := os.NewFile(uintptr(fd), "ringbuf")
	rc, err := f.SyscallConn()
	if err != nil || f.SetReadDeadline(time.Time{}) != nil {
		f.Close()
		return w
	}
	w.f, w.rc = f, rc
	return w
}

// wait sleeps for at most d. After a quiet spell it first asks whether
// records are pending, since a wake-up sent while the reader was draining
// is not remembered; under load the short sleep bounds that instead.
func (w *ringWait) wait(ctx context.Context, d time.Duration, quiet bool) {
	if w.f == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-w.wake:
		}
		return
	}
	if w.f.SetReadDeadline(time.Now().Add(d)) != nil || ctx.Err() != nil {
		return
	}
	woken := false
	// Errors end the sleep: the deadline, an interrupt or a closed file.
	_ = w.rc.Read(func(fd uintptr) bool {
		if woken {
			return true
		}
		woken = true
		if quiet {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, err := unix.Poll(pfd, 0); err == nil && n > 0 {
				return true
			}
		}
		return false
	})
}

// interrupt ends the current or next sleep.
func (w *ringWait) interrupt() {
	if w.f != nil {
		w.f.SetReadDeadline(time.Now())
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *ringWait) close() {
	if w.f != nil {
		w.f.Close()
	}
}

// drain delivers the records in the ring buffer now, without waiting, and
// returns how many it read. Each is copied into buf (see [ringReader]); one
// longer than cap(buf) is skipped and counted as malformed.
func (t *Tracer) drain(buf []byte, h Handler) (int, error) {
	t.drains.Add(1)
	for n := 0; ; n++ {
		sample, err := t.reader.read(buf)
		switch {
		case err == nil:
		case errors.Is(err, errRingEmpty):
			return n, nil
		case errors.Is(err, errSampleTooLong):
			t.malformed.Add(1)
			continue
		case errors.Is(err, os.ErrClosed):
			return n, err
		default:
			return n, fmt.Errorf("read ring buffer: %w", err)
		}
		if a := decodeSynWatch(sample); a != nil {
			if t.watch != nil {
				t.watch.ask(a)
			}
			continue
		}
		if r := decodeTraceparent(sample); r != nil {
			h.HandleTraceparent(r)
			continue
		}
		c, o, err := Decode(sample)
		switch {
		case err != nil:
			t.malformed.Add(1)
		case c != nil:
			h.HandleConn(c)
		default:
			h.HandleOrphan(o)
		}
	}
}

// Counters reads the kernel side's counters.
func (t *Tracer) Counters() (Counters, error) {
	missed, err := t.recursionMisses()
	if err != nil {
		return Counters{}, err
	}
	var sums [tcpspanCounterCOUNTER_MAX]uint64
	for i := range sums {
		var perCPU []uint64
		if err := t.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return Counters{Missed: missed}, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			sums[i] += v
		}
	}
	on, attaches := t.features.SYNOverflow && t.watch == nil, uint64(0)
	if t.watch != nil {
		on, attaches = t.watch.on.Load(), t.watch.attaches.Load()
	}
	return Counters{
		SynWatchOn:             on,
		SynWatchAttaches:       attaches,
		Missed:                 missed,
		RingbufLostConn:        sums[tcpspanCounterCOUNTER_RINGBUF_LOST_CONN],
		RingbufLostOrphan:      sums[tcpspanCounterCOUNTER_RINGBUF_LOST_ORPHAN],
		RingbufLostTraceparent: sums[tcpspanCounterCOUNTER_RINGBUF_LOST_TRACEPARENT],
		ConnMapFull:            sums[tcpspanCounterCOUNTER_CONN_MAP_FULL],
		ConnEventsLost:         sums[tcpspanCounterCOUNTER_CONN_EVENTS_LOST],
		ConnMidlife:            sums[tcpspanCounterCOUNTER_CONN_MIDLIFE],
		ConnsEmitted:           sums[tcpspanCounterCOUNTER_CONNS_EMITTED],
		OrphansEmitted:         sums[tcpspanCounterCOUNTER_ORPHANS_EMITTED],
		DestroyedUntracked:     sums[tcpspanCounterCOUNTER_DESTROYED_UNTRACKED],
		ConnStale:              sums[tcpspanCounterCOUNTER_CONN_STALE],
		CleanSkipped:           sums[tcpspanCounterCOUNTER_CONNS_CLEAN_SKIPPED],
		ResetsFolded:           sums[tcpspanCounterCOUNTER_RESETS_FOLDED],
		ResetStormsFull:        sums[tcpspanCounterCOUNTER_RESET_STORMS_FULL],
		RefusedFolded:          sums[tcpspanCounterCOUNTER_REFUSED_FOLDED],
		RefusedStormsFull:      sums[tcpspanCounterCOUNTER_REFUSED_STORMS_FULL],
		RetransUnsent:          sums[tcpspanCounterCOUNTER_RETRANS_UNSENT],
		Malformed:              t.malformed.Load(),
	}, nil
}

// recursionMisses reads, per attached hook, the runs the kernel skipped
// because the program was already running on that CPU.
func (t *Tracer) recursionMisses() (map[string]uint64, error) {
	missed := map[string]uint64{}
	for name, p := range t.progs {
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("read stats of %s: %w", name, err)
		}
		if st.RecursionMisses > 0 {
			missed[name] = st.RecursionMisses
		}
	}
	return missed, nil
}

// Occupancy returns how many connections the kernel side tracks now, and
// how many it can (see [WithMaxConnections]); beyond that the oldest are
// evicted. It walks the map's keys, one system call each: about 50 ms for
// a full map of the default size, so call it every few seconds at most.
func (t *Tracer) Occupancy() (tracked, capacity int, err error) {
	capacity = int(t.objs.Conns.MaxEntries())
	var key, next uint64
	err = t.objs.Conns.NextKey(nil, &next)
	for err == nil && tracked <= capacity {
		tracked++
		key = next
		err = t.objs.Conns.NextKey(&key, &next)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		err = nil
	}
	return min(tracked, capacity), capacity, err
}
