/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * records.h: the layout of every ring-buffer record tcpspan emits. Go decodes
 * them through the types bpf2go generates from this file (-type flags in
 * gen.go), so there is no hand-kept mirror on the Go side.
 *
 * Fields are ordered by size and padded explicitly: the object is compiled
 * with -Wpadded, and bpf2go needs a layout without implicit holes.
 */
#ifndef TCPSPAN_RECORDS_H
#define TCPSPAN_RECORDS_H

/* MAX_CONN_EVENTS is how many events one connection keeps in the kernel.
 * Later events are only counted (conn.events_seen). A clean client or server
 * connection needs about 8 (states, accept, close). */
#define MAX_CONN_EVENTS 16

/* MAX_RETRANS_EVENTS is how many retransmits per connection become events;
 * the rest are only counted (conn.total_retrans, conn.retrans_seen). An
 * enum, so that Go reads it from bpf2go. */
enum retrans_limit {
	MAX_RETRANS_EVENTS = 3,
};

/* The first field of every record says which struct it is. */
enum record_kind {
	RECORD_CONN = 1,        /* struct conn: one finished connection */
	RECORD_ORPHAN = 2,      /* struct orphan: an event with no tracked socket */
	RECORD_SYN_WATCH = 3,   /* struct syn_watch_ask: attach the SYN watch */
	RECORD_TRACEPARENT = 4, /* struct traceparent: a request's W3C trace context */
};

/* What happened, in struct conn_event.type. */
enum event_type {
	EVENT_STATE = 1,          /* state change: state = new, arg = old, arg2 = sk_err entering CLOSE */
	EVENT_SYN = 2,            /* SYN seen at the listener (cgroup_skb); arg = SYN_ESTIMATED if placed by the RTT */
	EVENT_ACCEPT = 3,         /* accept() returned it: pid, arg = fd */
	EVENT_CLOSE = 4,          /* a process released the socket: pid, arg = fd (or -1), arg2 = tid, how */
	EVENT_RST_SENT = 5,       /* tcp_send_reset: arg = reason, how; arg2 see HOW_VIA_LISTENER */
	EVENT_RST_RECV = 6,       /* tcp_receive_reset */
	EVENT_ERROR = 7,          /* inet_sk_error_report: arg = errno, arg2 = the peer's receive window (snd_wnd) */
	EVENT_RETRANS = 8,        /* tcp_retransmit_skb */
	EVENT_SYNACK_RETRANS = 9, /* tcp_retransmit_synack: arg = count so far */
	EVENT_DROP = 10,          /* kfree_skb with a TCP reason: arg = reason */
	EVENT_SYN_OVERFLOW = 11,  /* SYN dropped, accept queue full: arg = backlog, arg2 = max */
	EVENT_ACK_OVERFLOW = 12,  /* handshake ACK dropped, accept queue full: likewise */
};

/* Where an event ran, in struct conn_event.ctx. */
enum exec_ctx {
	CTX_UNKNOWN = 0,
	CTX_PROCESS = 1, /* a task in its own context inside close(): pid is the actor */
	CTX_KERNEL = 2,  /* softirq, timer or packet processing: no process acted */
};

/* How a process released a socket's file, in the low bits of
 * conn_event.how (CTX_PROCESS; see release_by_task in sock.h). */
enum release_how {
	RELEASE_NONE = 0,        /* not a release (accept(), connect()) */
	RELEASE_CLOSE = 1,       /* close(fd) */
	RELEASE_CLOSE_RANGE = 2, /* close_range(): fd only when the range is one fd */
	RELEASE_DUP = 3,         /* dup2() or dup3() onto the fd */
	RELEASE_EXEC = 4,        /* execve() closed it as close-on-exec */
	RELEASE_EXIT = 5,        /* the process exited or was killed: conn.closer_exit */
};

/* conn_event.how: the release (enum release_how), and what else is known
 * of how the event came about. */
enum event_how {
	HOW_RELEASE_MASK = 7,
	/* The release was of the listener a never-accepted child was queued
	 * on; EVENT_RST_SENT's arg2 is then the listener's accept queue
	 * length when it closed, 0 if unknown. */
	HOW_VIA_LISTENER = 8,
	/* EVENT_RST_SENT: the reset answers a packet received (the kernel
	 * passed the packet). Else it is the socket's own (an "active" reset:
	 * a release, a timer, memory pressure). */
	HOW_ANSWER = 16,
};

