//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * tcpspan.bpf.c: the hooks. Each SEC() program is short and calls into
 * conn.h and sock.h; all of them share one object, one ring buffer and one
 * connection map.
 *
 * Hooks are raw tracepoints (no tracefs needed, and no copy of the event
 * into a trace buffer), fexit on accept() (syscall tracepoints where fexit
 * does not load), and a cgroup_skb program for SYNs that hit a full accept
 * queue, which the kernel consumes without any tracepoint. close() has no
 * hook of its own: the state changes it makes tell it (release_by_task in
 * sock.h).
 */
/* -Wpadded is for our own record layouts, not the kernel's. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#pragma clang diagnostic pop

#include "records.h"
#include "maps.h"
#include "sock.h"
#include "conn.h"
#include "traceparent.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Keep the record types in the object's BTF, for bpf2go -type. */
const struct orphan *unused_orphan __attribute__((unused));
const struct syn_watch_ask *unused_syn_watch_ask __attribute__((unused));
const struct traceparent *unused_traceparent __attribute__((unused));
const enum request_dir unused_request_dir __attribute__((unused));
const enum record_kind unused_record_kind __attribute__((unused));
const enum event_type unused_event_type __attribute__((unused));
const enum exec_ctx unused_exec_ctx __attribute__((unused));
const enum release_how unused_release_how __attribute__((unused));
const enum event_how unused_event_how __attribute__((unused));
const enum conn_flags unused_conn_flags __attribute__((unused));
const enum isn_known unused_isn_known __attribute__((unused));
const enum syn_watch_why unused_syn_watch_why __attribute__((unused));
const enum queue_limit unused_queue_limit __attribute__((unused));
const enum retrans_limit unused_retrans_limit __attribute__((unused));
const enum counter unused_counter __attribute__((unused));
const struct reset_storm_key *unused_reset_storm_key __attribute__((unused));
const struct reset_storm *unused_reset_storm __attribute__((unused));
const struct refused_storm_key *unused_refused_storm_key __attribute__((unused));
const struct refused_storm *unused_refused_storm __attribute__((unused));

/* The syscall tracepoint layout, from
 * /sys/kernel/tracing/events/syscalls/sys_exit_accept4/format. It is the
 * same for every syscall and has not changed in a decade; there is no BTF
 * type for it. */
struct syscall_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

static __always_inline void owner_from_current(struct conn *c)
{
	c->owner_pid = current_tgid();
	c->owner_cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(c->owner_comm, sizeof(c->owner_comm));
}

/* handshake_join starts a child's span at the SYN that cgroup_skb saw for
 * its tuple. The tracker orders events by time, so it may run after the
 * child's first state change. */
static __always_inline void handshake_join(struct conn *c)
{
	struct handshake *hs = bpf_map_lookup_elem(&handshakes, &c->tuple);

	if (!hs) {
		c->flags |= CONN_SYN_UNSEEN;
		return;
	}
	c->start_ns = hs->syn_ns;
	conn_event(c, hs->syn_ns, EVENT_SYN, TCP_LISTEN, CTX_KERNEL, 0, 0, 0);
	if (hs->synack_retrans)
		conn_event(c, 0, EVENT_SYNACK_RETRANS, TCP_SYN_RECV, CTX_KERNEL, 0, hs->synack_retrans, 0);
	bpf_map_delete_elem(&handshakes, &c->tuple);
}

/* SYN_WATCH_ASK_NS: each reason asks for the SYN watch at most this often. */
#define SYN_WATCH_ASK_NS (100 * 1000 * 1000ULL)

/* syn_watch_ask asks user space for the SYN watch (syn_ingress), which sees
 * each SYN a full accept queue drops. In auto mode it is attached only while
 * it is needed: its hook runs for every packet the host receives, 0.9 to
 * 1.9 us per loopback connection in the benchmarks (docs/performance.md).
 * The ask wakes the reader at once. A lost ask (ring buffer full) is asked
 * again by the next event, after the rate limit. */
static __always_inline void syn_watch_ask(__u8 why, __u32 netns, __u16 port, __u32 backlog, __u32 max)
{
	struct syn_watch_ask *a;
	__u64 now;

	if (!syn_watch_auto)
		return;
	now = bpf_ktime_get_ns();
	if (now - syn_watch_asked_ns[why & 7] < SYN_WATCH_ASK_NS)
		return;
	syn_watch_asked_ns[why & 7] = now;
	a = bpf_ringbuf_reserve(&events, sizeof(*a), 0);
	if (!a)
		return;
	a->kind = RECORD_SYN_WATCH;
	a->netns = netns;
	a->port = port;
	a->why = why;
	a->_pad = 0;
	a->backlog = backlog;
	a->max = max;
	bpf_ringbuf_submit(a, BPF_RB_FORCE_WAKEUP);
}

/* queue_high says whether an accept queue of backlog connections, at most
 * max + 1 (sk_acceptq_is_full), is half full or more. A listener with a
 * high queue keeps the SYN watch on, before SYNs overflow it. */
