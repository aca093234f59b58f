/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sock.h: reading sockets, packets and the execution context, shared by all
 * hooks. Everything here is CO-RE, so one object serves every kernel whose
 * BTF has the fields; fields that not all kernels have are guarded.
 */
#ifndef TCPSPAN_SOCK_H
#define TCPSPAN_SOCK_H

#include "maps.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define IPPROTO_MPTCP 262
#define S_IFMT 00170000
#define S_IFSOCK 0140000
/* errno values (asm-generic/errno*.h), as the kernel passes them, negated */
#define EINVAL 22
#define EAGAIN 11
#define ENOMEM 12
#define EBUSY 16
#define EHOSTUNREACH 113

#define min_u32(a, b) ((a) < (b) ? (a) : (b))
#define max_u32(a, b) ((a) > (b) ? (a) : (b))

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline void map_ipv4(__u8 *dst, __be32 addr)
{
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

static __always_inline __u16 sk_protocol(const struct sock *sk)
{
	/* A bitfield before 5.6, a plain u16 since: the probed read handles both. */
	return BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
}

static __always_inline __u8 sk_state(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_state);
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* tuple_from_sk fills t (zeroed by the caller) from a socket's common part,
 * which full, request and time-wait sockets all share. The local port comes
 * from skc_num, which is cleared when a full socket gives its port back
 * (before the tracepoint of its move to CLOSE), so callers that may run after
 * that use sk_local_port(). */
static __always_inline void tuple_from_sk(struct tuple *t, const struct sock *sk)
{
	/* The IPv4 addresses, the ports and the family lead struct
	 * sock_common: one read of its head instead of one per field, as each
	 * helper call counts. The offsets are the running kernel's (CO-RE);
	 * should they ever leave the head, each field is read on its own. */
	__u32 o_daddr = bpf_core_field_offset(struct sock_common, skc_daddr);
	__u32 o_saddr = bpf_core_field_offset(struct sock_common, skc_rcv_saddr);
	__u32 o_dport = bpf_core_field_offset(struct sock_common, skc_dport);
	__u32 o_num = bpf_core_field_offset(struct sock_common, skc_num);
	__u32 o_family = bpf_core_field_offset(struct sock_common, skc_family);
	__u8 head[24] = {};
	__be32 daddr, saddr;
	__be16 dport;
	__u16 family;

	if (bpf_core_field_offset(struct sock, __sk_common) == 0 && o_daddr <= 20 && o_saddr <= 20 && o_dport <= 22 &&
	    o_num <= 22 && o_family <= 22) {
		bpf_probe_read_kernel(head, sizeof(head), sk);
		__builtin_memcpy(&daddr, &head[o_daddr], 4);
		__builtin_memcpy(&saddr, &head[o_saddr], 4);
		__builtin_memcpy(&dport, &head[o_dport], 2);
		__builtin_memcpy(&t->sport, &head[o_num], 2);
		__builtin_memcpy(&family, &head[o_family], 2);
	} else {
		daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
		t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
		family = BPF_CORE_READ(sk, __sk_common.skc_family);
	}
	t->family = family;
	t->netns = sk_netns(sk);
	t->dport = bpf_ntohs(dport);
	if (family == AF_INET) {
		map_ipv4(t->saddr, saddr);
		map_ipv4(t->daddr, daddr);
	} else {
		BPF_CORE_READ_INTO(&t->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* sk_local_port reads the local port of a full socket from inet_sport, which
 * stays set until the socket is freed. */
static __always_inline __u16 sk_local_port(const struct sock *sk)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	return bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
}

/* tuple_from_skb_th fills t (zeroed by the caller) from a received TCP
 * packet, seen from this host: the packet's destination is the local end,
 * and th (if not NULL) with its TCP header. Returns 0 on success, -1 if it is
 * not TCP over IPv4 or IPv6. */
static __always_inline int tuple_from_skb_th(struct tuple *t, const struct sk_buff *skb, struct tcphdr *th_out)
{
	/* head, network_header, transport_header and protocol lie within a
	 * few dozen bytes of sk_buff: one read of that span, at the running
	 * kernel's offsets (CO-RE), instead of four, as each helper call
	 * counts; should they ever lie further apart, each is read alone. */
	__u32 o_head = bpf_core_field_offset(struct sk_buff, head);
	__u32 o_nh = bpf_core_field_offset(struct sk_buff, network_header);
	__u32 o_th = bpf_core_field_offset(struct sk_buff, transport_header);
	__u32 o_proto = bpf_core_field_offset(struct sk_buff, protocol);
	__u32 lo = min_u32(min_u32(o_head, o_nh), min_u32(o_th, o_proto));
	__u32 hi = max_u32(o_head + 8, max_u32(max_u32(o_nh, o_th), o_proto) + 2);
	unsigned char *head;
	__u8 span[64] = {};
	__u16 nh, th, proto;
	struct tcphdr tcp;

	if (hi - lo <= sizeof(span) && !bpf_probe_read_kernel(span, hi - lo, (const void *)skb + lo)) {
		__builtin_memcpy(&head, &span[o_head - lo], 8);
		__builtin_memcpy(&nh, &span[o_nh - lo], 2);
		__builtin_memcpy(&th, &span[o_th - lo], 2);
		__builtin_memcpy(&proto, &span[o_proto - lo], 2);
		proto = bpf_ntohs(proto);
	} else {
		head = BPF_CORE_READ(skb, head);
		nh = BPF_CORE_READ(skb, network_header);
		th = BPF_CORE_READ(skb, transport_header);
		proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	}

	if (proto == ETH_P_IP) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return -1;
		if (ip.protocol != IPPROTO_TCP)
			return -1;
		/* transport_header is ~0 when unset; derive it from the IP header. */
		if (th == (__u16)~0U || th <= nh)
			th = nh + ip.ihl * 4;
		t->family = AF_INET;
		map_ipv4(t->saddr, ip.daddr);
		map_ipv4(t->daddr, ip.saddr);
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return -1;
		if (ip6.nexthdr != IPPROTO_TCP)
			return -1;
		if (th == (__u16)~0U || th <= nh)
			th = nh + sizeof(ip6);
		t->family = AF_INET6;
		__builtin_memcpy(t->saddr, &ip6.daddr, 16);
		__builtin_memcpy(t->daddr, &ip6.saddr, 16);
	} else {
		return -1;
	}
	if (bpf_probe_read_kernel(&tcp, sizeof(tcp), head + th))
		return -1;
	t->sport = bpf_ntohs(tcp.dest);
	t->dport = bpf_ntohs(tcp.source);
	t->netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	if (th_out)
		*th_out = tcp;
	return 0;
}

static __always_inline int tuple_from_skb(struct tuple *t, const struct sk_buff *skb)
{
	return tuple_from_skb_th(t, skb, NULL);
}

/* port_wanted applies the port filter. */
static __always_inline bool port_wanted(__u16 sport, __u16 dport)
{
	if (filter_ports[0] == 0)
		return true;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		__u16 p = filter_ports[i];

		if (p == 0)
			break;
		if (p == sport || p == dport)
			return true;
	}
	return false;
}

static __always_inline bool tuple_wanted(const struct tuple *t)
{
	if (filter_netns && t->netns != filter_netns)
		return false;
	return port_wanted(t->sport, t->dport);
}

/* sk_from_fd resolves a file descriptor of the current task to its socket,
 * or NULL when it is not a socket. */
static __always_inline struct sock *sk_from_fd(__u64 fd)
{
	/* bpf_get_current_task_btf() needs 5.11; this works on 5.10 too. */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;
	struct socket *sock;

	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

/* rb_flags batches reader wake-ups: the reader is woken once, as the
 * pending data crosses wakeup_bytes, and otherwise polls on a short timer
 * (PollInterval). One wake-up per record would cost more than the record
 * itself, and so would waking on every record while the reader is behind. */
static __always_inline __u64 rb_flags(void)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	/* The window is two records wide, so that a crossing is rarely missed
	 * between CPUs; a missed one waits for the poll. */
	if (avail >= wakeup_bytes && avail < wakeup_bytes + 2 * sizeof(struct conn))
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void owner_lookup(__u32 netns, __u16 port, __u32 *pid, __u64 *cgroup, char *comm)
{
	struct listener_key k = {.netns = netns, .port = port};
	struct listener_state *l = bpf_map_lookup_elem(&listeners, &k);

	if (!l)
		return;
	*pid = l->owner.pid;
	*cgroup = l->owner.cgroup;
	__builtin_memcpy(comm, l->owner.comm, 16);
}

/* x86_64 syscall numbers of the releases release_by_task tells. */
#define NR_CLOSE 3
#define NR_DUP2 33
#define NR_EXECVE 59
#define NR_DUP3 292
#define NR_EXECVEAT 322
#define NR_CLOSE_RANGE 436
#define PF_EXITING 0x00000004
#define PF_KTHREAD 0x00200000
#define COMPAT_THREAD_SIZE 16384 /* x86_64 without KASAN, as Debian builds 5.10 */

/* address_of gives a pointer's value as a plain number, to compare it with
 * addresses read from the kernel. (A privileged program may compare
 * pointers, but the verifier keeps their types; a copy through a helper
 * does not.) */
static __always_inline __u64 address_of(const void *p)
{
	__u64 a = 0;

	bpf_probe_read_kernel(&a, sizeof(a), &p);
	return a;
}

/* release is how the current task releases a file (release_by_task). */
struct release {
	__s64 fd;        /* the fd, or -1 when the release names none */
	__u32 exit_code; /* RELEASE_EXIT: the task's exit_code */
	__u8 how;        /* enum release_how */
	__u8 _pad[3];
};

/* release_by_task tells who acts when an event fires: whether the current
 * task, in its own context, is releasing a file (r->how, enum release_how)
 * when the event runs, and which fd where the release names one (else
 * r->fd is -1). It returns false when the kernel acts on its own (softirq,
 * timers, packet processing) or the task is doing something else.
 *
 * A socket is released when its last file reference goes: close(),
 * close_range(), dup2()/dup3() onto its fd, an execve() that closes it as
 * close-on-exec, or the process's exit (including death by a signal), which
 * drops every file it still holds. Which one it is, is in the task: the
 * syscall it is in, in its saved user registers (orig_ax), and PF_EXITING.
 * Both stay while the kernel finishes the work, including the release that
 * some kernels defer to task work on the way back to user space, or at exit.
 *
 * Tracepoints that fire in softirq carry whatever task was interrupted as
 * `current`, and on loopback that is often the task whose close() sent the
 * FIN that the peer socket is now processing: a plausible process, and the
 * wrong one. On x86_64, softirqs and hardirqs run on the CPU's IRQ stack (or
 * in ksoftirqd), never on the task's own stack. A raw tracepoint's ctx (its
 * argument array) lives on the stack of whatever context fires it, so it
 * lies inside the task's stack only in the task's own context.
 * Packets queued while the release held the socket lock, and processed as
 * it releases the lock, run in its context too: they are part of it.
 * Events of a listener's queued children while the listener is released run
 * in the releasing task's context as well (see closes_own_file in conn.h).
 *
 * A PREEMPT_RT kernel runs softirqs in task context, on the task's stack,
 * so there the stack cannot tell them apart: an event counts as the
 * release's only if the task holds sk's lock (lock_sock), which softirq work
 * on a socket never runs under. Children reset by their listener's release
 * are then the kernel's.
 *
 * io_uring's close is not told: io_uring_enter() also sends and receives,
 * and the packets it processes then would pass for a release. */
static __always_inline bool release_by_task(const void *ctx, const struct sock *sk, struct release *r)
{
	__u64 nr, di, si, stack, top;
	__u32 flags;

	/* Filled on every path, so that no caller copies an unset field. */
	r->fd = -1;
	r->exit_code = 0;
	r->how = 0;
#ifdef TCPSPAN_COMPAT
	/* Before 5.15: no bpf_task_pt_regs (nor, before 5.11, a BTF task
	 * pointer). The user registers sit at the top of the task's stack. */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct pt_regs *regs;

	stack = (__u64)BPF_CORE_READ(task, stack);
	regs = (struct pt_regs *)(stack + COMPAT_THREAD_SIZE) - 1;
	flags = BPF_CORE_READ(task, flags);
	if (flags & PF_KTHREAD)
		return false;
	if (bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax))
		return false;
	bpf_probe_read_kernel(&di, sizeof(di), &regs->di);
	bpf_probe_read_kernel(&si, sizeof(si), &regs->si);
	top = (__u64)regs;
#else
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);

	flags = task->flags;
	if (flags & PF_KTHREAD)
		return false;
	nr = regs->orig_ax;
	di = regs->di;
	si = regs->si;
	stack = (__u64)task->stack;
	top = 0; /* read below, only for a release: each helper call counts */
#endif
	if (flags & PF_EXITING) {
		r->how = RELEASE_EXIT;
		r->exit_code = (__u32)BPF_CORE_READ(task, exit_code);
	} else if (nr == NR_CLOSE) {
		r->how = RELEASE_CLOSE;
		r->fd = (__u32)di;
	} else if (nr == NR_CLOSE_RANGE) {
		r->how = RELEASE_CLOSE_RANGE;
		if ((__u32)di == (__u32)si)
			r->fd = (__u32)di;
	} else if (nr == NR_DUP2 || nr == NR_DUP3) {
		r->how = RELEASE_DUP;
		r->fd = (__u32)si;
	} else if (nr == NR_EXECVE || nr == NR_EXECVEAT) {
		r->how = RELEASE_EXEC;
	} else {
		return false;
	}
	{
		__u64 at = address_of(ctx);

#ifndef TCPSPAN_COMPAT
		/* Asked again rather than kept: the verifier rejects how the
		 * compiler spills the pointer across the calls above. */
		top = address_of((const void *)bpf_task_pt_regs(task));
#endif
		if (at < stack || at >= top)
			return false;
	}
	if (softirq_in_task) {
		/* Time-wait and request sockets are not full sockets: no lock. */
		__u8 state = sk ? sk_state(sk) : 0;

		if (!sk || state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV || !BPF_CORE_READ(sk, sk_lock.owned))
			return false;
	}
	return true;
}

/* syscall_arg0 is the first argument of the system call the current task is
 * in, from its saved user registers, which the call leaves as they were:
 * still there when its exit hook runs. */
static __always_inline __u64 syscall_arg0(void)
{
	__u64 arg = 0;
#ifdef TCPSPAN_COMPAT
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct pt_regs *regs = (struct pt_regs *)((__u64)BPF_CORE_READ(task, stack) + COMPAT_THREAD_SIZE) - 1;

	bpf_probe_read_kernel(&arg, sizeof(arg), &regs->di);
#else
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	arg = regs->di;
#endif
	return arg;
}

/* syscall_nr is the number of the system call the current task is in, from
 * its saved user registers (orig_ax). */
static __always_inline __u64 syscall_nr(void)
{
	__u64 nr = 0;
#ifdef TCPSPAN_COMPAT
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct pt_regs *regs = (struct pt_regs *)((__u64)BPF_CORE_READ(task, stack) + COMPAT_THREAD_SIZE) - 1;

	bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
#else
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	nr = regs->orig_ax;
#endif
	return nr;
}

#endif /* TCPSPAN_SOCK_H */
