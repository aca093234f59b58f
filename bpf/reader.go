package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// PollInterval bounds how long a record waits in the ring buffer: the
// kernel wakes the reader only once [DefaultWakeupBytes] are pending, so
// the reader also looks on this timer.
const PollInterval = 10 * time.Millisecond

// Handler receives decoded records. The pointers are valid only during the
// call; the reader reuses the memory behind them.
type Handler interface {
	HandleConn(*ConnRecord)
	HandleOrphan(*OrphanRecord)
}

// Counters are the kernel side's own counts, summed over CPUs.
type Counters struct {
	RingbufLostConn   uint64 // connection records lost: ring buffer full
	RingbufLostOrphan uint64 // orphan records lost: ring buffer full
	ConnMapFull       uint64 // connections not tracked: map update failed
	ConnEventsLost    uint64 // events beyond a connection's MaxConnEvents
	ConnMidlife       uint64 // connections first seen mid-life, or re-tracked after eviction
	ConnsEmitted      uint64
	OrphansEmitted    uint64
	// DestroyedUntracked counts connections that ended with no kernel
	// entry: evicted from a full map (see WithMaxConnections), or open
	// and idle since before the agent started.
	DestroyedUntracked uint64
	// ConnStale counts connections emitted when a new connection reused
	// their socket address: their destroy was never seen (see Missed).
	ConnStale uint64
	// Missed counts, per hook, the times the kernel skipped a program
	// because another run of it was under way on the same CPU (a softirq
	// interrupting it): those events were never seen. From the kernel's
	// own recursion_misses.
	Missed map[string]uint64
	// Malformed counts records the reader could not decode.
	Malformed uint64
}

// Read delivers records to h until ctx is done or the Tracer is closed. It
// never blocks the kernel: a full ring buffer drops records in the kernel,
// where they are counted (see [Tracer.Counters]).
func (t *Tracer) Read(ctx context.Context, h Handler) error {
	stop := context.AfterFunc(ctx, func() { t.reader.Flush() })
	defer stop()
	var rec ringbuf.Record
	t.reader.SetDeadline(time.Now().Add(PollInterval))
	for {
		err := t.reader.ReadInto(&rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if ctx.Err() != nil {
				return nil
			}
			t.reader.SetDeadline(time.Now().Add(PollInterval))
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			// Flushed on cancel: everything pending has been read.
			return nil
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		c, o, err := Decode(rec.RawSample)
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
	var sums [tcpspanCounterCOUNTER_MAX]uint64
	for i := range sums {
		var perCPU []uint64
		if err := t.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			missed := map[string]uint64{}
			for name, p := range t.progs {
				st, err := p.Stats()
				if err != nil {
					return Counters{}, fmt.Errorf("read stats of %s: %w", name, err)
				}
				if st.RecursionMisses > 0 {
					missed[name] = st.RecursionMisses
				}
			}
			return Counters{
				Missed: missed}, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			sums[i] += v
		}
	}
	missed := map[string]uint64{}
	for name, p := range t.progs {
		st, err := p.Stats()
		if err != nil {
			return Counters{}, fmt.Errorf("read stats of %s: %w", name, err)
		}
		if st.RecursionMisses > 0 {
			missed[name] = st.RecursionMisses
		}
	}
	return Counters{
		Missed:             missed,
		RingbufLostConn:    sums[tcpspanCounterCOUNTER_RINGBUF_LOST_CONN],
		RingbufLostOrphan:  sums[tcpspanCounterCOUNTER_RINGBUF_LOST_ORPHAN],
		ConnMapFull:        sums[tcpspanCounterCOUNTER_CONN_MAP_FULL],
		ConnEventsLost:     sums[tcpspanCounterCOUNTER_CONN_EVENTS_LOST],
		ConnMidlife:        sums[tcpspanCounterCOUNTER_CONN_MIDLIFE],
		ConnsEmitted:       sums[tcpspanCounterCOUNTER_CONNS_EMITTED],
		OrphansEmitted:     sums[tcpspanCounterCOUNTER_ORPHANS_EMITTED],
		DestroyedUntracked: sums[tcpspanCounterCOUNTER_DESTROYED_UNTRACKED],
		ConnStale:          sums[tcpspanCounterCOUNTER_CONN_STALE],
		Malformed:          t.malformed.Load(),
	}, nil
}