static __always_inline bool queue_high(__u32 backlog, __u32 max)
{
	return backlog > 0 && 2 * (__u64)backlog >= max;
}

/* listener_small notes a listener whose queue's limit is small (see
 * SMALL_QUEUE), and asks for the SYN watch for it. */
static __always_inline void listener_small(struct listener_state *l, const struct listener_key *k, __u32 max)
{
	if (max >= SMALL_QUEUE)
		return;
	if (!l->queue_small)
		l->queue_small = 1;
	syn_watch_ask(WATCH_SMALL_QUEUE, k->netns, k->port, 0, max);
}

/* listener_watch notes a listener's queue in its entry: high or not, and
 * asks for the SYN watch while it is high. */
static __always_inline bool listener_watch(struct listener_state *l, const struct listener_key *k, __u32 backlog,
					   __u32 max)
{
	listener_small(l, k, max);
	if (!queue_high(backlog, max)) {
		if (l->queue_high)
			l->queue_high = 0;
		return false;
	}
	if (!l->queue_high)
		l->queue_high = 1;
	syn_watch_ask(WATCH_QUEUE_HIGH, k->netns, k->port, backlog, max);
	return true;
}

/* child_listener names a new child's owner from its listener. In auto mode
 * it also looks at the listener's accept queue, which the child is about to
 * join: high, it asks for the SYN watch; unknown (a listener that predates
 * the agent), the child's accept() will learn it. */
static __always_inline void child_listener(struct conn *c)
{
	struct listener_key k = {.netns = c->tuple.netns, .port = c->tuple.sport};
	struct listener_state *l = bpf_map_lookup_elem(&listeners, &k);
	const struct sock *lsk;

	if (!l)
		return;
	c->owner_pid = l->owner.pid;
	c->owner_cgroup = l->owner.cgroup;
	__builtin_memcpy(c->owner_comm, l->owner.comm, 16);
	if (!syn_watch_auto)
		return;
	if (!l->sk) {
		c->flags |= CONN_LISTENER_UNLEARNED;
		syn_watch_ask(WATCH_UNLEARNED_LISTENER, k.netns, k.port, 0, 0);
		return;
	}
	lsk = (const struct sock *)l->sk;
	if (listener_watch(l, &k, BPF_CORE_READ(lsk, sk_ack_backlog) + 1, BPF_CORE_READ(lsk, sk_max_ack_backlog)))
		c->flags |= CONN_LISTENER_HIGH;
}

/* listener_accepted runs when a child of a listener that was unknown or high
 * is accepted: accept()'s first argument is the listener, so it is learned;
 * and its queue, one shorter, is looked at again. */
static __always_inline void listener_accepted(const struct conn *c)
{
	struct listener_key k = {.netns = c->tuple.netns, .port = c->tuple.sport};
	struct listener_state *l = bpf_map_lookup_elem(&listeners, &k);
	const struct sock *lsk;

	if (!l)
		return;
	if (!l->sk) {
		lsk = sk_from_fd(syscall_arg0());
		if (!lsk || sk_state(lsk) != TCP_LISTEN || sk_local_port(lsk) != k.port || sk_netns(lsk) != k.netns)
			return;
		l->sk = (__u64)lsk;
	}
	lsk = (const struct sock *)l->sk;
	listener_watch(l, &k, BPF_CORE_READ(lsk, sk_ack_backlog), BPF_CORE_READ(lsk, sk_max_ack_backlog));
}

/* syn_estimate places the SYN of a child whose SYN the watch did not see (it
 * was off, or the SYN came before the agent) by the handshake's RTT, which
 * the kernel has just measured from its SYN-ACK to this ACK: at the SYN-ACK,
 * microseconds after the SYN. Never after the child was created: the
 * measurement ends a moment before this state change, and an interrupt in
 * between (seen under emulation) would put the estimate late. A
 * retransmitted SYN-ACK gives no RTT sample (Karn): its child only says how
 * many there were. */
static __always_inline void syn_estimate(struct conn *c, const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u32 srtt = BPF_CORE_READ(tp, srtt_us) >> 3;
	__u32 retrans = BPF_CORE_READ(tp, total_retrans);
	__u64 ts;

	c->flags &= ~CONN_SYN_UNSEEN;
	if (retrans) {
		conn_event(c, 0, EVENT_SYNACK_RETRANS, TCP_SYN_RECV, CTX_KERNEL, 0, retrans, 0);
		return;
	}
	ts = bpf_ktime_get_boot_ns() - (__u64)srtt * 1000;
	if (ts >= c->start_ns)
		ts = c->start_ns - 1;
	c->start_ns = ts;
	conn_event(c, ts, EVENT_SYN, TCP_LISTEN, CTX_KERNEL, 0, SYN_ESTIMATED, 0);
}

/* A passive open: the child socket is created when the handshake ACK
 * arrives. Its span starts at the SYN when cgroup_skb saw one, or else at
 * its estimate (syn_estimate). */
