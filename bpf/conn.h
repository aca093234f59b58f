/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * conn.h: per-connection aggregation. A connection lives in the conns map
 * from its first event to tcp_destroy_sock, collecting events, and costs one
 * ring-buffer record when it ends. Events without a tracked socket become
 * orphan records at once.
 */
#ifndef TCPSPAN_CONN_H
#define TCPSPAN_CONN_H

#include "sock.h"

enum side {
	SIDE_UNKNOWN = 0,
	SIDE_CLIENT = 1,
	SIDE_SERVER = 2,
};

/* conn_emit sends c to user space, followed by only the events it holds:
 * a clean connection keeps 6 to 8 of MAX_CONN_EVENTS, so this copies about
 * 320-370 of 560 bytes into the ring buffer. records.go restores the full
 * layout. */
static __always_inline void conn_emit(const struct conn *c)
{
	__u32 n = *(volatile const __u32 *)&c->events_seen;
	__u64 size;

	if (n > MAX_CONN_EVENTS)
		n = MAX_CONN_EVENTS;
	size = __builtin_offsetof(struct conn, events) + (__u64)n * sizeof(struct conn_event);
	if (bpf_ringbuf_output(&events, (void *)c, size, rb_flags()))
		count(COUNTER_RINGBUF_LOST_CONN);
	else
		count(COUNTER_CONNS_EMITTED);
}

/* conn_create inserts a new connection for sk, unless the filter rejects it.
 * Returns the map entry, or NULL. A connect() or a new child starts afresh:
 * an entry left at the same address by a socket whose destroy was never
 * seen is emitted as it stands (flagged CONN_END_UNSEEN) and replaced. A
 * mid-life entry keeps one inserted first by another CPU. */
static __always_inline struct conn *conn_create(const struct sock *sk, __u8 side, __u8 flags)
{
	__u64 key = (__u64)sk;
	struct tuple t = {};
	struct conn *c;

	tuple_from_sk(&t, sk);
	if (t.sport == 0)
		t.sport = sk_local_port(sk);
	if (!tuple_wanted(&t))
		return NULL;
	/* Insert first and look for a stale entry only when that fails: the
	 * common case then costs one update and one lookup. */
	if (bpf_map_update_elem(&conns, &key, &zero_conn, BPF_NOEXIST) != 0) {
		struct conn *stale = bpf_map_lookup_elem(&conns, &key);

		if (!stale) {
			count(COUNTER_CONN_MAP_FULL);
			return NULL;
		}
		if (flags & CONN_MIDLIFE)
			return stale;
		/* Emit what it had, flagged: nothing is dropped silently. */
		count(COUNTER_CONN_STALE);
		stale->flags |= CONN_END_UNSEEN;
		conn_emit(stale);
		if (bpf_map_update_elem(&conns, &key, &zero_conn, BPF_ANY) != 0) {
			count(COUNTER_CONN_MAP_FULL);
			return NULL;
		}
	}
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return NULL;
	c->kind = RECORD_CONN;
	c->side = side;
	c->flags = flags;
	c->sk = key;
	c->start_ns = bpf_ktime_get_boot_ns();
	c->tuple = t;
	return c;
}

/* conn_get returns the tracked connection of a full socket. When there is
 * none, the socket predates the agent (or its entry was evicted): it is
 * tracked from now on and flagged CONN_MIDLIFE. Listening and unconnected
 * sockets are not connections and yield NULL. */
static __always_inline struct conn *conn_get(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct conn *c = bpf_map_lookup_elem(&conns, &key);
	__u8 state;

	if (c || !sk)
		return c;
	if (filter_netns && sk_netns(sk) != filter_netns)
		return NULL;
	state = sk_state(sk);
	/* A socket in CLOSE without an entry is unconnected, or already
	 * destroyed: tcp_reset() destroys an orphaned socket before the RST
	 * that answers the packet goes out. Those events become orphans. */
	if (state == TCP_LISTEN || state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV || state == TCP_CLOSE)
		return NULL;
	if (BPF_CORE_READ(sk, __sk_common.skc_dport) == 0)
		return NULL;
	if (sk_protocol(sk) != IPPROTO_TCP)
		return NULL;
	c = conn_create(sk, SIDE_UNKNOWN, CONN_MIDLIFE);
	if (c)
		count(COUNTER_CONN_MIDLIFE);
	return c;
}