/* Flags in struct conn.flags. */
enum conn_flags {
	CONN_MIDLIFE = 1,             /* first seen after it opened */
	CONN_OWNER_FROM_LISTENER = 2, /* owner is the listener's, not the acceptor's */
	CONN_END_UNSEEN = 4,          /* its socket address was reused before its destroy was seen */
	/* The kernel side's own bookkeeping, meaningless to user space: */
	CONN_SYN_UNSEEN = 8,          /* a child whose SYN the watch did not see: estimate it */
	CONN_LISTENER_UNLEARNED = 16, /* its listener's address is unknown: learn it at accept() */
	CONN_LISTENER_HIGH = 32,      /* its listener's queue was high: look again at accept() */
	/* Which initial sequence numbers are known (isn_local, isn_remote). */
	CONN_ISN_LOCAL = 64,
	CONN_ISN_REMOTE = 128,
};

/* Which initial sequence numbers an orphan knows, in struct orphan.isn_known. */
enum isn_known {
	ISN_CLIENT = 1, /* isn_client: the SYN's sequence number */
	ISN_SERVER = 2, /* isn_server: the SYN-ACK's */
};

/* EVENT_SYN's arg when the SYN was not seen, but placed one handshake RTT
 * before the handshake completed: at the SYN-ACK, microseconds after it. */
#define SYN_ESTIMATED 1

/* Why the kernel side asks for the SYN watch, in struct syn_watch_ask.why. */
enum syn_watch_why {
	WATCH_UNLEARNED_LISTENER = 1, /* a child of a listener whose address is unknown */
	WATCH_QUEUE_HIGH = 2,         /* an accept queue is half full or more */
	WATCH_OVERFLOW = 3,           /* an accept queue overflowed */
	WATCH_SMALL_QUEUE = 4,        /* a listener with a limit below SMALL_QUEUE */
};

/* SMALL_QUEUE: an accept queue with a lower limit can be filled by one burst
 * of connections (a handshake every 10 us or so on loopback) in the 80-180
 * us the SYN watch takes to attach. While such a listener exists, the watch
 * stays on. (Python's socketserver and rinetd use 5, Java's ServerSocket
 * 50; nginx 511, Go somaxconn.) An enum, so that Go reads it from bpf2go. */
enum queue_limit {
	SMALL_QUEUE = 64,
};

/* Special values of conn_event.arg for resets. */
#define RESET_REASON_UNKNOWN 0xffffffff /* the kernel does not say (before 6.10) */
#define SYSCALL_NONE 0xffffffff         /* not acting through a syscall */

/* tuple is a connection seen from this host: s* is the local end, d* the
 * remote end. IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d). Ports
 * are in host byte order. netns is the network namespace inode. */
struct tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	__u16 sport;
	__u16 dport;
	__u16 family; /* AF_INET or AF_INET6 */
	__u8 _pad[6];
};

/* conn_event is one kernel event, with its true time. */
struct conn_event {
	__u64 ts_ns; /* bpf_ktime_get_boot_ns() */
	__u32 pid;   /* acting tgid, only in CTX_PROCESS, else 0 */
	__u32 arg;   /* meaning depends on type (see enum event_type) */
	__u32 arg2;
	__u8 type;  /* enum event_type */
	__u8 state; /* socket state (TCP_*) when it happened */
	__u8 ctx;   /* enum exec_ctx */
	__u8 how;   /* enum event_how */
};

/* conn is the per-socket state the kernel aggregates, and the record emitted
 * once when the socket is destroyed. */