static __always_inline void child_created(const struct sock *sk)
{
	struct conn *c = conn_create(sk, SIDE_SERVER, CONN_OWNER_FROM_LISTENER);

	if (!c)
		return;
	child_listener(c);
	conn_event(c, 0, EVENT_STATE, TCP_SYN_RECV, CTX_KERNEL, 0, TCP_LISTEN, 0);
	/* On 5.10, 6.1 and 6.12 (not on 6.18) the clone enters SYN_RECV
	 * before the peer's address is copied from the request: then the
	 * tuple is completed at the child's next state change. */
	if (c->tuple.dport != 0)
		handshake_join(c);
}

/* listener_of keys a listening socket. The port comes from inet_sport:
 * when the listener closes, skc_num is already cleared by the time the
 * state-change tracepoint fires. */
static __always_inline struct listener_key listener_of(const struct sock *sk)
{
	struct listener_key k = {
		.netns = sk_netns(sk),
		.port = sk_local_port(sk),
	};
	return k;
}

/* listener_closed forgets a listener. When a task releases it, the children
 * still queued on it are reset next, in the task's context: note how many
 * for them (listener_queued). */
static __always_inline void listener_closed(const void *ctx, const struct sock *sk)
{
	struct listener_key k = listener_of(sk);
	struct release r;

	bpf_map_delete_elem(&listeners, &k);
	if (filter_netns && k.netns != filter_netns)
		return;
	if (release_by_task(ctx, sk, &r)) {
		struct listener_close lc = {.listener = k, .queued = BPF_CORE_READ(sk, sk_ack_backlog)};
		__u64 id = bpf_get_current_pid_tgid();

		bpf_map_update_elem(&listener_closes, &id, &lc, BPF_ANY);
	}
}

/* listener_queued returns the accept queue's length of c's listener when
 * the current task released it, or 0 if unknown. */
static __always_inline __u32 listener_queued(const struct conn *c)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct listener_close *lc = bpf_map_lookup_elem(&listener_closes, &id);

	if (!lc || lc->listener.netns != c->tuple.netns || lc->listener.port != c->tuple.sport)
		return 0;
	return lc->queued;
}

SEC("raw_tracepoint/inet_sock_set_state")
int inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	int oldstate = (int)ctx->args[1];
	int newstate = (int)ctx->args[2];
	struct conn_event *e;
	struct release r;
	struct conn *c;
	__u32 err = 0;

	/* Each helper call counts (docs/performance.md), so the protocol is
	 * read only where a connection or listener begins. Later changes find
	 * a tracked connection or none: conn_get reads the protocol before it
	 * tracks one mid-life, and TCP sockets come from slab caches of their
	 * own, so no other protocol's socket lands at a tracked address. */
	if ((newstate == TCP_LISTEN || oldstate == TCP_LISTEN || newstate == TCP_SYN_SENT) &&
	    sk_protocol(sk) != IPPROTO_TCP)
		return 0;

	if (newstate == TCP_LISTEN) {
		/* listen() runs in the owner's context. */
		struct listener_key k = listener_of(sk);
		struct listener_state l = {
			.owner.pid = current_tgid(),
			.owner.cgroup = bpf_get_current_cgroup_id(),
			.sk = (__u64)sk,
		};
		__u32 max = BPF_CORE_READ(sk, sk_max_ack_backlog); /* listen() set it first */

		if (filter_netns && k.netns != filter_netns)
			return 0;
		server_seen();
		bpf_get_current_comm(l.owner.comm, sizeof(l.owner.comm));
		listener_small(&l, &k, max);
		bpf_map_update_elem(&listeners, &k, &l, BPF_ANY);
		return 0;
	}
	if (oldstate == TCP_LISTEN) {
		/* A child is cloned from its listener, so it starts in LISTEN. */
		if (newstate == TCP_SYN_RECV)
			child_created(sk);
		else
			listener_closed(ctx, sk);
		return 0;
	}
	if (newstate == TCP_SYN_SENT) {
		/* connect() runs in the owner's context. */
		c = conn_create(sk, SIDE_CLIENT, 0);
		if (!c)
			return 0;
		owner_from_current(c);
		conn_event(c, c->start_ns, EVENT_STATE, TCP_SYN_SENT, CTX_PROCESS, c->owner_pid, oldstate,
			   SYSCALL_NONE);
		return 0;
	}

	if (newstate == TCP_CLOSE && close_told_at_destroy(sk, oldstate))
		return 0;
	c = conn_get(sk);
	if (!c)
		return 0;
	conn_isns(c, sk, oldstate, newstate);
	if (newstate == TCP_ESTABLISHED && c->tuple.sport == 0)
		c->tuple.sport = sk_local_port(sk);
	if (c->side == SIDE_SERVER && c->tuple.dport == 0) {
		/* A child whose peer was not yet known at SYN_RECV. */
		__builtin_memset(&c->tuple, 0, sizeof(c->tuple));
		tuple_from_sk(&c->tuple, sk);
		if (c->tuple.sport == 0)
			c->tuple.sport = sk_local_port(sk);
		handshake_join(c);
	}
	if ((c->flags & CONN_SYN_UNSEEN) && newstate == TCP_ESTABLISHED)
		syn_estimate(c, sk);
	/* An abort: the counters may be zeroed next (conn_counters). A clean
	 * connection reaches CLOSE from FIN_WAIT, CLOSING or LAST_ACK. */
	if (newstate == TCP_CLOSE && (oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT ||
				      oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV))
		conn_counters(c, sk);
	/* The error that ends it, if any, is set before the state changes:
	 * the application may consume it (sock_error) before the kernel's
	 * report of it runs, which then reads none. */
	if (newstate == TCP_CLOSE)
		err = BPF_CORE_READ(sk, sk_err);
	/* No release enters ESTABLISHED: the handshake's end needs no look at
	 * the task. */
	if (newstate == TCP_ESTABLISHED || !release_by_task(ctx, sk, &r)) {
		conn_event(c, 0, EVENT_STATE, newstate, CTX_KERNEL, 0, oldstate, err);
		return 0;
	}
	conn_close(c, sk, &r, oldstate);
	e = conn_event(c, 0, EVENT_STATE, newstate, CTX_PROCESS, current_tgid(), oldstate, err);
	if (e)
		e->how = r.how;
	return 0;
}