/* conn_event appends an event and returns it, or NULL when the connection
 * holds MAX_CONN_EVENTS already (then it is counted). Slots are claimed
 * atomically, because a socket's events can arrive on two CPUs at once (a
 * close() racing an incoming packet). */
static __always_inline struct conn_event *conn_event(struct conn *c, __u64 ts, __u8 type, __u8 state, __u8 ctx,
						     __u32 pid, __u32 arg, __u32 arg2)
{
	__u32 n = fetch_add(&c->events_seen, 1);
	struct conn_event *e;

	if (n >= MAX_CONN_EVENTS) {
		count(COUNTER_CONN_EVENTS_LOST);
		return NULL;
	}
	e = &c->events[n & (MAX_CONN_EVENTS - 1)];
	e->ts_ns = ts ? ts : bpf_ktime_get_boot_ns();
	e->pid = pid;
	e->arg = arg;
	e->arg2 = arg2;
	e->type = type;
	e->state = state;
	e->ctx = ctx;
	e->how = 0;
	return e;
}

/* closes_own_file says whether a close() during which an event fires on sk
 * is the close of sk's own file, rather than of the listener sk was queued
 * on. A socket is still attached to its file when close() changes its
 * state or resets it (sock_orphan() comes after); a child its server never
 * accepted has no file. Only when close() finds the socket already in
 * CLOSE is it detached before the first event, its destroy: then a child
 * never accepted is told by its owner, still the listener's. */
static __always_inline bool closes_own_file(const struct conn *c, const struct sock *sk)
{
	if (BPF_CORE_READ(sk, sk_socket))
		return true;
	return !(c->side == SIDE_SERVER && (c->flags & CONN_OWNER_FROM_LISTENER));
}

/* conn_close records that the current task releases c's socket (r: by
 * close(), exit, ...): the closer, the bytes it left unread and a close
 * event, once. state is the socket's state before the release changed it. A
 * child released with its listener is not: its events name that process,
 * but the file is the listener's, and the child was never the process's to
 * close. */
static __always_inline void conn_close(struct conn *c, const struct sock *sk, const struct release *r, __u8 state)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	struct conn_event *e;
	__u64 pid_tgid;
	__u32 unread;

	if (c->closer_pid != 0 || !closes_own_file(c, sk))
		return;
	pid_tgid = bpf_get_current_pid_tgid();
	unread = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
	/* In CLOSE_WAIT and CLOSING the peer's FIN is in rcv_nxt until the
	 * application reads the end of file. It is not data, and tcp_close()
	 * does not count it as unread either. */
	if (unread > 0 && (state == TCP_CLOSE_WAIT || state == TCP_CLOSING))
		unread--;
	c->closer_pid = pid_tgid >> 32;
	c->closer_tid = (__u32)pid_tgid;
	c->closer_fd = (__u32)r->fd;
	c->closer_exit = r->exit_code;
	c->closer_how = r->how;
	c->unread_bytes = unread;
	bpf_get_current_comm(c->closer_comm, sizeof(c->closer_comm));
	e = conn_event(c, 0, EVENT_CLOSE, state, CTX_PROCESS, pid_tgid >> 32, (__u32)r->fd, (__u32)pid_tgid);
	if (e)
		e->how = r->how;
}

/* COUNTERS_SPAN bounds the part of tcp_sock that conn_counters copies in
 * one read: on 6.18 its counters lie within 668 bytes. */
#define COUNTERS_SPAN 1024

/* counters_buf holds that copy, per CPU: too big for the stack. */
struct counters_buf {
	__u8 b[COUNTERS_SPAN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters_buf);
} counters_bufs SEC(".maps");

