package main

// safeSyscalls pass the filter at full speed: they touch only the caller's
// own memory, descriptors it already holds, or read-only state.
var safeSyscalls = []string{
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "close", "close_range", "lseek", "stat", "fstat", "lstat",
	"newfstatat", "statx", "statfs", "fstatfs", "poll", "ppoll", "select", "pselect6",
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
	"epoll_pwait2", "mmap", "mprotect", "munmap", "mremap", "msync", "mincore",
	"madvise", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending",
	"rt_sigtimedwait", "rt_sigsuspend", "sigaltstack", "access", "faccessat",
	"faccessat2", "pipe", "pipe2", "dup", "dup2", "dup3", "sched_yield", "nanosleep",
	"clock_nanosleep", "getitimer", "setitimer", "alarm", "pause", "getpid", "getppid",
	"gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
	"getgroups", "getpgrp", "getpgid", "getsid", "setsid", "getrlimit",
	"setrlimit", "getrusage", "times", "sysinfo", "uname", "umask", "getcwd", "chdir",
	"fchdir", "readlink", "readlinkat", "getdents", "getdents64", "flock",
	"fsync", "fdatasync", "sync", "syncfs", "ftruncate", "fallocate", "sendfile",
	"splice", "tee", "copy_file_range", "socketpair", "connect", "accept", "accept4",
	"bind", "listen", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
	"recvmmsg", "shutdown", "getsockname", "getpeername", "setsockopt", "getsockopt",
	"wait4", "waitid", "exit", "exit_group", "futex", "futex_waitv", "set_robust_list",
	"set_tid_address", "arch_prctl", "prctl", "getrandom",
	"memfd_create", "eventfd", "eventfd2", "timerfd_create", "timerfd_settime",
	"timerfd_gettime", "signalfd", "signalfd4", "inotify_init", "inotify_init1",
	"inotify_add_watch", "inotify_rm_watch", "clock_gettime", "clock_getres",
	"gettimeofday", "time", "sched_getaffinity", "sched_getparam", "sched_getscheduler",
	"sched_get_priority_max", "sched_get_priority_min", "getpriority", "rseq",
	"membarrier", "mlock", "mlock2", "munlock", "getxattr", "lgetxattr", "fgetxattr",
	"listxattr", "llistxattr", "flistxattr", "readahead", "fadvise64", "restart_syscall",
	"capget", "getcpu", "get_mempolicy", "landlock_create_ruleset",
	"landlock_add_rule", "landlock_restrict_self", "seccomp", "timer_create",
	"timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete", "mq_open",
	"mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
	"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
	"msgget", "msgsnd", "msgrcv", "msgctl", "epoll_ctl_old", "epoll_wait_old",
	"sched_rr_get_interval", "io_setup", "io_destroy", "io_getevents", "io_submit",
	"io_cancel", "io_pgetevents", "cachestat", "map_shadow_stack", "futex_wake",
	"futex_wait", "futex_requeue", "mseal",
}

// treeTargetSyscalls act on the thread or process named by their first
// argument (setpriority: their second, with PRIO_PROCESS as the first;
// get_robust_list reads another task's robust futex list head). A
// target of 0 (the caller) passes in the filter; any other target stops at
// the tracer, which allows it only for a task of the traced tree (libzmq,
// for one, sets the scheduling policy of its I/O threads by their tid).
// A policy may list them in allowed_syscalls to allow every target.
var treeTargetSyscalls = map[string]bool{
	"prlimit64": true, "sched_setaffinity": true, "sched_setparam": true,
	"sched_setscheduler": true, "sched_setattr": true, "sched_getattr": true,
	"setpriority": true, "get_robust_list": true,
}

// Commands that make a process, thread or process group the owner of a
// descriptor (fcntl F_SETOWN/F_SETOWN_EX, the socket ioctls FIOSETOWN and
// SIOCSPGRP). The owner gets SIGIO, or the F_SETSIG signal (SIGKILL
// included), whenever the descriptor becomes ready, with the credentials of
// whoever set the owner: a signal by proxy.
const (
	fSetown   = 8
	fSetownEx = 15
	fioSetown = 0x8901
	siocSpgrp = 0x8902
)