SEC("raw_tracepoint/tcp_destroy_sock")
int tcp_destroy_sock(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	struct conn *c = conn_get(sk);
	struct tuple t = {};

	if (c) {
		/* A socket already in CLOSE (reset, refused) changes no state in
		 * its release: its destroy there is the first sign of it. */
		struct release r;
		bool send = conn_sent(c, sk), by_task = false;

		/* Who releases it matters for a closer not yet known, and for
		 * the events of one to be sent (closed_at_destroy): a clean
		 * connection its processes closed, not sent, needs no look at
		 * the task. */
		if ((send || !c->closer_pid) && release_by_task(ctx, sk, &r)) {
			by_task = true;
			conn_close(c, sk, &r, sk_state(sk));
		}
		conn_finish(c, sk, send, by_task ? &r : NULL);
		return 0;
	}
	if (BPF_CORE_READ(sk, __sk_common.skc_dport) == 0 || sk_state(sk) == TCP_LISTEN)
		return 0;
	tuple_from_sk(&t, sk);
	t.sport = sk_local_port(sk);
	if (tuple_wanted(&t))
		count(COUNTER_DESTROYED_UNTRACKED);
	return 0;
}

/* reset_folded counts a reset sent for no socket at all (a closed port) in
 * reset_storms, and reports whether it did: then it sends no record. The
 * first reset of its kind in each window is not folded: it goes out as an
 * orphan with its 4-tuple, an example of the rest. So a closed-port storm
 * costs a map update per reset, not a ring-buffer record, and no rate loses
 * any: a full map sends records as before. Resets from sockets are never
 * folded: each joins its own connection or handshake by tuple. */
static __always_inline bool reset_folded(const struct tuple *t, __u32 reason)
{
	struct reset_storm_key k = {};
	struct reset_storm *s;
	__u64 now;

	if (!reset_window_ns)
		return false;
	now = bpf_ktime_get_boot_ns();
	k.window = now / reset_window_ns;
	__builtin_memcpy(k.saddr, t->saddr, sizeof(k.saddr));
	__builtin_memcpy(k.daddr, t->daddr, sizeof(k.daddr));
	k.netns = t->netns;
	k.reason = reason;
	k.sport = t->sport;
	k.family = t->family;
	s = bpf_map_lookup_elem(&reset_storms, &k);
	if (!s) {
		struct reset_storm zero = {};

		/* The first of its window, unless another CPU was first. */
		if (!bpf_map_update_elem(&reset_storms, &k, &zero, BPF_NOEXIST))
			return false;
		s = bpf_map_lookup_elem(&reset_storms, &k);
		if (!s) {
			count(COUNTER_RESET_STORMS_FULL);
			return false;
		}
	}
	__sync_fetch_and_add(&s->count, 1);
	if (!s->first_ns)
		s->first_ns = now;
	s->last_ns = now;
	count(COUNTER_RESETS_FOLDED);
	return true;
}

