//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// resetSweepInterval is how often the reader looks for ended windows of
// folded resets: it bounds how late their counts arrive after the window.
const resetSweepInterval = 100 * time.Millisecond

// resetSweepGrace is how long after a window's end its count is left
// alone, for a reset that read the clock just before the end and is still
// counting.
const resetSweepGrace = 10 * time.Millisecond

// sweepFolded delivers and deletes the folded resets and refused connects
// of the windows that have ended, or of every window if all is set (the
// reader is stopping: no later record is delivered anyway).
func (t *Tracer) sweepFolded(h Handler, all bool) error {
	if t.resetWindow <= 0 {
		return nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return fmt.Errorf("read the boot clock: %w", err)
	}
	ended := (uint64(ts.Nano()) - uint64(resetSweepGrace)) / uint64(t.resetWindow)
	var resets []tcpspanResetStormKey
	err := walkKeys(t.objs.ResetStorms, func(k *tcpspanResetStormKey) {
		if all || k.Window < ended {
			resets = append(resets, *k)
		}
	})
	if err != nil {
		return fmt.Errorf("walk reset_storms: %w", err)
	}
	for i := range resets {
		k := &resets[i]
		var v tcpspanResetStorm
		if ok, err := t.take(t.objs.ResetStorms, k, &v); err != nil {
			return fmt.Errorf("take from reset_storms: %w", err)
		} else if !ok || v.Count == 0 {
			continue // gone, or a window with its example only
		}
		r := FoldedResets{Reason: k.Reason, Count: v.Count, FirstNs: v.FirstNs, LastNs: v.LastNs}
		r.Tuple.Saddr, r.Tuple.Daddr, r.Tuple.Netns = k.Saddr, k.Daddr, k.Netns
		r.Tuple.Sport, r.Tuple.Family = k.Sport, k.Family
		h.HandleFoldedResets(&r)
	}
	var refused []tcpspanRefusedStormKey
	err = walkKeys(t.objs.RefusedStorms, func(k *tcpspanRefusedStormKey) {
		if all || k.Window < ended {
			refused = append(refused, *k)
		}
	})
	if err != nil {
		return fmt.Errorf("walk refused_storms: %w", err)
	}
	var v tcpspanRefusedStorm // one entry at a time: 600 bytes
	for i := range refused {
		if ok, err := t.take(t.objs.RefusedStorms, &refused[i], &v); err != nil {
			return fmt.Errorf("take from refused_storms: %w", err)
		} else if !ok || v.Count == 0 {
			continue
		}
		h.HandleFoldedConns(&FoldedConns{Count: v.Count, LastNs: v.LastNs, First: v.First})
	}
	return nil
}

// walkKeys calls fn with each key of m.
func walkKeys[K any](m *ebpf.Map, fn func(*K)) error {
	var key, next K
	err := m.NextKey(nil, &next)
	for err == nil {
		key = next
		fn(&key)
		err = m.NextKey(&key, &next)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// take reads and deletes one entry, in one step where the kernel can (hash
// maps since 5.14), so that nothing is counted in between; it reports
// false if the entry is gone. Before 5.14 it reads, then deletes: only
// windows that have ended are taken while the kernel runs, so nothing is
// counted in them any more.
func (t *Tracer) take(m *ebpf.Map, k, v any) (bool, error) {
	if !t.noLookupAndDelete {
		err := m.LookupAndDelete(k, v)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return false, nil
		case !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.EINVAL):
			return false, err
		}
		t.noLookupAndDelete = true
	}
	if err := m.Lookup(k, v); errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, err
	}
	return true, nil
}
