//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// FoldedResets counts resets the kernel sent for no socket at all (a
// closed port) and counted instead of sending a record each: those of one
// kind, from one local address and port to one peer address, for one
// reason, within one window (see [WithResetFolding]). The first of each
// window was sent as an orphan record, with its 4-tuple; these are the
// rest.
type FoldedResets struct {
	// Tuple names the kind: the local end, the peer's address, the
	// network namespace. Its Dport is 0: the peer's ports vary.
	Tuple Tuple
	// Reason is the kernel's reset reason (ResetReasonUnknown before 6.10).
	Reason uint32
	// Count is how many were folded; FirstNs and LastNs are the boot-clock
	// times of the first and the last of them.
	Count           uint64
	FirstNs, LastNs uint64
}

// WithResetFolding makes the kernel count resets for closed ports per kind
// and window of d, sending only the first of each as a record: a reset
// storm then costs a map update per reset, and the reader delivers the
// counts ([Handler.HandleFoldedResets]) once each window has ended. Zero,
// the default, sends a record for each reset.
func WithResetFolding(d time.Duration) Option {
	return optionFunc(func(c config) config { c.resetWindow = d; return c })
}

// resetSweepInterval is how often the reader looks for ended windows of
// folded resets: it bounds how late their counts arrive after the window.
const resetSweepInterval = 100 * time.Millisecond

// resetSweepGrace is how long after a window's end its count is left
// alone, for a reset that read the clock just before the end and is still
// counting.
const resetSweepGrace = 10 * time.Millisecond

// sweepResets delivers and deletes the folded resets of the windows that
// have ended, or of every window if all is set (the reader is stopping: no
// later reset is delivered anyway).
func (t *Tracer) sweepResets(h Handler, all bool) error {
	if t.resetWindow <= 0 {
		return nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return fmt.Errorf("read the boot clock: %w", err)
	}
	window := uint64(t.resetWindow)
	ended := (uint64(ts.Nano()) - uint64(resetSweepGrace)) / window
	m := t.objs.ResetStorms
	var key, next tcpspanResetStormKey
	var done []tcpspanResetStormKey
	err := m.NextKey(nil, &next)
	for err == nil {
		key = next
		if all || key.Window < ended {
			done = append(done, key)
		}
		err = m.NextKey(&key, &next)
	}
	if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("walk reset_storms: %w", err)
	}
	for i := range done {
		var v tcpspanResetStorm
		if err := t.takeReset(&done[i], &v); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return fmt.Errorf("take from reset_storms: %w", err)
		}
		if v.Count == 0 {
			continue // a window with its example only
		}
		k := &done[i]
		r := FoldedResets{Reason: k.Reason, Count: v.Count, FirstNs: v.FirstNs, LastNs: v.LastNs}
		r.Tuple.Saddr, r.Tuple.Daddr, r.Tuple.Netns = k.Saddr, k.Daddr, k.Netns
		r.Tuple.Sport, r.Tuple.Family = k.Sport, k.Family
		h.HandleFoldedResets(&r)
	}
	return nil
}

// takeReset reads and deletes one entry, in one step where the kernel can
// (hash maps since 5.14), so that no count is added in between.
func (t *Tracer) takeReset(k *tcpspanResetStormKey, v *tcpspanResetStorm) error {
	m := t.objs.ResetStorms
	if !t.noLookupAndDelete {
		err := m.LookupAndDelete(k, v)
		if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.EINVAL) {
			return err
		}
		t.noLookupAndDelete = true
	}
	if err := m.Lookup(k, v); err != nil {
		return err
	}
	return m.Delete(k)
}
