/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* maps.h: every map and load-time setting of the tcpspan object. */
#ifndef TCPSPAN_MAPS_H
#define TCPSPAN_MAPS_H

#include "records.h"

/* Settings, written by the loader into the CollectionSpec before load. */
const volatile __u32 filter_netns = 0;     /* capture only this netns inode; 0 = all */
const volatile __u16 filter_ports[8] = {}; /* local or remote port; all zero = any */
const volatile __u32 wakeup_bytes = 65536; /* wake the reader once this much is pending */
/* Do not send connections with no problem (see conn_clean): set when the
 * agent would export and print none of them (-clean-ratio 0). */
const volatile bool skip_clean = false;
/* skb_drop_reason values worth keeping (TCP ones), as a bitmap; resolved by
 * name from the running kernel's BTF, since the numbers change per kernel. */
const volatile __u64 drop_reasons[4] = {};
const volatile __u32 listen_overflow_reason = 0; /* SKB_DROP_REASON_TCP_LISTEN_OVERFLOW, 0 = unknown */
const volatile __u32 no_socket_reason = 0;       /* SKB_DROP_REASON_NO_SOCKET, 0 = unknown */
/* The running kernel's raw tracepoint prototypes, read by the loader from
 * the btf_trace_<name> typedefs in its BTF: arguments change between
 * kernels, and a raw tracepoint reads them by position. */
const volatile bool rst_has_reason = false;   /* tcp_send_reset(sk, skb, reason): 6.10+ */
const volatile bool kfree_has_reason = false; /* kfree_skb(skb, location, reason): 5.17+ */
const volatile bool kfree_has_rx_sk = false;  /* kfree_skb(..., reason, rx_sk): 6.12+ */
const volatile bool retrans_has_err = false;  /* tcp_retransmit_skb(sk, skb, err): after 6.12 */
/* Softirqs run in task context, on the task's own stack (PREEMPT_RT, from
 * /sys/kernel/realtime): see release_by_task. */
const volatile bool softirq_in_task = false;
/* The SYN watch (syn_ingress) is attached on demand, while an accept queue
 * is high: the hooks ask for it (syn_watch_ask). Off: it is always on. */
const volatile bool syn_watch_auto = false;
/* Resets for no socket are counted per kind and window of this many ns
 * (reset_storms), the first of each sent as an example. 0: each is sent. */
const volatile __u64 reset_window_ns = 0;

/* fetch_add atomically adds v to *p and returns the old value. Atomic fetch
 * instructions need 5.12+; the object built with TCPSPAN_COMPAT (see gen.go),
 * loaded on older kernels, reads and then adds, so two CPUs updating one
 * connection at the same instant may share an event slot. */
#ifdef TCPSPAN_COMPAT
#define fetch_add(p, v)                               \
	({                                            \
		__u32 __old = *(volatile __u32 *)(p); \
		__sync_fetch_and_add((p), (v));       \
		__old;                                \
	})
#else
#define fetch_add(p, v) __sync_fetch_and_add((p), (v))
#endif

/* events carries struct conn and struct orphan records to user space.
 * Written by every hook, read by the Go reader. Size set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* conns: kernel socket address -> struct conn.
 * Inserted at connect (SYN_SENT), at child creation (LISTEN->SYN_RECV), or on
 * the first event of a connection that predates the agent (mid-life).
 * Updated by every per-socket hook. Deleted at tcp_destroy_sock, after the
 * record is emitted. LRU, so entries whose destroy was missed age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn);
} conns SEC(".maps");

/* listener_key names a listening socket by what a packet carries. */
struct listener_key {
	__u32 netns;
	__u16 port;
	__u8 _pad[2];
};

/* owner is a process that owns a socket. */
struct owner {
	__u64 cgroup; /* its cgroup v2 id when it listened, 0 if unknown */
	__u32 pid;
	char comm[16];
	__u8 _pad[4];
};

