package main

import (
	"encoding/binary"
	"sort"
)

// Classic BPF opcodes and seccomp constants (linux/filter.h, linux/seccomp.h).
const (
	bpfLD   = 0x00
	bpfJMP  = 0x05
	bpfRET  = 0x06
	bpfALU  = 0x04
	bpfW    = 0x00
	bpfABS  = 0x20
	bpfK    = 0x00
	bpfJA   = 0x00
	bpfJEQ  = 0x10
	bpfJGE  = 0x30
	bpfJSET = 0x40
	bpfAND  = 0x50

	retKillProcess = 0x80000000
	retTrace       = 0x7ff00000
	retErrno       = 0x00050000
	retAllow       = 0x7fff0000

	// traceWatchDeny marks, in watch mode, a call the filter would deny.
	traceWatchDeny = 1

	offNr   = 0
	offArch = 4
	offArgs = 16
)

// sockFilter is struct sock_filter.
type sockFilter struct {
	Code uint16
	Jt   uint8
	Jf   uint8
	K    uint32
}

func stmt(code uint16, k uint32) sockFilter { return sockFilter{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) sockFilter {
	return sockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// argLow is the offset of the low 32 bits of argument i (little endian).
func argLow(i int) uint32 { return uint32(offArgs + 8*i) }

// filterOptions decides what the assembled filter does.
type filterOptions struct {
	policy *Policy
	watch  bool
	// landlock: a Landlock ruleset enforces the write globs, so the calls
	// it fully covers pass here instead of stopping at the tracer.
	landlock bool
	// ids, when set, lets setresuid/setresgid calls that change nothing
	// through (see noOpIDRule); nil keeps them denied like the rest of the
	// setuid family.
	ids *ownIDs
}

// ownIDs are the user and group ids the program runs with. The jail only
// sets them when real, effective and saved ids agree: the program then keeps
// them for life (every id-changing call is denied, and PR_SET_NO_NEW_PRIVS
// makes set-user-id executables run as the caller).
type ownIDs struct{ uid, gid uint32 }

// noOpIDRule allows setresuid/setresgid when every argument is -1 (keep)
// or the id the program already has, which changes nothing. glibc's
// posix_spawn with POSIX_SPAWN_RESETIDS (GNU make sets it) calls
// seteuid(getuid()) and setegid(getgid()) in the child before its execve;
// refusing them made every spawned command fail with EPERM. The ids are
// uid_t, so the kernel reads only the low 32 bits of each argument.
func noOpIDRule(id, deny uint32) []sockFilter {
	const keep = 0xffffffff // (uid_t)-1
	var body []sockFilter
	for i := 0; i < 3; i++ {
		// After this argument's three instructions come the other
		// arguments' (3 each), then RET allow, then RET deny.
		toDeny := uint8(3*(2-i) + 1)
		body = append(body,
			stmt(bpfLD|bpfW|bpfABS, argLow(i)),
			jump(bpfJMP|bpfJEQ|bpfK, keep, 1, 0),
			jump(bpfJMP|bpfJEQ|bpfK, id, 0, toDeny))
	}
	return append(body, stmt(bpfRET|bpfK, retAllow), stmt(bpfRET|bpfK, deny))
}

// landlockCovered are the write-path calls Landlock decides exactly as the
// tracer would (EACCES instead of EPERM). Still traced: rename and link
// (Landlock refuses a cross-directory move from an unlisted place with
// EXDEV, and the tracer checks both ends), chmod, chown, utime and xattr
// calls (Landlock does not restrict metadata), execve (exec_allowance and
// the target check), and the open calls whose flags the filter cannot see.
var landlockCovered = []string{
	"creat", "unlink", "unlinkat", "rmdir", "mkdir", "mkdirat", "symlink", "symlinkat",
	"truncate", "mknod", "mknodat",
}

// rule is one syscall number and the code that decides it (ending in a RET).
type rule struct {
	nr   uint32
	body []sockFilter
}

// openWriteFlags are the open flags that make an open a write.
const openWriteFlags = 0x1 | 0x2 | 0x40 | 0x200 | 0x400000 // O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|__O_TMPFILE

// assembleFilter builds the seccomp program for the policy.
func assembleFilter(o filterOptions) []sockFilter {
	deny := uint32(retErrno | 1) // EPERM
	if o.watch {
		deny = retTrace | traceWatchDeny
	}
	ret := func(k uint32) sockFilter { return stmt(bpfRET|bpfK, k) }
	rules := map[uint32][]sockFilter{}
	add := func(name string, body ...sockFilter) {
		if nr, ok := syscallNumbers[name]; ok {
			rules[nr] = body
		}
	}
	for _, name := range safeSyscalls {
		add(name, ret(retAllow))
	}
	for name := range checkedSyscalls {
		add(name, ret(retTrace))
	}
	for name := range treeTargetSyscalls {
		if name == "setpriority" {
			// Only PRIO_PROCESS (0); who 0 is the caller.
			add(name,
				stmt(bpfLD|bpfW|bpfABS, argLow(0)),
				jump(bpfJMP|bpfJEQ|bpfK, 0, 1, 0),
				ret(deny),
				stmt(bpfLD|bpfW|bpfABS, argLow(1)),
				jump(bpfJMP|bpfJEQ|bpfK, 0, 0, 1),
				ret(retAllow),
				ret(retTrace))
			continue
		}
		add(name,
			stmt(bpfLD|bpfW|bpfABS, argLow(0)),
			jump(bpfJMP|bpfJEQ|bpfK, 0, 0, 1),
			ret(retAllow),
			ret(retTrace))
	}
	for name, cmds := range ownerSyscalls {
		body := []sockFilter{stmt(bpfLD|bpfW|bpfABS, argLow(1))}
		for i, cmd := range cmds {
			// A match jumps over the remaining tests and the RET allow.
			body = append(body, jump(bpfJMP|bpfJEQ|bpfK, cmd, uint8(len(cmds)-i), 0))
		}
		add(name, append(body, ret(retAllow), ret(retTrace))...)
	}
	if o.landlock {
		for _, name := range landlockCovered {
			add(name, ret(retAllow))
		}
	}
	switch {
	case o.landlock && o.policy.readsUnrestricted():
		add("open", ret(retAllow))
		add("openat", ret(retAllow))
		add("openat2", ret(retAllow))
	case o.landlock:
		// Writes are Landlock's; reads still go to the tracer's read globs.
		flagsCheck := func(arg int) []sockFilter {
			return []sockFilter{
				stmt(bpfLD|bpfW|bpfABS, argLow(arg)),
				jump(bpfJMP|bpfJSET|bpfK, openWriteFlags, 0, 1),
				ret(retAllow),
				ret(retTrace),
			}
		}
		add("open", flagsCheck(1)...)
		add("openat", flagsCheck(2)...)
	case o.policy.readsUnrestricted():
		// Read-only opens are decided here, so imports stay cheap.
		flagsCheck := func(arg int) []sockFilter {
			return []sockFilter{
				stmt(bpfLD|bpfW|bpfABS, argLow(arg)),
				jump(bpfJMP|bpfJSET|bpfK, openWriteFlags, 0, 1),
				ret(retTrace),
				ret(retAllow),
			}
		}
		add("open", flagsCheck(1)...)
		add("openat", flagsCheck(2)...)
	}
	// Sockets: AF_UNIX always; AF_INET/AF_INET6 stream or datagram when the
	// policy allows the network; everything else (raw, netlink, packet) denied.
	sock := []sockFilter{
		stmt(bpfLD|bpfW|bpfABS, argLow(0)),
		jump(bpfJMP|bpfJEQ|bpfK, 1, 0, 1), // AF_UNIX
		ret(retAllow),
	}
	if o.policy.AllowNetwork {
		sock = append(sock,
			jump(bpfJMP|bpfJEQ|bpfK, 2, 1, 0),  // AF_INET
			jump(bpfJMP|bpfJEQ|bpfK, 10, 0, 5), // AF_INET6
			stmt(bpfLD|bpfW|bpfABS, argLow(1)),
			stmt(bpfALU|bpfAND|bpfK, 0xf),
			jump(bpfJMP|bpfJEQ|bpfK, 1, 1, 0), // SOCK_STREAM
			jump(bpfJMP|bpfJEQ|bpfK, 2, 0, 1), // SOCK_DGRAM
			ret(retAllow),
		)
	}
	sock = append(sock, ret(deny))
	add("socket", sock...)
	// setpgid(pid, 0) makes pid lead a new group of its own: allowed here;
	// any other group id goes to the tracer.
	add("setpgid",
		stmt(bpfLD|bpfW|bpfABS, argLow(1)),
		jump(bpfJMP|bpfJEQ|bpfK, 0, 0, 1),
		ret(retAllow),
		ret(retTrace))
	if o.ids != nil {
		add("setresuid", noOpIDRule(o.ids.uid, deny)...)
		add("setresgid", noOpIDRule(o.ids.gid, deny)...)
	}
	// The policy's own list comes last so it overrides the built-in
	// argument checks above (validate keeps it away from the checked calls).
	for _, name := range o.policy.AllowedSyscalls {
		if _, ok := ownerSyscalls[name]; ok {
			continue // allowed already, but the owner check stays
		}
		add(name, ret(retAllow))
	}

	sorted := make([]rule, 0, len(rules))
	for nr, body := range rules {
		sorted = append(sorted, rule{nr, body})
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].nr < sorted[j].nr })

	prog := []sockFilter{
		stmt(bpfLD|bpfW|bpfABS, offArch),
		jump(bpfJMP|bpfJEQ|bpfK, auditArch, 1, 0),
		ret(retKillProcess),
		stmt(bpfLD|bpfW|bpfABS, offNr),
		// x32 and other numbers with high bits set are never valid here.
		jump(bpfJMP|bpfJGE|bpfK, 0x40000000, 0, 1),
		ret(deny),
	}
	return append(prog, searchTree(sorted, deny)...)
}

