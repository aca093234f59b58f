package bpf

import (
	"testing"
	"unsafe"
)

func record[T any](kind uint32, fill func(*T)) []byte {
	var v T
	fill(&v)
	b := make([]byte, unsafe.Sizeof(v))
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&v)), len(b)))
	*(*uint32)(unsafe.Pointer(&b[0])) = kind
	return b
}

func connBytes() []byte {
	return record(kindConn, func(c *ConnRecord) {
		c.Side, c.EventsSeen, c.Tuple.Sport, c.Tuple.Dport = SideClient, 3, 41234, 80
		c.Events[0].Type = uint8(EventState)
	})
}

func orphanBytes() []byte {
	return record(kindOrphan, func(o *OrphanRecord) {
		o.Ev.Type, o.Ev.Arg, o.Tuple.Sport = uint8(EventRSTSent), 1, 9999
	})
}

func TestDecode(t *testing.T) {
	c, o, err := Decode(connBytes())
	if err != nil || o != nil || c == nil || c.Side != SideClient || c.Tuple.Sport != 41234 || c.EventsSeen != 3 {
		t.Fatalf("conn: %+v %v %v", c, o, err)
	}
	c, o, err = Decode(orphanBytes())
	if err != nil || c != nil || o == nil || o.Ev.Type != uint8(EventRSTSent) || o.Tuple.Sport != 9999 {
		t.Fatalf("orphan: %+v %v %v", o, c, err)
	}
	for _, b := range [][]byte{nil, {1}, connBytes()[:100], orphanBytes()[:8], {7, 0, 0, 0}} {
		if c, o, err := Decode(b); err == nil || c != nil || o != nil {
			t.Errorf("Decode(%d bytes) accepted", len(b))
		}
	}
}

// shortConn is a connection record as the kernel sends it: the fixed part
// and the events it holds, in a buffer of capacity capacity.
func shortConn(events, capacity int) []byte {
	full := connBytes()
	n := connFixedBytes + events*connEventBytes
	b := make([]byte, n, max(n, capacity))
	copy(b, full[:n])
	return b
}

func TestDecodeShortConn(t *testing.T) {
	b := shortConn(3, RecordBufferBytes)
	// Leftovers of a longer record read earlier into the same buffer.
	for i := range b[len(b):cap(b)] {
		b[:cap(b)][len(b)+i] = 0xaa
	}
	c, o, err := Decode(b)
	if err != nil || o != nil || c == nil || c.Side != SideClient || c.Tuple.Dport != 80 || c.Events[0].Type != uint8(EventState) {
		t.Fatalf("short conn: %+v %v %v", c, o, err)
	}
	for i := 3; i < MaxConnEvents; i++ {
		if c.Events[i] != (ConnRecord{}).Events[i] {
			t.Errorf("event slot %d not cleared: %+v", i, c.Events[i])
		}
	}
	for _, b := range [][]byte{
		shortConn(2, RecordBufferBytes), // fewer events than it says it has
		shortConn(3, 0),                 // no room to complete it
		shortConn(0, RecordBufferBytes)[:connFixedBytes-1],
	} {
		if c, o, err := Decode(b); err == nil || c != nil || o != nil {
			t.Errorf("Decode(%d bytes, capacity %d) accepted", len(b), cap(b))
		}
	}
	// More events seen than kept: the kernel sends MaxConnEvents of them.
	full := connBytes()
	(*ConnRecord)(unsafe.Pointer(&full[0])).EventsSeen = uint32(MaxConnEvents + 5)
	if c, _, err := Decode(full); err != nil || c.EventsSeen != uint32(MaxConnEvents+5) {
		t.Errorf("full record with %d events seen: %v", MaxConnEvents+5, err)
	}
}

// FuzzDecode feeds arbitrary bytes to the ring-buffer decoder: it must
// reject or decode, never panic or read past the record.
func FuzzDecode(f *testing.F) {
	f.Add(connBytes())
	f.Add(orphanBytes())
	f.Add(shortConn(3, 0))
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Records in the ring buffer are 8-byte aligned; so is a copy.
		// As the reader does, leave room to complete a short record.
		aligned := make([]uint64, (max(len(b), RecordBufferBytes)+7)/8)
		buf := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(aligned))), len(aligned)*8)[:len(b)]
		copy(buf, b)
		c, o, err := Decode(buf)
		switch {
		case err != nil && (c != nil || o != nil):
			t.Fatal("error with a record")
		case err == nil && (c == nil) == (o == nil):
			t.Fatal("not exactly one record")
		case c != nil:
			_ = c.Events[MaxConnEvents-1].TsNs // within the buffer
		case o != nil:
			_ = o.OwnerComm[15]
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	rec := connBytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(rec); err != nil {
			b.Fatal(err)
		}
	}
}
