package bpf

// Syscall numbers the kernel side reports in records (the syscall an event
// ran inside, from the task's saved registers): x86_64 Linux's, from
// arch/x86/entry/syscalls/syscall_64.tbl, since the BPF objects are built
// for x86 only. Constants rather than golang.org/x/sys/unix's SYS_*, which
// are those of the build's own GOOS and GOARCH: records mean the same
// wherever they are decoded.
const (
	SyscallClose   = 3
	SyscallAccept  = 43
	SyscallAccept4 = 288
)