// searchTree emits a binary search over sorted rules; the accumulator holds
// the syscall number on entry, and every path ends in a RET.
func searchTree(rules []rule, deny uint32) []sockFilter {
	if len(rules) <= 4 {
		var out []sockFilter
		for _, r := range rules {
			// Each body ends in RET and reloads nothing before deciding, but a
			// body may clobber the accumulator; it never falls through.
			out = append(out, jump(bpfJMP|bpfJEQ|bpfK, r.nr, 0, uint8(len(r.body))))
			out = append(out, r.body...)
		}
		return append(out, stmt(bpfRET|bpfK, deny))
	}
	mid := len(rules) / 2
	left := searchTree(rules[:mid], deny)
	right := searchTree(rules[mid:], deny)
	out := []sockFilter{
		jump(bpfJMP|bpfJGE|bpfK, rules[mid].nr, 0, 1),
		stmt(bpfJMP|bpfJA, uint32(len(left))),
	}
	out = append(out, left...)
	return append(out, right...)
}

// encodeFilter serialises the program in the kernel's struct layout.
func encodeFilter(prog []sockFilter) []byte {
	buf := make([]byte, 0, len(prog)*8)
	for _, f := range prog {
		buf = binary.NativeEndian.AppendUint16(buf, f.Code)
		buf = append(buf, f.Jt, f.Jf)
		buf = binary.NativeEndian.AppendUint32(buf, f.K)
	}
	return buf
}

// decodeFilter is the inverse of encodeFilter.
func decodeFilter(buf []byte) []sockFilter {
	prog := make([]sockFilter, len(buf)/8)
	for i := range prog {
		b := buf[i*8:]
		prog[i] = sockFilter{binary.NativeEndian.Uint16(b), b[2], b[3], binary.NativeEndian.Uint32(b[4:])}
	}
	return prog
}