/* tcp_counters is what conn_counters reads of a tcp_sock. */
struct tcp_counters {
	__u64 bytes_sent, bytes_retrans, bytes_received;
	__u32 segs_out, segs_in, total_retrans, srtt_us;
};

/* tcp_counters_read fills k from sk's tcp_sock with one read of the span
 * that holds the seven fields, at the running kernel's offsets (CO-RE), as
 * each helper call counts; a field at a lower offset than the span's start
 * is read past it, not before. Should they ever lie further apart than
 * COUNTERS_SPAN, each is read on its own. */
static __always_inline void tcp_counters_read(struct tcp_counters *k, const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u32 o_sent = bpf_core_field_offset(struct tcp_sock, bytes_sent);
	__u32 o_retrans = bpf_core_field_offset(struct tcp_sock, bytes_retrans);
	__u32 o_received = bpf_core_field_offset(struct tcp_sock, bytes_received);
	__u32 o_out = bpf_core_field_offset(struct tcp_sock, segs_out);
	__u32 o_in = bpf_core_field_offset(struct tcp_sock, segs_in);
	__u32 o_total = bpf_core_field_offset(struct tcp_sock, total_retrans);
	__u32 o_srtt = bpf_core_field_offset(struct tcp_sock, srtt_us);
	__u32 lo = min_u32(min_u32(min_u32(o_sent, o_retrans), min_u32(o_received, o_out)),
			   min_u32(min_u32(o_in, o_total), o_srtt));
	__u32 hi = max_u32(max_u32(max_u32(o_sent, o_retrans), o_received) + 8,
			   max_u32(max_u32(o_out, o_in), max_u32(o_total, o_srtt)) + 4);
	struct counters_buf *buf;
	__u32 zero = 0;

	if (hi - lo <= COUNTERS_SPAN && (buf = bpf_map_lookup_elem(&counters_bufs, &zero)) &&
	    !bpf_probe_read_kernel(buf->b, hi - lo, (const void *)sk + lo)) {
		__builtin_memcpy(&k->bytes_sent, &buf->b[o_sent - lo], 8);
		__builtin_memcpy(&k->bytes_retrans, &buf->b[o_retrans - lo], 8);
		__builtin_memcpy(&k->bytes_received, &buf->b[o_received - lo], 8);
		__builtin_memcpy(&k->segs_out, &buf->b[o_out - lo], 4);
		__builtin_memcpy(&k->segs_in, &buf->b[o_in - lo], 4);
		__builtin_memcpy(&k->total_retrans, &buf->b[o_total - lo], 4);
		__builtin_memcpy(&k->srtt_us, &buf->b[o_srtt - lo], 4);
		return;
	}
	k->bytes_sent = BPF_CORE_READ(tp, bytes_sent);
	k->bytes_retrans = BPF_CORE_READ(tp, bytes_retrans);
	k->bytes_received = BPF_CORE_READ(tp, bytes_received);
	k->segs_out = BPF_CORE_READ(tp, segs_out);
	k->segs_in = BPF_CORE_READ(tp, segs_in);
	k->total_retrans = BPF_CORE_READ(tp, total_retrans);
	k->srtt_us = BPF_CORE_READ(tp, srtt_us);
}

/* conn_counters reads the socket's counters into c, keeping the larger of
 * each. tcp_disconnect() zeroes them after the state change to CLOSE and
 * the reset it sends, and before the socket's destroy: a linger-0 close, a
 * listener's close of its queued children and a failed connect() all call
 * it. So they are read at that state change, at a reset, and at the end. */
static __always_inline void conn_counters(struct conn *c, const struct sock *sk)
{
	struct tcp_counters k;
	__u64 sent;
	__u32 srtt;

	tcp_counters_read(&k, sk);
	sent = k.bytes_sent - k.bytes_retrans;
	srtt = k.srtt_us >> 3;
	if (sent > c->bytes_sent)
		c->bytes_sent = sent;
	if (k.bytes_received > c->bytes_received)
		c->bytes_received = k.bytes_received;
	if (k.segs_out > c->segs_out)
		c->segs_out = k.segs_out;
	if (k.segs_in > c->segs_in)
		c->segs_in = k.segs_in;
	if (k.total_retrans > c->total_retrans)
		c->total_retrans = k.total_retrans;
	if (srtt)
		c->srtt_us = srtt;
}