/* listener_state is what is known of a listening socket. */
struct listener_state {
	struct owner owner;
	/* queue_high: its accept queue was half full or more when last seen
	 * (see queue_high). queue_small: its limit is below SMALL_QUEUE, so a
	 * burst fills it before the watch could attach. User space keeps the
	 * SYN watch on while any listener has either. */
	__u16 queue_high;
	__u16 queue_small;
	__u8 _pad[4];
	/* sk: its kernel address, to read its queue; 0 while unknown. Known
	 * from listen(), or learned at the first accept() or SYN seen. */
	__u64 sk;
};

/* listeners: (netns, port) -> struct listener_state.
 * Inserted at CLOSE->LISTEN, which runs in the listen() caller's context.
 * Deleted at LISTEN->CLOSE. Read when a child is created and for orphans at
 * that port. Listeners that predate the agent are filled by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct listener_key);
	__type(value, struct listener_state);
} listeners SEC(".maps");

/* listener_close is a listener being released by a task, while the kernel
 * resets the children still in its accept queue. */
struct listener_close {
	struct listener_key listener;
	__u32 queued; /* its accept queue's length when it closed */
};

/* listener_closes: pid_tgid -> struct listener_close.
 * Written at LISTEN->CLOSE when a task releases the listener; read as each
 * queued child is reset in that task's context (tcp_send_reset). Stays
 * until overwritten: LRU, a handful of entries at a time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, struct listener_close);
} listener_closes SEC(".maps");

/* syn_watch_asked_ns: when each reason (enum syn_watch_why) last asked for
 * the SYN watch, monotonic ns: asks are rate-limited (syn_watch_ask). */
__u64 syn_watch_asked_ns[8] = {};

/* handshake is what is known of a connection before its child socket exists. */
struct handshake {
	__u64 syn_ns;         /* first SYN seen at the listener, boot ns */
	__u32 synack_retrans; /* tcp_retransmit_synack hits */
	__u32 overflowed;     /* a handshake ACK was dropped: queue full */
};

/* handshakes: tuple -> struct handshake.
 * Inserted by cgroup_skb/ingress on a SYN to a listener. Updated by
 * tcp_retransmit_synack and kfree_skb (listen overflow). Deleted when the
 * child socket is created. LRU: a handshake that never completes ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tuple);
	__type(value, struct handshake);
} handshakes SEC(".maps");

/* reset_storms: struct reset_storm_key -> struct reset_storm.
 * Inserted by the first reset of a kind in a window (that one is sent as an
 * orphan record), counted by the rest. User space reads and deletes the
 * windows that have ended (Tracer.Read). Not LRU: an evicted count would be
 * lost without a trace. When it is full, resets are sent one record each, as
 * without folding, and COUNTER_RESET_STORMS_FULL says so. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct reset_storm_key);
	__type(value, struct reset_storm);
} reset_storms SEC(".maps");

/* refused_storms: struct refused_storm_key -> struct refused_storm.
 * Like reset_storms, for the connects those resets refuse (refused_folded
 * in conn.h). Not LRU, for the same reason. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct refused_storm_key);
	__type(value, struct refused_storm);
} refused_storms SEC(".maps");

/* servers: tgid -> 1, the processes seen to listen or accept since the
 * agent started, in the namespaces it traces. Such a process may close a
 * connection it serves because its own connect was refused (a forwarder):
 * user space links the two (closed_after_failure), so its refused connects
 * are never folded. LRU: an evicted process only has its refused connects
 * folded again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} servers SEC(".maps");

/* server_seen marks the current process as a server (servers). */
static __always_inline void server_seen(void)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u32 one = 1;

	if (!bpf_map_lookup_elem(&servers, &pid))
		bpf_map_update_elem(&servers, &pid, &one, BPF_ANY);
}

/* zero_refused_storm initialises refused_storms entries: too large for the
 * stack. */
const struct refused_storm zero_refused_storm = {};

/* zero_conn initialises new conns entries in place: struct conn is too
 * large for the 512-byte BPF stack. */
const struct conn zero_conn = {};

/* counters: enum counter -> count, per CPU. Written by every hook that
 * fails to keep something; read by user space as self-telemetry. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (v)
		*v += 1;
}

#endif /* TCPSPAN_MAPS_H */