SEC("raw_tracepoint/tcp_send_reset")
int tcp_send_reset(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	const struct sk_buff *skb = (const struct sk_buff *)ctx->args[1];
	__u32 reason = RESET_REASON_UNKNOWN;
	__u8 cx = CTX_KERNEL, how = 0;
	struct conn_event *e;
	struct release r;
	__u8 state = 0;
	struct orphan *o;

	if (rst_has_reason)
		reason = (__u32)ctx->args[2];
	if (release_by_task(ctx, sk, &r)) {
		cx = CTX_PROCESS;
		how = r.how;
	}
	/* An active reset (release, timer) passes no packet. */
	if (skb)
		how |= HOW_ANSWER;
	if (sk) {
		state = sk_state(sk);
		if (state != TCP_LISTEN && state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV) {
			struct conn *c = conn_get(sk);

			if (c) {
				__u32 queued = 0;

				if (cx == CTX_PROCESS) {
					conn_close(c, sk, &r, state);
					if (!closes_own_file(c, sk)) {
						how |= HOW_VIA_LISTENER;
						queued = listener_queued(c);
					}
				}
				/* Sent before tcp_disconnect() zeroes the counters. */
				conn_counters(c, sk);
				e = conn_event(c, 0, EVENT_RST_SENT, state, cx, cx == CTX_PROCESS ? current_tgid() : 0,
					       reason, queued);
				if (e)
					e->how = how;
				return 0;
			}
		}
	}

	/* No tracked full socket: a listener, a time-wait or request socket, or
	 * no socket at all. Key it by the tuple of the packet answered. */
	if (skb) {
		struct tuple t = {};
		struct tcphdr th;

		if (tuple_from_skb_th(&t, skb, &th))
			return 0;
		if (sk)
			t.netns = sk_netns(sk);
		if (!tuple_wanted(&t))
			return 0;
		if (!sk && reset_folded(&t, reason))
			return 0;
		o = orphan_begin();
		if (!o)
			return 0;
		o->tuple = t;
		/* A listener answers a segment of a handshake it does not know:
		 * one whose ACK its full accept queue dropped. */
		orphan_isns(o, &th, state == TCP_LISTEN);
	} else if (sk) {
		o = orphan_begin();
		if (!o)
			return 0;
		tuple_from_sk(&o->tuple, sk);
		if (!tuple_wanted(&o->tuple)) {
			orphan_discard(o);
			return 0;
		}
	} else {
		return 0;
	}
	o->ev.how = how;
	orphan_emit(o, EVENT_RST_SENT, state, cx, reason, 0);
	return 0;
}

/* Resets the tcp_send_reset tracepoint does not see, on kernels where it
 * fires only with a full socket (the loader tells from the kernel's BTF):
 * those for closed ports (no socket), and those a time-wait or request
 * socket sends (data after a close, answered from TIME_WAIT). An optional
 * fallback: the loader attaches these kprobes only there, and only where
 * kprobes exist. The kernel gives no reason before 6.10, so none is
 * reported. This runs at entry, so it skips what the function itself
 * refuses to answer, a reset; a packet for no socket whose destination is
 * not local is also refused there, which this cannot tell (the matrix tests
 * use loopback, where the count matches TcpOutRsts). */
static __always_inline int reset_not_traced(const struct sock *sk, const struct sk_buff *skb)
{
	struct tuple t = {};
	struct tcphdr th;
	struct orphan *o;
	__u8 state = 0;

	if (!skb)
		return 0;
	if (sk) {
		state = sk_state(sk);
		if (state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV)
			return 0; /* a full socket: the tracepoint fires */
	}
	if (tuple_from_skb_th(&t, skb, &th) || th.rst)
		return 0;
	if (sk)
		t.netns = sk_netns(sk);
	if (!tuple_wanted(&t))
		return 0;
	if (!sk && reset_folded(&t, RESET_REASON_UNKNOWN))
		return 0;
	o = orphan_begin();
	if (!o)
		return 0;
	o->tuple = t;
	orphan_isns(o, &th, false);
	o->ev.how = HOW_ANSWER;
	orphan_emit(o, EVENT_RST_SENT, state, CTX_KERNEL, RESET_REASON_UNKNOWN, 0);
	return 0;
}

SEC("kprobe/tcp_v4_send_reset")
int BPF_KPROBE(tcp_v4_send_reset_kprobe, const struct sock *sk, struct sk_buff *skb)
{
	return reset_not_traced(sk, skb);
}

SEC("kprobe/tcp_v6_send_reset")
int BPF_KPROBE(tcp_v6_send_reset_kprobe, const struct sock *sk, struct sk_buff *skb)
{
	return reset_not_traced(sk, skb);
}

SEC("raw_tracepoint/tcp_receive_reset")
int tcp_receive_reset(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	struct conn *c = conn_get(sk);

	if (c)
		conn_event(c, 0, EVENT_RST_RECV, sk_state(sk), CTX_KERNEL, 0, 0, 0);
	return 0;
}

static __always_inline int error_report(const struct sock *sk)
{
	struct conn *c;
	__u32 err;

	if (sk_protocol(sk) != IPPROTO_TCP)
		return 0;
	/* The kernel reports again with no error when a failed connect()
	 * clears it (tcp_disconnect): nothing new. */
	err = BPF_CORE_READ(sk, sk_err);
	if (!err)
		return 0;
	c = conn_get(sk);
	if (c)
		conn_event(c, 0, EVENT_ERROR, sk_state(sk), CTX_KERNEL, 0, err,
			   BPF_CORE_READ((const struct tcp_sock *)sk, snd_wnd));
	return 0;
}

SEC("raw_tracepoint/inet_sk_error_report")
int inet_sk_error_report(struct bpf_raw_tracepoint_args *ctx)
{
	return error_report((const struct sock *)ctx->args[0]);
}

/* Kernels without the inet_sk_error_report tracepoint (before 5.14) call
 * sk->sk_error_report(), sock_def_error_report() for TCP, directly: an
 * optional kprobe there reports the same errors, where kprobes exist. */
SEC("kprobe/sock_def_error_report")
int BPF_KPROBE(sock_def_error_report_kprobe, struct sock *sk)
{
	return error_report(sk);
}

