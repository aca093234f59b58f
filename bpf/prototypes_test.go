package bpf

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// kernelSpec builds a BTF spec holding the btf_trace_ typedefs of a kernel
// with the given tcp_send_reset, kfree_skb and tcp_retransmit_skb arguments.
func kernelSpec(t *testing.T, rst, kfree, retrans []btf.FuncParam, extra ...btf.Type) *btf.Spec {
	t.Helper()
	tp := func(name string, args []btf.FuncParam) btf.Type {
		params := append([]btf.FuncParam{{Name: "__data", Type: &btf.Pointer{Target: &btf.Void{}}}}, args...)
		return &btf.Typedef{Name: "btf_trace_" + name, Type: &btf.Pointer{
			Target: &btf.FuncProto{Return: &btf.Void{}, Params: params}}}
	}
	return specOf(t, append([]btf.Type{tp("tcp_send_reset", rst), tp("kfree_skb", kfree), tp("tcp_retransmit_skb", retrans)}, extra...)...)
}

// specOf marshals types and loads them back as a BTF spec.
func specOf(t *testing.T, types ...btf.Type) *btf.Spec {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// The prototypes of the matrix's kernels, as their BTF has them.
func TestReadPrototypes(t *testing.T) {
	sock := &btf.Pointer{Target: &btf.Const{Type: &btf.Struct{Name: "sock"}}}
	rxSock := &btf.Pointer{Target: &btf.Struct{Name: "sock"}}
	skb := &btf.Pointer{Target: &btf.Const{Type: &btf.Struct{Name: "sk_buff"}}}
	loc := &btf.Pointer{Target: &btf.Void{}}
	u32 := &btf.Int{Name: "unsigned int", Size: 4}
	errno := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	rstReason := &btf.Const{Type: &btf.Enum{Name: "sk_rst_reason", Size: 4, Values: []btf.EnumValue{{Name: "SK_RST_REASON_NOT_SPECIFIED"}}}}
	dropReason := &btf.Enum{Name: "skb_drop_reason", Size: 4, Values: []btf.EnumValue{{Name: "SKB_DROP_REASON_NOT_SPECIFIED"}}}
	ownClass := &btf.Struct{Name: "trace_event_raw_tcp_send_reset"}

	// tcp_retransmit_skb(sk, skb) on 6.12 (its BTF, checked); 6.18 has the error.
	retrans := []btf.FuncParam{{Name: "sk", Type: sock}, {Name: "skb", Type: skb}}
	retransErr := append(retrans[:2:2], btf.FuncParam{Name: "err", Type: errno})
	for _, tc := range []struct {
		name        string
		rst, kfree  []btf.FuncParam
		retrans     []btf.FuncParam
		extra       []btf.Type
		want        prototypes
		wantRstText string
	}{
		{
			name:        "5.10",
			rst:         []btf.FuncParam{{Name: "sk", Type: sock}, {Name: "skb", Type: skb}},
			kfree:       []btf.FuncParam{{Name: "skb", Type: skb}, {Name: "location", Type: loc}},
			wantRstText: "tcp_send_reset(struct sock *, struct sk_buff *)",
		},
		{
			name:  "6.1",
			rst:   []btf.FuncParam{{Name: "sk", Type: sock}, {Name: "skb", Type: skb}},
			kfree: []btf.FuncParam{{Name: "skb", Type: skb}, {Name: "location", Type: loc}, {Name: "reason", Type: dropReason}},
			want:  prototypes{kfreeReason: true},
		},
		{
			name:  "6.12",
			rst:   []btf.FuncParam{{Name: "sk", Type: sock}, {Name: "skb", Type: skb}, {Name: "reason", Type: rstReason}},
			kfree: []btf.FuncParam{{Name: "skb", Type: skb}, {Name: "location", Type: loc}, {Name: "reason", Type: dropReason}, {Name: "rx_sk", Type: rxSock}},
			extra: []btf.Type{ownClass},
			want:  prototypes{rstReason: true, rstNoSocket: true, kfreeReason: true, kfreeRxSk: true},
		},
		{
			name:    "6.18",
			rst:     []btf.FuncParam{{Name: "sk", Type: sock}, {Name: "skb", Type: skb}, {Name: "reason", Type: rstReason}},
			kfree:   []btf.FuncParam{{Name: "skb", Type: skb}, {Name: "location", Type: loc}, {Name: "reason", Type: dropReason}, {Name: "rx_sk", Type: rxSock}},
			retrans: retransErr,
			extra:   []btf.Type{ownClass},
			want:    prototypes{rstReason: true, rstNoSocket: true, kfreeReason: true, kfreeRxSk: true, retransErr: true},
		},
		{
			// A third argument that is not the reason enum is not read as one.
			name:    "third argument of another type",
			rst:     []btf.FuncParam{{Name: "sk", Type: sock}, {Name: "skb", Type: skb}, {Name: "x", Type: u32}},
			kfree:   []btf.FuncParam{{Name: "skb", Type: skb}, {Name: "location", Type: loc}, {Name: "x", Type: u32}},
			retrans: append(retrans[:2:2], btf.FuncParam{Name: "x", Type: u32}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.retrans == nil {
				tc.retrans = retrans
			}
			got, err := readPrototypes(kernelSpec(t, tc.rst, tc.kfree, tc.retrans, tc.extra...))
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantRstText != "" && got.rstProto != tc.wantRstText {
				t.Errorf("prototype text %q, want %q", got.rstProto, tc.wantRstText)
			}
			got.rstProto, got.kfreeProto = "", ""
			got.errorReport = false // not in these specs
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadPrototypesMissingTracepoint(t *testing.T) {
	spec := specOf(t, &btf.Int{Name: "int", Size: 4})
	if _, err := readPrototypes(spec); err == nil {
		t.Error("no error for a kernel BTF without btf_trace_tcp_send_reset")
	}
}

// On a kernel with none of the newer arguments, every capability that is
// off names why, and none is claimed.
func TestFeaturesNameTheLimitation(t *testing.T) {
	var f Features
	f.init(prototypes{rstProto: "tcp_send_reset(struct sock *, struct sk_buff *)"}, &KernelNames{}, false, false)
	for _, name := range []string{CapResetReasons, CapClosedPortResets, CapDropReasons, CapDropSocket,
		CapListenOverflow, CapSYNOverflow, CapAtomicSlots, CapSocketErrors} {
		c, ok := f.Capability(name)
		if !ok || c.On || c.Why == "" {
			t.Errorf("%s: %+v (reported %v), want off with a reason", name, c, ok)
		}
	}
	if c, _ := f.Capability(CapResetReasons); !strings.Contains(c.Why, "tcp_send_reset(struct sock *, struct sk_buff *)") {
		t.Errorf("reset-reasons does not quote the prototype found: %q", c.Why)
	}
	if f.ResetReasons || f.DropReasons || f.ListenOverflow || f.ClosedPortResets {
		t.Errorf("capabilities claimed: %+v", f)
	}
	if s := f.String(); !strings.HasPrefix(s, "on   connections") || !strings.Contains(s, "\noff  reset-reasons") {
		t.Errorf("table:\n%s", s)
	}
}