/* conn_isns records the handshake's initial sequence numbers (struct conn)
 * as a state change ends it. At ESTABLISHED both SYNs are acknowledged:
 * this end's is snd_una - 1 and the peer's rcv_nxt - 1 (a SYN counts one
 * in sequence space). A connect() that leaves SYN_SENT otherwise (refused,
 * timed out, closed) has only its own, unacknowledged: snd_una. A SYN that
 * carried data (TCP Fast Open) would move snd_una further: its numbers are
 * wrong, and so is its trace id. */
static __always_inline void conn_isns(struct conn *c, const struct sock *sk, int oldstate, int newstate)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	if (newstate == TCP_ESTABLISHED) {
		c->isn_local = BPF_CORE_READ(tp, snd_una) - 1;
		c->isn_remote = BPF_CORE_READ(tp, rcv_nxt) - 1;
		c->flags |= CONN_ISN_LOCAL | CONN_ISN_REMOTE;
	} else if (oldstate == TCP_SYN_SENT) {
		c->isn_local = BPF_CORE_READ(tp, snd_una);
		c->flags |= CONN_ISN_LOCAL;
	}
}

/* orphan_isns fills an orphan's initial sequence numbers from the TCP header
 * of the packet its event answers or drops, where the packet tells them: a
 * SYN carries the client's; a handshake ACK (and the first segments after
 * it, which a listener answers with RST when the ACK was dropped) carries
 * the client's plus one as its sequence number and the server's plus one as
 * its acknowledgment. */
static __always_inline void orphan_isns(struct orphan *o, const struct tcphdr *th, bool handshake_ack)
{
	if (th->syn && !th->ack) {
		o->isn_client = bpf_ntohl(th->seq);
		o->isn_known = ISN_CLIENT;
	} else if (handshake_ack && th->ack && !th->syn && !th->rst) {
		o->isn_client = bpf_ntohl(th->seq) - 1;
		o->isn_server = bpf_ntohl(th->ack_seq) - 1;
		o->isn_known = ISN_CLIENT | ISN_SERVER;
	}
}

/* Event types that make a connection worth a look: the kernel-side mirror of
 * conn.Connection.Problem in Go. */
#define PROBLEM_EVENTS                                                                                   \
	((1u << EVENT_RST_SENT) | (1u << EVENT_RST_RECV) | (1u << EVENT_ERROR) | (1u << EVENT_RETRANS) | \
	 (1u << EVENT_SYNACK_RETRANS) | (1u << EVENT_DROP) | (1u << EVENT_SYN_OVERFLOW) | (1u << EVENT_ACK_OVERFLOW))

/* conn_clean reports whether c had no problem: no retransmit, and no reset,
 * error, drop or overflow among its events. A connection with more events
 * than it could keep is never called clean: the rest are unknown. */
static __always_inline bool conn_clean(const struct conn *c)
{
	__u32 n = *(volatile const __u32 *)&c->events_seen;

	if (c->total_retrans || c->retrans_seen || n > MAX_CONN_EVENTS)
		return false;
	for (__u32 i = 0; i < MAX_CONN_EVENTS; i++) {
		if (i >= n)
			break;
		if ((1u << (c->events[i].type & 31)) & PROBLEM_EVENTS)
			return false;
	}
	return true;
}

/* refused_folded counts c, a finished connection, in refused_storms if it
 * is a refused connect (a client's, whose only events are its states, the
 * reset that refused it, its error and its close), and reports whether it
 * did: then it sends no record. As with reset_folded, the first of each
 * kind in each window is sent, as an example; of the rest, the first is
 * kept whole in the count's entry. Never folded: those of a process that
 * listens or accepts (servers), whose refusals user space links to the
 * connections it closes because of them. */
