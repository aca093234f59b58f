//go:build linux

package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// KernelNames resolves the kernel's reason numbers to names. The numbers
// change between kernels (SKB_DROP_REASON_TCP_RESET is 28 on 6.1 and 45 on
// 6.18), so they are read from the running kernel, never from a table.
type KernelNames struct {
	resetReasons map[uint32]string
	dropReasons  map[uint32]string
	// ResetSource and DropSource say where the names came from: "btf",
	// "tracefs" or "" when the kernel has none.
	ResetSource string
	DropSource  string
}

// ResetReason names an sk_rst_reason value, without its SK_RST_REASON_
// prefix (e.g. "TCP_ABORT_ON_CLOSE"). Unknown values read "UNKNOWN(n)".
func (n *KernelNames) ResetReason(v uint32) string {
	if name, ok := n.resetReasons[v]; ok {
		return name
	}
	return fmt.Sprintf("UNKNOWN(%d)", v)
}

// DropReason names an skb_drop_reason value, without its SKB_DROP_REASON_
// prefix (e.g. "TCP_LISTEN_OVERFLOW").
func (n *KernelNames) DropReason(v uint32) string {
	if name, ok := n.dropReasons[v]; ok {
		return name
	}
	return fmt.Sprintf("UNKNOWN(%d)", v)
}

// dropReasonValue returns the value of a drop reason name, if the kernel has it.
func (n *KernelNames) dropReasonValue(name string) (uint32, bool) {
	for v, s := range n.dropReasons {
		if s == name {
			return v, true
		}
	}
	return 0, false
}

// kernelNames reads the reason names from the kernel's BTF, and from the
// tracepoints' format files in tracefs only where a tracepoint carries a
// reason whose enum the BTF lacks: tracefs is mounted (EnsureTracefs) for
// that fallback alone. Failing to mount it leaves those names unknown.
func kernelNames(spec *btf.Spec, protos prototypes) (*KernelNames, error) {
	n, err := NewKernelNames(spec, mountedTracefs())
	if err != nil {
		return nil, err
	}
	if (protos.rstReason && n.ResetSource == "") || (protos.kfreeReason && n.DropSource == "") {
		if dir, err := EnsureTracefs(); err == nil {
			return NewKernelNames(spec, dir)
		}
	}
	return n, nil
}

// NewKernelNames builds the names from a kernel BTF spec, falling back to
// the tracefs format files of tcp_send_reset and kfree_skb when BTF lacks an
// enum. tracefsDir may be empty to skip the fallback.
func NewKernelNames(spec *btf.Spec, tracefsDir string) (*KernelNames, error) {
	n := &KernelNames{}
	var err error
	n.resetReasons, err = enumNames(spec, "sk_rst_reason", "SK_RST_REASON_")
	if err != nil {
		return nil, err
	}
	if n.resetReasons != nil {
		n.ResetSource = "btf"
	} else if tracefsDir != "" {
		n.resetReasons, _ = formatSymbols(tracefsDir+"/events/tcp/tcp_send_reset/format", "reason")
		if n.resetReasons != nil {
			n.ResetSource = "tracefs"
		}
	}
	n.dropReasons, err = enumNames(spec, "skb_drop_reason", "SKB_DROP_REASON_")
	if err != nil {
		return nil, err
	}
	if n.dropReasons != nil {
		n.DropSource = "btf"
	} else if tracefsDir != "" {
		n.dropReasons, _ = formatSymbols(tracefsDir+"/events/skb/kfree_skb/format", "reason")
		if n.dropReasons != nil {
			n.DropSource = "tracefs"
		}
	}
	return n, nil
}

// enumNames returns value -> name (prefix removed) of a kernel enum, or nil
// when the kernel has no such enum.
func enumNames(spec *btf.Spec, enum, prefix string) (map[uint32]string, error) {
	var e *btf.Enum
	if err := spec.TypeByName(enum, &e); err != nil {
		if errors.Is(err, btf.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("look up enum %s in kernel BTF: %w", enum, err)
	}
	names := make(map[uint32]string, len(e.Values))
	for _, v := range e.Values {
		names[uint32(v.Value)] = strings.TrimPrefix(v.Name, prefix)
	}
	return names, nil
}

var symbolicEntry = regexp.MustCompile(`\{\s*(\d+),\s*"([A-Z0-9_]+)"\s*\}`)

// formatSymbols reads the __print_symbolic(REC->field, ...) table of a
// tracefs format file.
func formatSymbols(path, field string) (map[uint32]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	marker := "__print_symbolic(REC->" + field + ","
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, marker)
		if i < 0 {
			continue
		}
		names := make(map[uint32]string)
		for _, m := range symbolicEntry.FindAllStringSubmatch(line[i:], -1) {
			v, err := strconv.ParseUint(m[1], 10, 32)
			if err != nil {
				continue
			}
			names[uint32(v)] = m[2]
		}
		return names, nil
	}
	return nil, sc.Err()
}