struct conn {
	__u32 kind;       /* RECORD_CONN */
	__u8 side;        /* 0 unknown, 1 client (connect), 2 server (accepted) */
	__u8 flags;       /* enum conn_flags */
	__u8 final_state; /* socket state at destroy */
	__u8 _pad0;
	__u64 sk;             /* kernel socket address: identity while alive */
	__u64 start_ns;       /* first thing seen (SYN, connect, child), boot ns */
	__u64 end_ns;         /* tcp_destroy_sock, boot ns */
	__u64 bytes_sent;     /* payload bytes sent, retransmits not counted again */
	__u64 bytes_received; /* tcp_sock.bytes_received: payload, plus 1 for a FIN */
	/* The owner's cgroup v2 id (its container, if any), read when it
	 * connected, accepted or listened: user space finds the cgroup's path
	 * by it when the owner is gone. 0 if unknown. */
	__u64 owner_cgroup;
	__u32 segs_out;
	__u32 segs_in;
	__u32 total_retrans; /* tcp_sock.total_retrans */
	__u32 srtt_us;       /* smoothed RTT, microseconds */
	__u32 owner_pid;     /* tgid that connected or accepted (or the listener's) */
	__u32 closer_pid;    /* tgid that released the socket (close(), exit...), 0 if none seen */
	__u32 closer_tid;
	__u32 closer_fd;    /* the fd released, 0xffffffff if the release names none */
	__u32 unread_bytes; /* bytes received but unread at close() */
	__u32 events_seen;  /* events seen; the first MAX_CONN_EVENTS are in events[] */
	__u32 retrans_seen; /* tcp_retransmit_skb hits */
	/* The initial sequence numbers of this end (its SYN or SYN-ACK) and of
	 * the peer, read when the handshake ends (CONN_ISN_*). Both ends see
	 * them, and NAT leaves them alone: user space derives the connection's
	 * trace id from them. */
	__u32 isn_local;
	__u32 isn_remote;
	__u32 traceparents; /* traceparent records sent for it (struct traceparent) */
	/* The closer's task exit_code when it released the socket by exiting
	 * (RELEASE_EXIT): a fatal signal in the low 7 bits, or the exit
	 * status in bits 8-15. */
	__u32 closer_exit;
	__u32 closer_how; /* enum release_how */
	struct tuple tuple;
	char owner_comm[16];
	char closer_comm[16];
	struct conn_event events[MAX_CONN_EVENTS];
};

/* orphan is an event with no tracked full socket: a reset sent from a
 * listener, a time-wait socket or for no socket, an accept-queue overflow,
 * a drop before the socket exists, or a SYN-ACK retransmit of a handshake
 * whose ACK was dropped. Go joins orphans by tuple. */
struct orphan {
	__u32 kind;         /* RECORD_ORPHAN */
	__u32 owner_pid;    /* the listener's owner (by netns and local port), or 0 */
	__u64 owner_cgroup; /* its cgroup v2 id, 0 if unknown */
	struct conn_event ev;
	struct tuple tuple;
	char comm[16];       /* actor's comm, in CTX_PROCESS */
	char owner_comm[16]; /* listener owner's comm */
	/* The handshake's initial sequence numbers, as far as the packet or
	 * request socket tells them (isn_known, enum isn_known). */
	__u32 isn_client;
	__u32 isn_server;
	__u8 isn_known;
	__u8 _pad[7];
};

/* syn_watch_ask asks user space to attach the SYN watch (see syn_watch_ask
 * in tcpspan.bpf.c). backlog and max are the queue's, when known. */
struct syn_watch_ask {
	__u32 kind; /* RECORD_SYN_WATCH */
	__u32 netns;
	__u32 backlog;
	__u32 max;
	__u16 port;
	__u8 why; /* enum syn_watch_why */
	__u8 _pad;
};

/* TRACEPARENT_VALUE is how much of a traceparent header's value is copied:
 * a version 00 value is 55 characters. */
#define TRACEPARENT_VALUE 64

/* Directions of a request, in struct traceparent.dir. */
enum request_dir {
	REQUEST_SENT = 1,     /* this end sent it: a client */
	REQUEST_RECEIVED = 2, /* this end received it: a server */
};

/* traceparent is the value of a W3C traceparent header in an HTTP/1.x
 * request that a tracked connection carried, and nothing else of the
 * request. User space parses the value and joins it to the connection's
 * record by sk; conn.traceparents counts them, so that stale ones are told. */