SEC("raw_tracepoint/tcp_retransmit_skb")
int tcp_retransmit_skb(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	struct conn *c = conn_get(sk);

	if (!c)
		return 0;
	/* Where the tracepoint has an error (after 6.12), it fires for every
	 * attempt, also those __tcp_retransmit_skb() gives up before it counts
	 * a retransmit (TcpRetransSegs, total_retrans): the segment still
	 * queued on this host, the peer's window closed, no memory, no route.
	 * Those are not retransmits. Any other error is the transmit's own
	 * (a full qdisc, a firewall), after the count: a retransmit, as the
	 * kernel counts it. Before, it fired for a segment sent only. */
	if (retrans_has_err) {
		int err = (int)ctx->args[2];

		if (err == -EBUSY || err == -EAGAIN || err == -ENOMEM || err == -EINVAL || err == -EHOSTUNREACH) {
			count(COUNTER_RETRANS_UNSENT);
			return 0;
		}
	}
	if (fetch_add(&c->retrans_seen, 1) < MAX_RETRANS_EVENTS)
		conn_event(c, 0, EVENT_RETRANS, sk_state(sk), CTX_KERNEL, 0, 0, 0);
	return 0;
}

SEC("raw_tracepoint/tcp_retransmit_synack")
int tcp_retransmit_synack(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *listener = (const struct sock *)ctx->args[0];
	const struct sock *req = (const struct sock *)ctx->args[1];
	struct tuple t = {};
	struct handshake *hs;
	struct orphan *o;
	__u32 n;

	tuple_from_sk(&t, req);
	t.netns = sk_netns(listener);
	hs = bpf_map_lookup_elem(&handshakes, &t);
	if (!hs)
		return 0;
	n = fetch_add(&hs->synack_retrans, 1) + 1;
	if (!hs->overflowed)
		return 0;
	/* The handshake's ACK was dropped: it may never become a socket, so
	 * report the retransmit now, to be joined by tuple. */
	o = orphan_begin();
	if (!o)
		return 0;
	o->tuple = t;
	o->isn_client = BPF_CORE_READ((const struct tcp_request_sock *)req, rcv_isn);
	o->isn_server = BPF_CORE_READ((const struct tcp_request_sock *)req, snt_isn);
	o->isn_known = ISN_CLIENT | ISN_SERVER;
	orphan_emit(o, EVENT_SYNACK_RETRANS, TCP_SYN_RECV, CTX_KERNEL, n, 0);
	return 0;
}

SEC("raw_tracepoint/kfree_skb")
int kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sk_buff *skb = (const struct sk_buff *)ctx->args[0];
	const struct sock *rx_sk = NULL;
	struct tuple t = {};
	struct tcphdr th;
	struct orphan *o;
	__u32 reason;

	/* Without a reason (before 5.17) a drop says nothing useful: the
	 * loader does not attach this program then. */
	if (!kfree_has_reason)
		return 0;
	reason = (__u32)ctx->args[2];
	/* rx_sk, the socket the packet was for, since 6.12. */
	if (kfree_has_rx_sk)
		rx_sk = (const struct sock *)ctx->args[3];
	if (reason == no_socket_reason && reason != 0) {
		/* A handshake ACK carrying a valid SYN cookie finds the accept
		 * queue full: cookie_v4_check() cannot create the child and drops
		 * the packet as NO_SOCKET while rx_sk is the listener. Other
		 * NO_SOCKET drops (closed ports) have no rx_sk. */
		if (!rx_sk || sk_state(rx_sk) != TCP_LISTEN)
			return 0;
		reason = listen_overflow_reason;
	} else if (reason >= 256 || !(drop_reasons[(reason >> 6) & 3] & (1ULL << (reason & 63)))) {
		return 0;
	}

	if (tuple_from_skb_th(&t, skb, &th))
		return 0;
	if (rx_sk)
		t.netns = sk_netns(rx_sk);
	if (!tuple_wanted(&t))
		return 0;

	if (reason == listen_overflow_reason) {
		/* The handshake ACK found the accept queue full: no child. */
		struct handshake *hs = bpf_map_lookup_elem(&handshakes, &t);
		__u32 backlog = 0, max = 0;

		if (hs)
			hs->overflowed = 1;
		if (rx_sk) {
			struct listener_key k = {.netns = t.netns, .port = t.sport};
			struct listener_state *l = bpf_map_lookup_elem(&listeners, &k);

			backlog = BPF_CORE_READ(rx_sk, sk_ack_backlog);
			max = BPF_CORE_READ(rx_sk, sk_max_ack_backlog);
			if (l) {
				if (!l->sk)
					l->sk = (__u64)rx_sk;
				if (!l->queue_high)
					l->queue_high = 1;
			}
		}
		syn_watch_ask(WATCH_OVERFLOW, t.netns, t.sport, backlog, max);
		o = orphan_begin();
		if (!o)
			return 0;
		o->tuple = t;
		orphan_isns(o, &th, true);
		orphan_emit(o, EVENT_ACK_OVERFLOW, TCP_LISTEN, CTX_KERNEL, backlog, max);
		return 0;
	}
	if (rx_sk) {
		__u64 key = (__u64)rx_sk;
		struct conn *c = bpf_map_lookup_elem(&conns, &key);

		if (c) {
			conn_event(c, 0, EVENT_DROP, sk_state(rx_sk), CTX_KERNEL, 0, reason, 0);
			return 0;
		}
	}
	o = orphan_begin();
	if (!o)
		return 0;
	o->tuple = t;
	orphan_isns(o, &th, false);
	orphan_emit(o, EVENT_DROP, rx_sk ? sk_state(rx_sk) : 0, CTX_KERNEL, reason, 0);
	return 0;
}

