package bpf

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// fakeRing is the kernel's side of a ring buffer in ordinary memory, laid
// out as kernel/bpf/ringbuf.c lays it out, for ringConsumer to read.
type fakeRing struct {
	t          *testing.T
	cons, prod uintptr
	data       []byte // 8-aligned, as the kernel's pages are
	mask       uintptr
}

func newFakeRing(t *testing.T, size int, start uintptr) *fakeRing {
	words := make([]uint64, size/8)
	data := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
	// Garbage wherever nothing was written, so that a copy from the
	// wrong place shows.
	for i := range data {
		data[i] = 0xee
	}
	return &fakeRing{t: t, cons: start, prod: start, data: data, mask: uintptr(size - 1)}
}

func (f *fakeRing) consumer() ringConsumer { return newRingConsumer(&f.cons, &f.prod, f.data) }

// reserve writes a busy header for an n-byte sample at the producer
// position, moves the producer past the record and returns the record's
// position, as __bpf_ringbuf_reserve does.
func (f *fakeRing) reserve(n int) uintptr {
	f.t.Helper()
	pos := f.prod
	next := pos + (uintptr(n)+ringHeaderSize+7)&^7
	if next-f.cons > f.mask {
		f.t.Fatalf("fake ring full: record of %d bytes at %d, consumer at %d", n, pos, f.cons)
	}
	off := pos & f.mask
	binary.NativeEndian.PutUint32(f.data[off:], uint32(n)|ringBusyBit)
	binary.NativeEndian.PutUint32(f.data[off+4:], 0x12345678) // page offset
	f.prod = next
	return pos
}

// fill writes the sample of the record at pos, wrapping as it must.
func (f *fakeRing) fill(pos uintptr, sample []byte) {
	for i, b := range sample {
		f.data[(pos+ringHeaderSize+uintptr(i))&f.mask] = b
	}
}

// commit clears the busy bit, setting the discard bit if asked.
func (f *fakeRing) commit(pos uintptr, discard bool) {
	off := pos & f.mask
	l := binary.NativeEndian.Uint32(f.data[off:]) &^ ringBusyBit
	if discard {
		l |= ringDiscardBit
	}
	binary.NativeEndian.PutUint32(f.data[off:], l)
}

func (f *fakeRing) output(sample []byte) uintptr {
	f.t.Helper()
	pos := f.reserve(len(sample))
	f.fill(pos, sample)
	f.commit(pos, false)
	return pos
}

// sampleBytes is sample number seq, n bytes that differ from every other
// sample's.
func sampleBytes(seq, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seq*31 + i*7 + 1)
	}
	return b
}

// sampleDiff describes how got differs from want: the lengths, and the
// first byte that differs with a few after it.
func sampleDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("%d bytes, want %d; from byte %d got %x, want %x",
		len(got), len(want), i, got[i:min(i+16, len(got))], want[i:min(i+16, len(want))])
}

