/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * traceparent.h: finds the W3C traceparent header of HTTP/1.x requests in
 * the packets of tracked connections (cgroup_skb, both directions), so that
 * a connection's span links to the application spans it carried. Only the
 * header's value leaves the kernel; no other payload byte does.
 *
 * It runs for every packet of the host, so it gives up as early as it can:
 * a packet too short to hold a request with the header, of no TCP socket,
 * or whose payload does not start with an HTTP method costs a few loads.
 * A request is scanned for the header in its first SCAN_BYTES bytes.
 */
#ifndef TCPSPAN_TRACEPARENT_H
#define TCPSPAN_TRACEPARENT_H

#include "conn.h"

/* SCAN_BYTES: how much of a request is searched for the header. A request
 * whose header comes later (big cookies) is not linked. */
#define SCAN_BYTES 2048
/* MIN_REQUEST: the fewest bytes a packet with a request and the header can
 * have: IPv4 and TCP headers, "GET / HTTP/1.0\r\n", "traceparent: ", the
 * 55-character value and "\r\n\r\n". Shorter packets (ACKs) pass at once. */
#define MIN_REQUEST (20 + 20 + 16 + 13 + 55 + 4)

/* REQUEST_STATES: the socket states in which a request is looked for. */
#define REQUEST_STATES                                                                          \
	((1u << BPF_TCP_ESTABLISHED) | (1u << BPF_TCP_CLOSE_WAIT) | (1u << BPF_TCP_FIN_WAIT1) | \
	 (1u << BPF_TCP_FIN_WAIT2))

/* scan_buf holds the scanned part of a request, per CPU: too big for the
 * stack. The second half is slack, so that reads past the scanned part
 * stay inside the buffer (and are cut off by length). */
struct scan_buf {
	char b[2 * SCAN_BYTES];
	/* found passes the value's offset out of the scan: read back from
	 * memory, it is one unknown number to the verifier, so that what
	 * follows is verified once, not once per place the scan can stop. */
	__u32 found;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scan_buf);
} scan_bufs SEC(".maps");

/* at_most bounds an index into a scan_buf. The barrier keeps the compiler
 * from dropping the mask where it can prove the index small: older
 * verifiers (5.10) cannot always prove it, and reject the access. */
#define at_most(idx, mask)                    \
	({                                    \
		__u32 __i = (idx);            \
		asm volatile("" : "+r"(__i)); \
		__i &(mask);                  \
	})

/* is_method says whether 4 bytes start an HTTP/1.x request line. */
static __always_inline bool is_method(__u32 w)
{
	/* Little-endian: the first byte is the lowest. */
	switch (w) {
	case 0x20544547: /* "GET " */
	case 0x54534f50: /* "POST" */
	case 0x20545550: /* "PUT " */
	case 0x44414548: /* "HEAD" */
	case 0x454c4544: /* "DELE"TE */
	case 0x43544150: /* "PATC"H */
	case 0x4954504f: /* "OPTI"ONS */
	case 0x4e4e4f43: /* "CONN"ECT */
		return true;
	}
	return false;
}

/* payload_offset returns where the TCP payload of a packet starts (the
 * packet starts at its network header in cgroup_skb), or 0 if it is not
 * TCP. */
static __always_inline __u32 payload_offset(struct __sk_buff *skb)
{
	__u32 off;
	__u8 b;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, &b, 1))
			return 0;
		off = (b & 15) * 4;
		if (bpf_skb_load_bytes(skb, 9, &b, 1) || b != IPPROTO_TCP)
			return 0;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &b, 1) || b != IPPROTO_TCP)
			return 0;
		off = 40;
	} else {
		return 0;
	}
	/* The TCP header's length, in 32-bit words, is the high nibble of
	 * its 13th byte. */
	if (bpf_skb_load_bytes(skb, off + 12, &b, 1))
		return 0;
	return off + (b >> 4) * 4;
}

/* header_at says whether "traceparent:" (any case) starts at b[i]. */
static __always_inline bool header_at(const char *b, __u32 i)
{
	__u64 w;
	__u32 v;

	__builtin_memcpy(&w, &b[at_most(i, SCAN_BYTES - 1)], 8);
	__builtin_memcpy(&v, &b[at_most(i + 8, SCAN_BYTES - 1)], 4);
	/* Lower case by setting 0x20 in the letters. */
	return (w | 0x2020202020202020ULL) == 0x7261706563617274ULL /* "tracepar" */ &&
	       (v | 0x00202020) == 0x3a746e65 /* "ent:" */;
}

/* scan_ctx is the state of one scan: the buffer and how much of it holds
 * the request. */
struct scan_ctx {
	struct scan_buf *buf;
	__u32 n;
	__u32 found; /* 1 when found: buf->found has the value's offset */
};

/* scan_word looks at the i-th word of the request for the start of a line
 * that is the header. A line starts after the first '\n' in a word (header
 * lines are longer than a word), found with the zero-byte trick on the
 * word XOR '\n' in every byte, and its position by halving. Returns 1 to
 * stop: found, or past the request. */