/* accepted_by_current makes the current task, which accept() runs in, the
 * owner of c, one of its server's children, and records the accept: fd and
 * syscall nr where the hook knows them (0xffffffff, SYSCALL_NONE if not). */
static __always_inline void accepted_by_current(struct conn *c, __u8 state, __u32 fd, __u32 nr)
{
	server_seen();
	owner_from_current(c);
	c->flags &= ~(CONN_OWNER_FROM_LISTENER | CONN_LISTENER_UNLEARNED | CONN_LISTENER_HIGH);
	conn_event(c, 0, EVENT_ACCEPT, state, CTX_PROCESS, c->owner_pid, fd, nr);
}

/* accepted names the owner of a socket accept() (syscall nr) returned as
 * fd ret, in the accepting task's context. */
static __always_inline void accepted(long ret, __u32 nr)
{
	struct sock *sk;
	struct conn *c;
	__u64 key;

	if (ret < 0)
		return;
	sk = sk_from_fd(ret);
	if (!sk)
		return;
	key = (__u64)sk;
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return;
	if (c->flags & (CONN_LISTENER_UNLEARNED | CONN_LISTENER_HIGH))
		listener_accepted(c);
	accepted_by_current(c, sk_state(sk), (__u32)ret, nr);
}

/* The accept() hook: fexit on __sys_accept4(), which accept() and
 * accept4() call, and nothing else: it runs for them alone. (The syscalls'
 * own entry points, __x64_sys_accept4 and __x64_sys_accept, are ambiguous
 * in 6.1's BTF, which has a second, weak, copy of each.) The syscall number
 * is in the task's saved registers. io_uring's accepts go another way, as
 * they do past the tracepoints below. */
SEC("fexit/__sys_accept4")
int BPF_PROG(accept_exit, int fd, struct sockaddr *upeer_sockaddr, int *upeer_addrlen, int flags, int ret)
{
	/* Most failures are EAGAIN on a non-blocking listener: skip them
	 * before reading the syscall number. */
	if (ret >= 0)
		accepted(ret, (__u32)syscall_nr());
	return 0;
}

/* The fallback, where fexit does not load (kernels without BPF
 * trampolines, or that refuse tracing programs): enabling any syscall
 * tracepoint puts every task of the host on the slow syscall path, about
 * 12 ns on each system call, whatever it is. */
SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4(struct syscall_exit_ctx *ctx)
{
	accepted(ctx->ret, ctx->nr);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct syscall_exit_ctx *ctx)
{
	accepted(ctx->ret, ctx->nr);
	return 0;
}

/* accepted_peer is the accept() hook where fexit does not load but cgroup
 * programs do: accept() asks the new socket for its peer's address, which
 * runs the cgroup getpeername hook in the accepting task's context. It runs
 * only for accept() and getpeername(), so it costs nothing else. It does
 * not see an accept() that asks for no address (fd, NULL, NULL), and knows
 * neither the new fd nor the syscall: those children keep their listener's
 * owner, and their closer is told at close() as always. It learns the
 * listener as listener_accepted does, by another way. The first call for
 * a child is its accept(); later getpeername() calls change nothing. */
/* listener_accepted_peer is listener_accepted for accepted_peer, which
 * cannot read accept()'s arguments: it finds the listener by a lookup of
 * the child's local address and port from no peer, which only a listener
 * matches, and reads its queue through the socket the lookup returns. */
static __always_inline void listener_accepted_peer(struct bpf_sock_addr *ctx, const struct conn *c)
{
	struct listener_key k = {.netns = c->tuple.netns, .port = c->tuple.sport};
	struct listener_state *l = bpf_map_lookup_elem(&listeners, &k);
	struct bpf_sock_tuple t = {};
	struct bpf_sock *lsk;
	struct tcp_sock *tp;

	if (!l)
		return;
	if (c->tuple.family == AF_INET) {
		__builtin_memcpy(&t.ipv4.daddr, &c->tuple.saddr[12], 4);
		t.ipv4.dport = bpf_htons(c->tuple.sport);
		lsk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	} else {
		__builtin_memcpy(t.ipv6.daddr, c->tuple.saddr, 16);
		t.ipv6.dport = bpf_htons(c->tuple.sport);
		lsk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	}
	if (!lsk)
		return;
	tp = bpf_skc_to_tcp_sock(lsk);
	if (tp && lsk->state == BPF_TCP_LISTEN) {
		if (!l->sk)
			l->sk = address_of(tp);
		listener_watch(l, &k, tp->inet_conn.icsk_inet.sk.sk_ack_backlog,
			       tp->inet_conn.icsk_inet.sk.sk_max_ack_backlog);
	}
	bpf_sk_release(lsk);
}