// ownerSyscalls pass the filter at full speed for every command (argument
// 1, an unsigned int) but the owner-setting ones, which stop at the tracer:
// it allows the owners kill would allow (0, the tree, a group of traced
// processes). Listing them in allowed_syscalls changes nothing: they are
// allowed already, and the owner check stays.
var ownerSyscalls = map[string][]uint32{
	"fcntl": {fSetown, fSetownEx},
	"ioctl": {fioSetown, siocSpgrp},
}

// checkKind says how the tracer checks a traced system call.
type checkKind int

const (
	checkOpen checkKind = iota
	checkPath
	checkExec
	checkProc
	checkSignal
	checkTarget
	checkGroup
	checkOwner
	checkPidfd
)

// checkedSyscalls stop at the tracer, which reads their arguments and decides.
var checkedSyscalls = map[string]checkKind{
	"open": checkOpen, "openat": checkOpen, "openat2": checkOpen, "creat": checkOpen,
	"execve": checkExec, "execveat": checkExec,
	"unlink": checkPath, "unlinkat": checkPath, "rename": checkPath, "renameat": checkPath,
	"renameat2": checkPath, "mkdir": checkPath, "mkdirat": checkPath, "rmdir": checkPath,
	"link": checkPath, "linkat": checkPath, "symlink": checkPath, "symlinkat": checkPath,
	"chmod": checkPath, "fchmod": checkPath, "fchmodat": checkPath, "fchmodat2": checkPath,
	"chown": checkPath, "fchown": checkPath, "lchown": checkPath, "fchownat": checkPath,
	"truncate": checkPath, "mknod": checkPath, "mknodat": checkPath, "utime": checkPath,
	"utimes": checkPath, "utimensat": checkPath, "futimesat": checkPath,
	"setxattr": checkPath, "lsetxattr": checkPath, "fsetxattr": checkPath,
	"removexattr": checkPath, "lremovexattr": checkPath, "fremovexattr": checkPath,
	"clone": checkProc, "clone3": checkProc, "fork": checkProc, "vfork": checkProc,
	"kill": checkSignal, "tkill": checkSignal, "tgkill": checkSignal,
	"rt_sigqueueinfo": checkSignal, "rt_tgsigqueueinfo": checkSignal, "pidfd_open": checkSignal,
	// The target is the process behind the descriptor (a pidfd, or a
	// /proc/<pid> directory anyone may open), whoever made it.
	"pidfd_send_signal": checkPidfd,
	// setpgid(pid, 0) (a new group led by pid) passes in the filter; joining
	// another group is traced: it must hold only traced processes, or the
	// program could join the jail's own group and signal it with kill(0).
	"setpgid": checkGroup,
}

// alwaysDenied can never be allowed by a policy (everything outside the safe
// and checked sets is denied anyway; these are named so a policy cannot
// re-enable them).
var alwaysDenied = map[string]bool{}

func init() {
	for _, name := range []string{
		"ptrace", "mount", "umount2", "pivot_root", "chroot", "setuid", "setgid",
		"setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
		"setgroups", "capset", "bpf", "perf_event_open", "init_module", "finit_module",
		"delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
		"keyctl", "add_key", "request_key", "unshare", "setns", "userfaultfd",
		"io_uring_setup", "io_uring_enter", "io_uring_register", "open_by_handle_at",
		"name_to_handle_at", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
		"open_tree", "mount_setattr", "process_vm_readv", "process_vm_writev",
		"pidfd_getfd", "iopl", "ioperm", "quotactl", "acct", "settimeofday",
		"clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
		"syslog", "vhangup", "kcmp", "socket",
		// They act on another process by pid or pidfd (its memory, its NUMA
		// placement, its I/O priority) with no tree check in the jail.
		"process_madvise", "process_mrelease", "migrate_pages", "move_pages", "ioprio_set",
	} {
		alwaysDenied[name] = true
	}
	// socket is special-cased in the filter by domain and type; listing it
	// here only stops a policy from allowing every socket outright.
}