func wantSample(t *testing.T, c *ringConsumer, buf, want []byte) {
	t.Helper()
	got, err := c.next(buf)
	if err != nil {
		t.Fatalf("next: %v; want a sample of %d bytes", err, len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("sample: %s", sampleDiff(got, want))
	}
	if cap(got) != cap(buf) || (len(got) > 0 && &got[0] != &buf[:1][0]) {
		t.Fatalf("sample not in the caller's buffer (cap %d, buffer's %d)", cap(got), cap(buf))
	}
}

func wantErr(t *testing.T, c *ringConsumer, buf []byte, want error) {
	t.Helper()
	if got, err := c.next(buf); !errors.Is(err, want) {
		t.Fatalf("next: %d bytes, error %v; want %v", len(got), err, want)
	}
}

// The consumer reads what the kernel lays out: in order, skipping discarded
// records, stopping at a busy one, copying a sample that wraps past the end
// of the data area in its two pieces, and skipping one longer than the
// buffer. Positions start near the top of the word, so that they wrap too.
func TestRingConsumer(t *testing.T) {
	for _, start := range []uintptr{0, ^uintptr(0) - 63} { // 8-aligned
		f := newFakeRing(t, 64, start)
		c := f.consumer()
		buf := make([]byte, 0, 40)

		wantErr(t, &c, buf, errRingEmpty)

		// Offsets 0, 16 and 40; 56 bytes, as much as fits: the kernel
		// keeps the producer less than the ring's size ahead.
		a, b, d := sampleBytes(1, 5), sampleBytes(2, 10), sampleBytes(3, 5)
		f.output(a)
		f.commit(f.output(b), true)
		f.output(d)
		wantSample(t, &c, buf, a)
		wantSample(t, &c, buf, d) // b discarded
		wantErr(t, &c, buf, errRingEmpty)
		if f.cons != f.prod || f.prod != start+56 {
			t.Fatalf("consumer at %d, producer at %d; want both at %d", f.cons, f.prod, start+56)
		}

		// A header in the last 8 bytes (offset 56): its sample starts at
		// offset 0. Then a 36-byte sample from offset 32 (header at 24):
		// 32 bytes up to the end, 4 at the start.
		e, w := sampleBytes(4, 20), sampleBytes(5, 36)
		f.output(e)
		wantSample(t, &c, buf, e)
		f.output(w)
		wantSample(t, &c, buf, w)

		// Offset 8. A busy record stops the drain, and the committed one
		// behind it waits for it.
		g, h, k := sampleBytes(6, 8), sampleBytes(7, 3), sampleBytes(8, 1)
		f.output(g)
		busy := f.reserve(len(h))
		f.fill(busy, h)
		f.output(k)
		wantSample(t, &c, buf, g)
		wantErr(t, &c, buf, errRingEmpty)
		wantErr(t, &c, buf, errRingEmpty)
		if f.cons != busy {
			t.Fatalf("consumer at %d, want it at the busy record, %d", f.cons, busy)
		}
		f.commit(busy, false)
		wantSample(t, &c, buf, h)
		wantSample(t, &c, buf, k)

		// Longer than the buffer's capacity: skipped, and the next one read.
		long, after := sampleBytes(9, 41), sampleBytes(10, 2)
		f.output(long)
		wantErr(t, &c, buf, errSampleTooLong)
		if f.cons != f.prod {
			t.Fatalf("consumer at %d, producer at %d: the long sample was not skipped", f.cons, f.prod)
		}
		f.output(after)
		wantSample(t, &c, buf, after)
		wantErr(t, &c, buf, errRingEmpty)
		if f.cons != f.prod {
			t.Fatalf("consumer at %d, producer at %d after the drain", f.cons, f.prod)
		}
	}
}

// Positions that cannot come from the kernel are an error, not a read past
// what the producer published.
func TestRingConsumerCorrupt(t *testing.T) {
	f := newFakeRing(t, 64, 0)
	c := f.consumer()
	buf := make([]byte, 0, 64)
	f.prod = 4
	wantErr(t, &c, buf, io.ErrUnexpectedEOF)
	f.prod = 16
	binary.NativeEndian.PutUint32(f.data, 20) // a 20-byte sample in 16 bytes
	wantErr(t, &c, buf, io.ErrUnexpectedEOF)
	if f.cons != 0 {
		t.Fatalf("consumer moved to %d", f.cons)
	}
}

// A long run of records of many sizes through a small ring, drained in
// batches of varying length, every byte checked.
func TestRingConsumerSequence(t *testing.T) {
	const size = 256
	f := newFakeRing(t, size, ^uintptr(0)-4095)
	c := f.consumer()
	buf := make([]byte, 0, 200)
	sizes := []int{0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 100, 150, 199, 200, 201, 3}
	var pending [][]byte
	wrapped, seq := 0, 0
	for batch := 0; batch < 500; batch++ {
		for i := 0; i <= batch%4; i++ {
			n := sizes[seq%len(sizes)]
			span := uintptr(n+ringHeaderSize+7) &^ 7
			if f.prod+span-f.cons > f.mask {
				break
			}
			if start := (f.prod + ringHeaderSize) & f.mask; int(start)+n > size {
				wrapped++
			}
			s := sampleBytes(seq, n)
			f.output(s)
			pending = append(pending, s)
			seq++
		}
		for _, s := range pending {
			if len(s) > cap(buf) {
				wantErr(t, &c, buf, errSampleTooLong)
				continue
			}
			wantSample(t, &c, buf, s)
		}
		pending = pending[:0]
		wantErr(t, &c, buf, errRingEmpty)
	}
	if wrapped < 50 {
		t.Fatalf("%d of %d samples wrapped past the end; want at least 50", wrapped, seq)
	}
	t.Logf("%d records, %d wrapped", seq, wrapped)
}

// ringTestMax is the longest sample a ringWriter writes; ringTestDiscard
// as a length makes it reserve a record and discard it.
const (
	ringTestMax     = 2000
	ringTestDiscard = 0xffff
)

// ringWriter writes chosen records to a ring buffer from BPF, through
// BPF_PROG_TEST_RUN of an XDP program that passes a sample staged in an
// array map to bpf_ringbuf_output. (The helper takes no packet pointer.)
type ringWriter struct {
	t     *testing.T
	prog  *ebpf.Program
	stage *ebpf.Map // one value: a native u32 length, then the sample
}

func newRingWriter(t *testing.T, rb *ebpf.Map) *ringWriter {
	t.Helper()
	stage, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4 + ringTestMax, MaxEntries: 1})
	if err != nil {
		t.Fatalf("create staging map: %v", err)
	}
	t.Cleanup(func() { stage.Close() })
	insns := asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, stage.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "refused"),
		asm.Mov.Reg(asm.R6, asm.R0),
		asm.LoadMem(asm.R5, asm.R6, 0, asm.Word),
		asm.JEq.Imm(asm.R5, ringTestDiscard, "discard"),
		asm.JGT.Imm(asm.R5, ringTestMax, "refused"),
		asm.LoadMapPtr(asm.R1, rb.FD()),
		asm.Mov.Reg(asm.R2, asm.R6),
		asm.Add.Imm(asm.R2, 4),
		asm.Mov.Reg(asm.R3, asm.R5),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.JNE.Imm(asm.R0, 0, "refused"),
		asm.Mov.Imm(asm.R0, 2), // XDP_PASS: written
		asm.Return(),

		asm.LoadMapPtr(asm.R1, rb.FD()).WithSymbol("discard"),
		asm.Mov.Imm(asm.R2, 24),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "refused"),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRingbufDiscard.Call(),
		asm.Mov.Imm(asm.R0, 2),
		asm.Return(),

		asm.Mov.Imm(asm.R0, 0).WithSymbol("refused"), // XDP_ABORTED: full
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatalf("load ring buffer test program: %+v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return &ringWriter{t: t, prog: prog, stage: stage}
}

