package e2e

import (
	"bytes"
	"os/exec"
	"testing"
)

// TestConsoleFilter: what the kernel matrix prints of a VM's console
// (scripts/console-plain.sh) leaves the terminal as it was. The input is
// what SeaBIOS and the kernel wrote on this machine's qemu console, plus
// the other kinds of sequence a console may carry.
func TestConsoleFilter(t *testing.T) {
	in := "\x1bc\x1b[?7l\x1b[2JTCPSPAN-MATRIX-KERNEL: 6.12.118\r\n" +
		"\x1b[0m--- PASS: TestKernelFeatures (1.53s)\r\n" +
		"\x1b]0;title\x07\x1b(Bcolour \x1b[1;31mred\x1b[m\tand a bell\x07\n"
	want := "TCPSPAN-MATRIX-KERNEL: 6.12.118\n--- PASS: TestKernelFeatures (1.53s)\ncolour red\tand a bell\n"
	cmd := exec.Command("../scripts/console-plain.sh")
	cmd.Stdin = bytes.NewBufferString(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("console-plain.sh: %v", err)
	}
	if string(out) != want {
		t.Errorf("console-plain.sh:\n%q\nwant\n%q", out, want)
	}
	for _, b := range out {
		if b < 0x20 && b != '\n' && b != '\t' || b == 0x7f {
			t.Errorf("control byte %#x left in %q", b, out)
		}
	}
}
