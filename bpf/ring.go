//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The ring buffer's record header, from include/uapi/linux/bpf.h
// (BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ) and
// 'struct bpf_ringbuf_hdr' in kernel/bpf/ringbuf.c: a u32 length whose two
// top bits are flags, then a u32 page offset that only the kernel uses.
const (
	ringBusyBit    = 1 << 31 // still being written: stop, and read it later
	ringDiscardBit = 1 << 30 // discarded by the program: skip it
	ringHeaderSize = 8
)

var (
	// errRingEmpty: no committed record is pending, either none at all or
	// the next one is still being written.
	errRingEmpty = errors.New("ring buffer empty")
	// errSampleTooLong: a record longer than the caller's buffer was
	// skipped.
	errSampleTooLong = errors.New("ring buffer sample longer than the buffer")
)

// ringReader consumes a BPF ring buffer ([ebpf.RingBuf]) through one
// mapping of its data area.
//
// It exists for RSS. The kernel lets a ring buffer's data pages be mapped
// twice in a row, so that a record wrapping past the end reads as one
// piece, and cilium/ebpf's ringbuf.Reader maps both copies. The kernel
// populates the whole mapping at mmap time (remap_vmalloc_range), so each
// copy counts in the agent's RSS, though the pages exist once: 32 MiB for
// the default 16 MiB ring, 33 of an idle agent's 52 MB. ringReader maps
// the data area once and copies a record that wraps in its two pieces; it
// copies every record out anyway, into the caller's buffer, so that the
// space is released before the record is handled.
//
// read and Close may be called from different goroutines: a mutex keeps
// Close from unmapping the memory while a record is copied out.
type ringReader struct {
	mu     sync.Mutex
	closed bool
	consPg []byte // consumer position page, read-write
	dataPg []byte // producer position page, then the data area, read-only
	ring   ringConsumer
}

// newRingReader maps the ring buffer m: its consumer page read-write, then
// its producer page and data area read-only, once.
func newRingReader(m *ebpf.Map) (*ringReader, error) {
	if m.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("map %v is not a ring buffer", m)
	}
	page := os.Getpagesize()
	size := int(m.MaxEntries())
	if size <= 0 || size&(size-1) != 0 || size%page != 0 {
		return nil, fmt.Errorf("ring buffer size %d is not a power of two multiple of the page size", size)
	}
	cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap ring buffer consumer page: %w", err)
	}
	// page+size, not page+2*size: the data area's second copy is what this
	// type is for not mapping.
	data, err := unix.Mmap(m.FD(), int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("mmap ring buffer data: %w", err)
	}
	return &ringReader{
		consPg: cons,
		dataPg: data,
		ring: newRingConsumer(
			(*uintptr)(unsafe.Pointer(&cons[0])),
			(*uintptr)(unsafe.Pointer(&data[0])),
			data[page:]),
	}, nil
}

// read copies the next record's sample into buf and returns it (buf[:n],
// with buf's capacity). It returns [errRingEmpty] when no committed record
// is pending, [errSampleTooLong] when it skipped one longer than cap(buf),
// and [os.ErrClosed] after Close.
func (r *ringReader) read(buf []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, os.ErrClosed
	}
	return r.ring.next(buf)
}

// Close unmaps the ring buffer. It waits for a read under way; reads after
// it return [os.ErrClosed].
func (r *ringReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.ring = ringConsumer{}
	return errors.Join(unix.Munmap(r.dataPg), unix.Munmap(r.consPg))
}

// ringConsumer is the consumer's side of the protocol of kernel/bpf/ringbuf.c,
// over memory laid out as the kernel lays it out: positions that only grow
// (wrapping at the word size), and records at data[pos&mask], each an
// 8-byte header and the sample, padded to 8 bytes. Headers are 8-aligned
// and so never wrap; a sample may run past the end of data and continue at
// its start. It touches the memory only through its pointers, so a test can
// hand it a byte slice.
type ringConsumer struct {
	// cons and prod point to the kernel's consumer_pos and producer_pos:
	// unsigned long, the word size.
	cons, prod *uintptr
	data       []byte // the data area, once; its length a power of two
	mask       uintptr
}

func newRingConsumer(cons, prod *uintptr, data []byte) ringConsumer {
	return ringConsumer{cons: cons, prod: prod, data: data, mask: uintptr(len(data) - 1)}
}

// next copies the next committed record's sample into buf and returns it,
// releasing the record's space to the kernel. It skips discarded records,
// and a record longer than cap(buf), which it reports with
// [errSampleTooLong]. It stops at a record still being written
// ([errRingEmpty]): the ones after it wait for it, in order.
//
// The consumer position is stored after each record, as libbpf does: the
// record's space goes back to the kernel as soon as it is copied out, not
// after the whole drain and its handlers, and the pending size the BPF
// side reads to batch wake-ups (BPF_RB_AVAIL_DATA) is the reader's real
// backlog. It costs one store per record to a line the producers read.
func (c *ringConsumer) next(buf []byte) ([]byte, error) {
	// Only this side writes cons; prod is read with acquire semantics
	// (sync/atomic's are stronger), pairing with the kernel's
	// smp_store_release in __bpf_ringbuf_reserve, so that the header it
	// wrote before is visible.
	cons := atomic.LoadUintptr(c.cons)
	prod := atomic.LoadUintptr(c.prod)
	for cons != prod {
		pending := prod - cons
		if pending < ringHeaderSize {
			return nil, fmt.Errorf("%d bytes pending, less than a record header: %w", pending, io.ErrUnexpectedEOF)
		}
		// The header's length is read atomically too: the kernel commits a
		// record by clearing the busy bit with xchg, after writing the
		// sample, so a length without it means the sample is all there.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&c.data[cons&c.mask])))
		if hdr&ringBusyBit != 0 {
			return nil, errRingEmpty
		}
		n := uintptr(hdr &^ (ringBusyBit | ringDiscardBit))
		span := (n + ringHeaderSize + 7) &^ 7
		if span > pending {
			return nil, fmt.Errorf("record of %d bytes at position %d, only %d pending: %w", n, cons, pending, io.ErrUnexpectedEOF)
		}
		start := (cons + ringHeaderSize) & c.mask
		cons += span
		switch {
		case hdr&ringDiscardBit != 0:
			atomic.StoreUintptr(c.cons, cons)
			continue
		case n > uintptr(cap(buf)):
			atomic.StoreUintptr(c.cons, cons)
			return nil, errSampleTooLong
		}
		sample := buf[:n]
		// The part up to the end of the data area, then what wrapped to
		// its start (nothing, for most records).
		k := copy(sample, c.data[start:])
		copy(sample[k:], c.data)
		atomic.StoreUintptr(c.cons, cons)
		return sample, nil
	}
	return nil, errRingEmpty
}