static __always_inline void accepted_peer(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *bsk = ctx->sk;
	struct tcp_sock *tp;
	struct conn *c;
	__u64 key;

	if (!bsk || bsk->protocol != IPPROTO_TCP)
		return;
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return;
	key = address_of(tp);
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c || c->side != SIDE_SERVER || !(c->flags & CONN_OWNER_FROM_LISTENER))
		return;
	if (c->flags & (CONN_LISTENER_UNLEARNED | CONN_LISTENER_HIGH))
		listener_accepted_peer(ctx, c);
	accepted_by_current(c, tp->inet_conn.icsk_inet.sk.__sk_common.skc_state, 0xffffffff, SYSCALL_NONE);
}

SEC("cgroup/getpeername4")
int accept_peer4(struct bpf_sock_addr *ctx)
{
	accepted_peer(ctx);
	return 1;
}

SEC("cgroup/getpeername6")
int accept_peer6(struct bpf_sock_addr *ctx)
{
	accepted_peer(ctx);
	return 1;
}

/* cgroup_skb/ingress on the cgroup v2 root sees each packet as it is
 * delivered to a socket, with skb->sk set to that socket. A SYN that reaches
 * a listener whose accept queue is full is dropped by tcp_conn_request()
 * without a drop reason or tracepoint; this is the only place to see it. The
 * test mirrors sk_acceptq_is_full(). Always returns 1: it never filters. */
SEC("cgroup_skb/ingress")
int syn_ingress(struct __sk_buff *skb)
{
	struct bpf_sock *bsk = skb->sk;
	struct tcp_sock *tp;
	struct tuple t = {};
	struct tcphdr tcp;
	__u32 backlog, max;
	struct orphan *o;

	if (!bsk || bsk->state != BPF_TCP_LISTEN)
		return 1;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_TCP)
			return 1;
		if (bpf_skb_load_bytes(skb, ip.ihl * 4, &tcp, sizeof(tcp)))
			return 1;
		t.family = AF_INET;
		map_ipv4(t.saddr, ip.daddr);
		map_ipv4(t.daddr, ip.saddr);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_TCP)
			return 1;
		if (bpf_skb_load_bytes(skb, sizeof(ip6), &tcp, sizeof(tcp)))
			return 1;
		t.family = AF_INET6;
		__builtin_memcpy(t.saddr, &ip6.daddr, 16);
		__builtin_memcpy(t.daddr, &ip6.saddr, 16);
	} else {
		return 1;
	}
	if (!tcp.syn || tcp.ack || tcp.rst)
		return 1;
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return 1;
	t.sport = bpf_ntohs(tcp.dest);
	t.dport = bpf_ntohs(tcp.source);
	t.netns = tp->inet_conn.icsk_inet.sk.__sk_common.skc_net.net->ns.inum;
	if (!tuple_wanted(&t))
		return 1;

	backlog = tp->inet_conn.icsk_inet.sk.sk_ack_backlog;
	max = tp->inet_conn.icsk_inet.sk.sk_max_ack_backlog;
	if (syn_watch_auto) {
		/* Learn a listener that predates the agent, and keep the watch
		 * on while its queue is high. */
		struct listener_key k = {.netns = t.netns, .port = t.sport};
		struct listener_state *l = bpf_map_lookup_elem(&listeners, &k);

		if (l) {
			if (!l->sk)
				l->sk = address_of(tp);
			listener_watch(l, &k, backlog, max);
		}
	}
	if (backlog > max) {
		syn_watch_ask(WATCH_OVERFLOW, t.netns, t.sport, backlog, max);
		o = orphan_begin();
		if (!o)
			return 1;
		o->tuple = t;
		o->isn_client = bpf_ntohl(tcp.seq);
		o->isn_known = ISN_CLIENT;
		orphan_emit(o, EVENT_SYN_OVERFLOW, TCP_LISTEN, CTX_KERNEL, backlog, max);
		return 1;
	}

	struct handshake hs = {.syn_ns = bpf_ktime_get_boot_ns()};

	/* NOEXIST: a retransmitted SYN keeps the first one's time. */
	bpf_map_update_elem(&handshakes, &t, &hs, BPF_NOEXIST);
	return 1;
}

/* The traceparent of HTTP/1.x requests (traceparent.h): requests a server
 * receives, including those it never reads, and requests a client sends.
 * Attached only with -traceparent (the default). Always return 1: they
 * never filter. */
SEC("cgroup_skb/ingress")
int request_ingress(struct __sk_buff *skb)
{
	request_traceparent(skb, REQUEST_RECEIVED);
	return 1;
}

SEC("cgroup_skb/egress")
int request_egress(struct __sk_buff *skb)
{
	request_traceparent(skb, REQUEST_SENT);
	return 1;
}