struct traceparent {
	__u32 kind; /* RECORD_TRACEPARENT */
	__u8 dir;   /* enum request_dir */
	__u8 len;   /* bytes of value, up to the end of the line or of the packet */
	__u8 _pad[2];
	__u64 sk;    /* the socket: struct conn.sk */
	__u64 ts_ns; /* when the packet passed, boot ns */
	/* The answer's byte count when the request passed: bytes received for
	 * a request sent, bytes sent for one received. Equal at the end, no
	 * answer came: the request was in flight when the connection ended. */
	__u64 answer_bytes;
	char value[TRACEPARENT_VALUE];
};

/* reset_storm_key is one kind of reset the kernel counts instead of sending
 * (reset_folded in tcpspan.bpf.c): those sent for no socket at all, from one
 * local address and port, to one peer address, for one reason, within one
 * window of reset_window_ns. The peer's port is not in it: a connect loop
 * uses a new one each time. */
struct reset_storm_key {
	__u64 window; /* boot ns / reset_window_ns */
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	__u32 reason;
	__u16 sport;
	__u16 family;
	__u8 _pad[4];
};

/* reset_storm counts the resets of one key after the first, which was sent
 * as an orphan record (the example). */
struct reset_storm {
	__u64 first_ns; /* the first one counted, boot ns; 0 while none */
	__u64 last_ns;  /* the last one counted */
	__u64 count;
};

/* refused_storm_key is one kind of refused connect the kernel counts
 * instead of sending (refused_folded in conn.h): by one process, from one
 * local address to one remote address and port, with the same kinds and
 * number of events, within one window of reset_window_ns. The local port
 * is not in it: each connect gets a new one. */
struct refused_storm_key {
	__u64 window; /* boot ns / reset_window_ns */
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	__u32 pid;
	__u16 dport;
	__u16 family;
	__u16 kinds;  /* bit per enum event_type present */
	__u8 nevents; /* events it holds */
	__u8 _pad;
};

/* refused_storm counts the refused connects of one key after the first,
 * which was sent as a record (the example), and keeps the first of those
 * counted as it ended. */
struct refused_storm {
	__u32 count;
	__u32 _pad;
	__u64 last_ns; /* when the last one counted ended, boot ns */
	struct conn first;
};

/* Counters in the per-CPU "counters" map. Every record or event the kernel
 * side fails to keep lands in one of these. */
enum counter {
	COUNTER_RINGBUF_LOST_CONN = 0,   /* ring buffer full: conn record lost */
	COUNTER_RINGBUF_LOST_ORPHAN = 1, /* ring buffer full: orphan record lost */
	COUNTER_CONN_MAP_FULL = 2,       /* conns map update failed */
	COUNTER_CONN_EVENTS_LOST = 3,    /* events beyond MAX_CONN_EVENTS */
	COUNTER_CONN_MIDLIFE = 4,        /* connections first seen mid-life */
	COUNTER_CONNS_EMITTED = 5,
	COUNTER_ORPHANS_EMITTED = 6,
	/* connections destroyed without an entry: evicted from the full conns
	 * map, or idle since before the agent started */
	COUNTER_DESTROYED_UNTRACKED = 7,
	/* entries replaced by a new connection at the same socket address:
	 * their destroy was never seen */
	COUNTER_CONN_STALE = 8,
	/* clean connections not sent: skip_clean (nothing would export them) */
	COUNTER_CONNS_CLEAN_SKIPPED = 9,
	COUNTER_RINGBUF_LOST_TRACEPARENT = 10, /* ring buffer full: traceparent record lost */
	/* closed-port resets counted in reset_storms instead of sent (reset_folded) */
	COUNTER_RESETS_FOLDED = 11,
	/* closed-port resets sent as records because reset_storms was full */
	COUNTER_RESET_STORMS_FULL = 12,
	/* refused connects counted in refused_storms instead of sent (refused_folded) */
	COUNTER_REFUSED_FOLDED = 13,
	/* refused connects sent as records because refused_storms was full */
	COUNTER_REFUSED_STORMS_FULL = 14,
	/* retransmits the kernel tried and did not send, nor count (its
	 * tcp_retransmit_skb tells them after 6.12): not retransmits */
	COUNTER_RETRANS_UNSENT = 15,
	COUNTER_MAX = 16,
};

#endif /* TCPSPAN_RECORDS_H */
