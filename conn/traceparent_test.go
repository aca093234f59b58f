package conn

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestParseTraceparent(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		value string
		err   error
	}{
		{good, nil},
		{" " + good + "\t", nil}, // optional whitespace
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", nil},       // not sampled
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", nil}, // a later version may add fields
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", nil},
		{"", ErrTraceparentTruncated},
		{good[:40], ErrTraceparentTruncated}, // split across packets, cut by the kernel side
		{good[:54], ErrTraceparentTruncated},
		{good + "-extra", ErrTraceparentMalformed}, // version 00 has exactly four fields
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", ErrTraceparentMalformed},
		{strings.ToUpper(good), ErrTraceparentMalformed}, // lowercase hex only
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrTraceparentMalformed},
		{"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", ErrTraceparentMalformed},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z", ErrTraceparentMalformed},
		{"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrTraceparentMalformed},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrTraceparentInvalid},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ErrTraceparentInvalid},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ErrTraceparentInvalid},
		{strings.Repeat("0", 64), ErrTraceparentMalformed}, // oversized, no dashes
	} {
		trace, span, flags, err := ParseTraceparent([]byte(tc.value))
		if !errors.Is(err, tc.err) {
			t.Errorf("%q: error %v, want %v", tc.value, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		v := strings.TrimSpace(tc.value)
		if hex.EncodeToString(trace[:]) != v[3:35] || hex.EncodeToString(span[:]) != v[36:52] || flags != map[byte]byte{'0': 0, '1': 1}[v[54]] {
			t.Errorf("%q: parsed %x %x %x", tc.value, trace, span, flags)
		}
	}
}

// FuzzParseTraceparent: any value either parses into non-zero ids that
// print back as the value's fields, or fails with one of the errors.
func FuzzParseTraceparent(f *testing.F) {
	f.Add([]byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	f.Add([]byte("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"))
	f.Add([]byte("  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"))
	f.Fuzz(func(t *testing.T, value []byte) {
		trace, span, _, err := ParseTraceparent(value)
		if err != nil {
			if !errors.Is(err, ErrTraceparentTruncated) && !errors.Is(err, ErrTraceparentMalformed) && !errors.Is(err, ErrTraceparentInvalid) {
				t.Fatalf("%q: unexpected error %v", value, err)
			}
			return
		}
		if trace == [16]byte{} || span == [8]byte{} {
			t.Fatalf("%q: zero id accepted", value)
		}
		v := string(trimBlanks(value))
		if v[3:35] != hex.EncodeToString(trace[:]) || v[36:52] != hex.EncodeToString(span[:]) {
			t.Fatalf("%q: ids %x %x do not print back", value, trace, span)
		}
	})
}