static __always_inline bool refused_folded(const struct conn *c)
{
	__u32 n = *(volatile const __u32 *)&c->events_seen;
	struct refused_storm_key k = {};
	struct refused_storm *s;
	bool refused = false;

	if (!reset_window_ns || c->side != SIDE_CLIENT || c->traceparents || c->total_retrans || c->retrans_seen ||
	    (c->flags & (CONN_ISN_REMOTE | CONN_MIDLIFE | CONN_END_UNSEEN)) || n > MAX_CONN_EVENTS)
		return false;
	for (__u32 i = 0; i < MAX_CONN_EVENTS; i++) {
		__u8 type;

		if (i >= n)
			break;
		type = c->events[i].type;
		if (type == EVENT_RST_RECV)
			refused = true;
		else if (type != EVENT_STATE && type != EVENT_ERROR && type != EVENT_CLOSE)
			return false;
		k.kinds |= 1u << (type & 15);
	}
	if (!refused || bpf_map_lookup_elem(&servers, &c->owner_pid))
		return false;
	k.window = c->end_ns / reset_window_ns;
	__builtin_memcpy(k.saddr, c->tuple.saddr, sizeof(k.saddr));
	__builtin_memcpy(k.daddr, c->tuple.daddr, sizeof(k.daddr));
	k.netns = c->tuple.netns;
	k.pid = c->owner_pid;
	k.dport = c->tuple.dport;
	k.family = c->tuple.family;
	k.nevents = n;
	s = bpf_map_lookup_elem(&refused_storms, &k);
	if (!s) {
		/* The first of its window, unless another CPU was first. */
		if (!bpf_map_update_elem(&refused_storms, &k, &zero_refused_storm, BPF_NOEXIST))
			return false;
		s = bpf_map_lookup_elem(&refused_storms, &k);
		if (!s) {
			count(COUNTER_REFUSED_STORMS_FULL);
			return false;
		}
	}
	if (fetch_add(&s->count, 1) == 0)
		__builtin_memcpy(&s->first, c, sizeof(*c));
	s->last_ns = c->end_ns;
	count(COUNTER_REFUSED_FOLDED);
	return true;
}

/* close_told_at_destroy says whether a change to CLOSE from oldstate is left
 * to the socket's destroy to tell (closed_at_destroy), which saves this run
 * its lookup and its reads. That is a socket its process has closed
 * (SOCK_DEAD) as it leaves FIN_WAIT1, FIN_WAIT2, CLOSING or LAST_ACK: its
 * destroy comes next in the same call (tcp_done(), and __tcp_close(), call
 * inet_csk_destroy_sock() at once), in the same context. Every clean
 * connection ends so, one end by TIME_WAIT and the other by LAST_ACK. */
static __always_inline bool close_told_at_destroy(const struct sock *sk, int oldstate)
{
	if (oldstate != TCP_FIN_WAIT1 && oldstate != TCP_FIN_WAIT2 && oldstate != TCP_CLOSING &&
	    oldstate != TCP_LAST_ACK)
		return false;
	return BPF_CORE_READ(sk, __sk_common.skc_flags) & (1ULL << bpf_core_enum_value(enum sock_flags, SOCK_DEAD));
}

/* closed_at_destroy adds the change to CLOSE that close_told_at_destroy left
 * out, to a connection about to be sent: from the state its last change
 * entered, if that is one of the FIN states, at its end (c->end_ns); r is
 * the destroy's release, if a task's. An event the socket had in CLOSE
 * before its destroy (__tcp_close() resets an orphan it cannot keep after
 * the change) moves the change to just before that event. */