static __always_inline long scan_word(__u32 i, struct scan_ctx *sc)
{
	struct scan_buf *buf = sc->buf;
	__u64 x, z;
	__u32 p;

	if (i * 8 >= sc->n)
		return 1;
	__builtin_memcpy(&x, &buf->b[at_most(i * 8, SCAN_BYTES - 1)], 8);
	x ^= 0x0a0a0a0a0a0a0a0aULL;
	z = (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL;
	if (!z)
		return 0;
	p = i * 8 + 1;
	if (!(z & 0x80808080ULL)) {
		p += 4;
		z >>= 32;
	}
	if (!(z & 0x8080ULL)) {
		p += 2;
		z >>= 16;
	}
	if (!(z & 0x80ULL))
		p += 1;
	/* Bytes past n are stale: a match there is told by the caller, from
	 * buf->found. */
	if (!header_at(buf->b, p))
		return 0;
	buf->found = p + 12;
	sc->found = 1;
	return 1;
}

#ifdef TCPSPAN_COMPAT
/* Kernels without bpf_loop (before 5.17) verify every turn of a loop: a
 * shorter scan keeps the program within the verifier's limit. */
#define SCAN_WORDS_COMPAT 24

static __always_inline bool scan(struct scan_buf *buf, __u32 n)
{
	struct scan_ctx sc = {.buf = buf, .n = n};

	for (__u32 i = 0; i < SCAN_WORDS_COMPAT; i++) {
		if (scan_word(i, &sc))
			break;
	}
	return sc.found;
}
#else
/* scan_word_cb is scan_word as a bpf_loop callback: verified once, where a
 * loop of SCAN_BYTES / 8 turns was verified turn by turn, past the
 * verifier's limit. */
static long scan_word_cb(__u32 i, void *ctx)
{
	return scan_word(i, ctx);
}

/* scan says whether the request's first n bytes in buf hold the header;
 * buf->found is then where its value starts. */
static __always_inline bool scan(struct scan_buf *buf, __u32 n)
{
	struct scan_ctx sc = {.buf = buf, .n = n};

	bpf_loop(SCAN_BYTES / 8, scan_word_cb, &sc, 0);
	return sc.found;
}
#endif

/* request_traceparent looks for a traceparent header in the packet, if it
 * starts a request on a tracked connection, and sends its value. */
static __always_inline void request_traceparent(struct __sk_buff *skb, __u8 dir)
{
	struct bpf_sock *bsk = skb->sk;
	struct traceparent *r;
	struct tcp_sock *tp;
	struct scan_buf *buf;
	__u32 off, n, zero = 0, v, len;
	struct conn *c;
	__u64 key;
	__u32 w;

	if (skb->len < MIN_REQUEST || !bsk)
		return;
	/* Requests flow in ESTABLISHED, and also after one end has closed: a
	 * client sends into a connection whose FIN it has not yet read
	 * (CLOSE_WAIT), and a server that closed first receives it
	 * (FIN_WAIT1/2), then resets it. A UDP socket may be ESTABLISHED too:
	 * payload_offset turns it away, and bpf_skc_to_tcp_sock anything else
	 * that is not TCP. */
	if (!((1u << (bsk->state & 31)) & REQUEST_STATES))
		return;
	off = payload_offset(skb);
	if (!off || off >= skb->len || skb->len - off < MIN_REQUEST - 40)
		return;
	if (bpf_skb_load_bytes(skb, off, &w, 4) || !is_method(w))
		return;
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return;
	/* Only connections tracked, which applies the filters. */
	key = address_of(tp);
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return;
	buf = bpf_map_lookup_elem(&scan_bufs, &zero);
	if (!buf)
		return;
	n = skb->len - off;
	if (n > SCAN_BYTES)
		n = SCAN_BYTES;
	/* 1 to SCAN_BYTES, in a form older verifiers follow. */
	n = at_most(n - 1, SCAN_BYTES - 1) + 1;
	if (bpf_skb_load_bytes(skb, off, buf->b, n))
		return;
	if (!scan(buf, n))
		return;
	v = *(volatile __u32 *)&buf->found;
	if (v >= SCAN_BYTES || v > n)
		return;
	/* Optional whitespace before the value. */
	for (int k = 0; k < 2; k++) {
		char ch = buf->b[at_most(v, 2 * SCAN_BYTES - 1)];

		if (v < n && (ch == ' ' || ch == '\t'))
			v++;
	}
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count(COUNTER_RINGBUF_LOST_TRACEPARENT);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	for (len = 0; len < TRACEPARENT_VALUE; len++) {
		char ch = buf->b[at_most(v + len, 2 * SCAN_BYTES - 1)];

		if (v + len >= n || ch == '\r' || ch == '\n')
			break;
		r->value[len] = ch;
	}
	r->kind = RECORD_TRACEPARENT;
	r->dir = dir;
	r->len = len;
	r->sk = key;
	r->ts_ns = bpf_ktime_get_boot_ns();
	if (dir == REQUEST_SENT) {
		/* bytes_received counts the peer's FIN: the agent's count of
		 * bytes received at the end does not (conn.finReceived). */
		r->answer_bytes = tp->bytes_received;
		if (bsk->state == BPF_TCP_CLOSE_WAIT && r->answer_bytes > 0)
			r->answer_bytes--;
	} else
		r->answer_bytes = tp->bytes_sent - tp->bytes_retrans;
	fetch_add(&c->traceparents, 1);
	bpf_ringbuf_submit(r, rb_flags());
}

#endif /* TCPSPAN_TRACEPARENT_H */