// output writes sample (or, with discard, a discarded record) and reports
// whether the ring buffer took it.
func (w *ringWriter) output(sample []byte, discard bool) bool {
	w.t.Helper()
	v := make([]byte, 4+ringTestMax)
	n := uint32(len(sample))
	if discard {
		n = ringTestDiscard
	}
	binary.NativeEndian.PutUint32(v, n)
	copy(v[4:], sample)
	if err := w.stage.Put(uint32(0), v); err != nil {
		w.t.Fatalf("stage sample: %v", err)
	}
	ret, err := w.prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)})
	if err != nil {
		w.t.Fatalf("run ring buffer test program: %v", err)
	}
	return ret == 2
}

func newRingMap(t *testing.T, size uint32) *ebpf.Map {
	t.Helper()
	// Before 5.11 BPF maps count against RLIMIT_MEMLOCK, as Load knows.
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock limit: %v", err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ring_test", Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		t.Fatalf("create ring buffer: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Records the kernel writes to a one-page ring buffer come out whole and in
// order, through many wrap-arounds, with samples split across the end;
// a full ring refuses records until the reader drains, which only works if
// the reader hands the space back.
func TestRingReaderKernel(t *testing.T) {
	testutil.RequireBPF(t)
	const size = 4096
	rb := newRingMap(t, size)
	w := newRingWriter(t, rb)
	r, err := newRingReader(rb)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	buf := make([]byte, 0, ringTestMax)
	sizes := []int{0, 1, 7, 8, 9, 64, 100, 567, 568, 1000, 1499, ringTestMax, 3, 250, 1234, 13}
	var (
		pos                    uintptr // where the next record goes
		seq, wrapped, refusals int
		pending                [][]byte
	)
	for batch := 0; pos < 16*size; batch++ {
		if batch > 1000 {
			t.Fatalf("%d batches for %d bytes: the ring buffer refuses records after draining", batch, pos)
		}
		// Write until the ring buffer is full, or a few records.
		for len(pending) < 1+batch%9 {
			if seq%5 == 4 && w.output(nil, true) {
				pos += 32 // a discarded 24-byte sample
			}
			n := sizes[seq%len(sizes)]
			s := sampleBytes(seq, n)
			if !w.output(s, false) {
				refusals++
				break
			}
			if start := (pos + ringHeaderSize) & (size - 1); int(start)+n > size {
				wrapped++
			}
			pos += uintptr(n+ringHeaderSize+7) &^ 7
			pending = append(pending, s)
			seq++
		}
		if len(pending) == 0 {
			t.Fatalf("batch %d: the ring buffer took no record after a drain", batch)
		}
		for i, want := range pending {
			got, err := r.read(buf)
			if err != nil {
				t.Fatalf("batch %d, record %d of %d: %v", batch, i, len(pending), err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("batch %d, record %d of %d: %s", batch, i, len(pending), sampleDiff(got, want))
			}
		}
		if got, err := r.read(buf); !errors.Is(err, errRingEmpty) {
			t.Fatalf("batch %d: after its %d records, %d bytes and %v; want %v", batch, len(pending), len(got), err, errRingEmpty)
		}
		if cons := *r.ring.cons; cons != pos {
			t.Fatalf("batch %d: consumer position %d, want %d", batch, cons, pos)
		}
		pending = pending[:0]
	}
	if wrapped < 5 || refusals == 0 {
		t.Fatalf("%d samples wrapped, %d refused by a full ring; want some of each", wrapped, refusals)
	}
	t.Logf("%d records, %d bytes, %d wrapped, %d writes refused by a full ring", seq, pos, wrapped, refusals)

	// A sample longer than the buffer is skipped, and the next one read.
	if !w.output(sampleBytes(1, 100), false) || !w.output(sampleBytes(2, 10), false) {
		t.Fatal("ring buffer refused a record after a full drain")
	}
	if _, err := r.read(make([]byte, 0, 99)); !errors.Is(err, errSampleTooLong) {
		t.Fatalf("100-byte sample into a 99-byte buffer: %v, want %v", err, errSampleTooLong)
	}
	if got, err := r.read(buf); err != nil || !bytes.Equal(got, sampleBytes(2, 10)) {
		t.Fatalf("after the skipped sample: %x, %v", got, err)
	}
}

// bpfMapMappings sums the process's mappings of BPF maps from
// /proc/self/smaps, in kB, and returns the data mapping that starts at addr.
func bpfMapMappings(t *testing.T, addr uintptr) (count, sizeKB int, at map[string]int) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in, atAddr := false, false
	at = map[string]int{}
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && len(fields) >= 5 && !strings.HasSuffix(fields[0], ":") {
			// 7f2c...-7f2c... r--s 00001000 00:0f 1051 anon_inode:bpf-map
			in = len(fields) >= 6 && fields[5] == "anon_inode:bpf-map"
			lo, _ := strconv.ParseUint(strings.SplitN(fields[0], "-", 2)[0], 16, 64)
			atAddr = in && uintptr(lo) == addr
			if in {
				count++
			}
			continue
		}
		if !in || len(fields) < 2 {
			continue
		}
		v, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		if fields[0] == "Size:" {
			sizeKB += v
		}
		if atAddr {
			at[strings.TrimSuffix(fields[0], ":")] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return count, sizeKB, at
}

// The reader maps the ring buffer's data area once: a 1 MiB ring costs the
// process 1 MiB and two pages of mappings, not 2 MiB, and all of it is
// resident, as the kernel populates it at mmap time.
func TestRingReaderMapsDataOnce(t *testing.T) {
	testutil.RequireBPF(t)
	const size = 1 << 20
	page := os.Getpagesize()
	rb := newRingMap(t, size)
	count0, size0, _ := bpfMapMappings(t, 0)
	r, err := newRingReader(rb)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	addr := uintptr(unsafe.Pointer(&r.dataPg[0]))
	count, sizeKB, data := bpfMapMappings(t, addr)
	if count-count0 != 2 {
		t.Errorf("%d new mappings of BPF maps, want 2 (consumer page, data)", count-count0)
	}
	if want := (page + page + size) / 1024; sizeKB-size0 != want {
		t.Errorf("mappings of BPF maps grew by %d kB, want %d kB (two pages and the data area once)", sizeKB-size0, want)
	}
	if want := (page + size) / 1024; data["Size"] != want || data["Rss"] != want {
		t.Errorf("data mapping at %#x: Size %d kB, Rss %d kB; want both %d kB", addr, data["Size"], data["Rss"], want)
	}
	t.Logf("data mapping: %v", data)
	if err := r.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if count, sizeKB, _ := bpfMapMappings(t, 0); count != count0 || sizeKB != size0 {
		t.Errorf("after Close: %d mappings, %d kB; want %d, %d kB", count, sizeKB, count0, size0)
	}
}

// Close while another goroutine reads in a loop: the reads stop with
// os.ErrClosed and never touch the unmapped memory (which would fault).
func TestRingReaderCloseWhileReading(t *testing.T) {
	testutil.RequireBPF(t)
	rb := newRingMap(t, 4096)
	w := newRingWriter(t, rb)
	for round := 0; round < 20; round++ {
		// Records to copy out while Close comes, as many as fit.
		for i := 0; i < 30; i++ {
			if !w.output(sampleBytes(i, 90), false) {
				break
			}
		}
		r, err := newRingReader(rb)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		started := make(chan struct{}, len(errs))
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 0, 128)
				for n := 0; ; n++ {
					if n == 100 {
						started <- struct{}{}
					}
					if _, err := r.read(buf); err != nil && !errors.Is(err, errRingEmpty) {
						errs[i] = err
						return
					}
				}
			}()
		}
		for range errs {
			<-started
		}
		if err := r.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("round %d, reader %d: %v, want %v", round, i, err, os.ErrClosed)
			}
		}
	}
}

// Closing the Tracer while Read runs ends Read without an error.
func TestReaderReturnsOnClose(t *testing.T) {
	testutil.RequireBPF(t)
	ns := testutil.NewNetNS(t)
	tr, err := Load(WithNetns(ns.Inode), WithPollIntervals(time.Millisecond, 2*time.Millisecond))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Read(context.Background(), nopHandler{}) }()
	time.Sleep(100 * time.Millisecond)
	if n := tr.drains.Load(); n < 5 {
		t.Fatalf("%d drains in 100 ms", n)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still running 2 s after Close")
	}
}

type nopHandler struct{}

func (nopHandler) HandleConn(*ConnRecord)           {}
func (nopHandler) HandleOrphan(*OrphanRecord)       {}
func (nopHandler) HandleFoldedResets(*FoldedResets) {}
func (nopHandler) HandleFoldedConns(*FoldedConns)   {}

func (nopHandler) HandleTraceparent(*TraceparentRecord) {}