static __always_inline void closed_at_destroy(struct conn *c, const struct sock *sk, const struct release *r)
{
	__u32 n = *(volatile const __u32 *)&c->events_seen;
	__u64 ts = c->end_ns;
	__u8 last = 0;
	struct conn_event *e;

	if (n > MAX_CONN_EVENTS)
		return;
	for (__u32 i = 0; i < MAX_CONN_EVENTS; i++) {
		const struct conn_event *ev;

		if (i >= n)
			break;
		ev = &c->events[i];
		if (ev->type == EVENT_STATE) {
			last = ev->state;
			ts = c->end_ns;
		} else if (ev->state == TCP_CLOSE && ev->ts_ns <= ts) {
			ts = ev->ts_ns - 1;
		}
	}
	if (last != TCP_FIN_WAIT1 && last != TCP_FIN_WAIT2 && last != TCP_CLOSING && last != TCP_LAST_ACK)
		return;
	e = conn_event(c, ts, EVENT_STATE, TCP_CLOSE, r ? CTX_PROCESS : CTX_KERNEL, r ? current_tgid() : 0, last,
		       BPF_CORE_READ(sk, sk_err));
	if (e && r)
		e->how = r->how;
}

/* conn_sent says whether c, whose socket is being destroyed, is to be sent.
 * A clean connection is not when skip_clean is set: it is only counted. */
static __always_inline bool conn_sent(struct conn *c, const struct sock *sk)
{
	__u32 retrans;

	/* One that carried a traceparent is sent: its traceparent records
	 * wait for it in user space. A sent one has its counters read by
	 * conn_finish. */
	if (!skip_clean || c->traceparents)
		return true;
	/* conn_clean needs it (kept if tcp_disconnect zeroed it). */
	retrans = BPF_CORE_READ((const struct tcp_sock *)sk, total_retrans);
	if (retrans > c->total_retrans)
		c->total_retrans = retrans;
	if (conn_clean(c)) {
		count(COUNTER_CONNS_CLEAN_SKIPPED);
		return false;
	}
	return true;
}

/* conn_finish fills the final statistics from tcp_sock, emits the record if
 * it is to be sent (conn_sent), and forgets the socket. One not sent costs
 * no read of its statistics, nor of the clock. r is the destroy's release,
 * if a task's. */
static __always_inline void conn_finish(struct conn *c, const struct sock *sk, bool send, const struct release *r)
{
	__u64 key = (__u64)sk;

	if (send) {
		c->end_ns = bpf_ktime_get_boot_ns();
		c->final_state = sk_state(sk);
		closed_at_destroy(c, sk, r);
		conn_counters(c, sk);
		if (c->tuple.sport == 0)
			c->tuple.sport = sk_local_port(sk);
		if (!refused_folded(c))
			conn_emit(c);
	}
	bpf_map_delete_elem(&conns, &key);
}

/* orphan_begin reserves a zeroed orphan record in the ring buffer, to be
 * completed by orphan_emit() or given back by orphan_discard(). A failed
 * reservation is counted. */
static __always_inline struct orphan *orphan_begin(void)
{
	struct orphan *o = bpf_ringbuf_reserve(&events, sizeof(*o), 0);

	if (!o) {
		count(COUNTER_RINGBUF_LOST_ORPHAN);
		return NULL;
	}
	__builtin_memset(o, 0, sizeof(*o));
	o->kind = RECORD_ORPHAN;
	return o;
}

static __always_inline void orphan_discard(struct orphan *o)
{
	bpf_ringbuf_discard(o, BPF_RB_NO_WAKEUP);
}

/* orphan_emit completes an orphan whose tuple is filled: the event, the
 * actor's comm in process context, and the owner of the listener on the
 * local port; then submits it. */
static __always_inline void orphan_emit(struct orphan *o, __u8 type, __u8 state, __u8 ctx, __u32 arg, __u32 arg2)
{
	o->ev.ts_ns = bpf_ktime_get_boot_ns();
	o->ev.type = type;
	o->ev.state = state;
	o->ev.ctx = ctx;
	o->ev.arg = arg;
	o->ev.arg2 = arg2;
	if (ctx == CTX_PROCESS) {
		o->ev.pid = current_tgid();
		bpf_get_current_comm(o->comm, sizeof(o->comm));
	}
	owner_lookup(o->tuple.netns, o->tuple.sport, &o->owner_pid, &o->owner_cgroup, o->owner_comm);
	bpf_ringbuf_submit(o, rb_flags());
	count(COUNTER_ORPHANS_EMITTED);
}

#endif /* TCPSPAN_CONN_H */
