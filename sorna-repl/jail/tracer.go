package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Ptrace constants not in the syscall package.
const (
	ptraceSeize         = 0x4206
	ptraceOTraceFork    = 0x2
	ptraceOTraceVfork   = 0x4
	ptraceOTraceClone   = 0x8
	ptraceOTraceExec    = 0x10
	ptraceOTraceSeccomp = 0x80
	ptraceOExitKill     = 0x100000
	ptraceEventFork     = 1
	ptraceEventVfork    = 2
	ptraceEventClone    = 3
	ptraceEventExec     = 4
	ptraceEventSeccomp  = 7
	ptraceEventStop     = 128
	ptraceOptions       = ptraceOTraceFork | ptraceOTraceVfork | ptraceOTraceClone | ptraceOTraceExec | ptraceOTraceSeccomp | ptraceOExitKill
	cloneThread         = 0x10000
	cloneUntraced       = 0x00800000
	cloneNamespaces     = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80 // NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
	forkBombThreshold   = 256
	oWriteMaskForChecks = openWriteFlags
	oNofollow           = 0x20000
	oCreat              = 0x40
	oExcl               = 0x80
	oTmpfile            = 0x400000
	fOwnerTid           = 0
	fOwnerPid           = 1
	fOwnerPgrp          = 2
	pidfdThread         = 0x80 // PIDFD_THREAD (O_EXCL): pidfd_open of one thread
	pidfdSignalThread   = 1    // PIDFD_SIGNAL_THREAD
	pidfdSignalTgroup   = 2    // PIDFD_SIGNAL_THREAD_GROUP
	pidfdSignalPgroup   = 4    // PIDFD_SIGNAL_PROCESS_GROUP
	procSuperMagic      = 0x9fa0
)

// emulatedOK, returned by a decision, skips the call and makes it return 0:
// a signal to a zombie of the tree, which the kernel would accept and drop.
const emulatedOK = syscall.Errno(1 << 20)

// task is one traced thread.
type task struct {
	tgid int
	// pending holds the flags of an approved clone not yet reported.
	pending      bool
	pendingFlags uint64
}

// tracer follows the program's whole tree and decides traced calls.
type tracer struct {
	policy     *Policy
	debug      bool
	watch      bool
	root       int
	tasks      map[int]*task
	names      map[uint32]string
	execs      int // execve calls approved after the first
	forks      int // processes created
	limitHits  int
	firstExec  bool
	exitStatus int
	rootDone   bool
	// dying is set once the tree is being killed: from then on every task
	// that stops (a child of a clone approved just before the kill, say) is
	// killed instead of resumed, so nothing forks while the dead are reaped.
	dying bool
}

func newTracer(p *Policy, root int, debug, watch bool) *tracer {
	t := &tracer{policy: p, debug: debug, watch: watch, root: root, tasks: map[int]*task{}, names: map[uint32]string{}}
	for name, nr := range syscallNumbers {
		t.names[nr] = name
	}
	t.tasks[root] = &task{tgid: root}
	return t
}

func (t *tracer) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "jail: "+format+"\n", args...)
}

// live counts tasks besides the program's main thread, including approved
// clones whose child has not been reported yet.
func (t *tracer) live() int {
	n := len(t.tasks) - 1
	for _, tk := range t.tasks {
		if tk.pending {
			n++
		}
	}
	return n
}

// inTree reports whether tgid is a process of the traced tree.
func (t *tracer) inTree(tgid int) bool {
	for _, tk := range t.tasks {
		if tk.tgid == tgid {
			return true
		}
	}
	return false
}

// killAll ends every traced process.
func (t *tracer) killAll() {
	t.dying = true
	for tid, tk := range t.tasks {
		syscall.Kill(tk.tgid, syscall.SIGKILL)
		syscall.Tgkill(tk.tgid, tid, syscall.SIGKILL)
	}
}

// procTgid returns the thread group (process) of a thread, or tid itself
// when /proc cannot tell.
func procTgid(tid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return tid
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
				return n
			}
			break
		}
	}
	return tid
}

func (t *tracer) cont(tid int, sig int) {
	syscall.PtraceCont(tid, sig)
}

// run waits on the tree until every traced task is gone and returns the
// program's exit status.
func (t *tracer) run() int {
	for {
		var ws syscall.WaitStatus
		tid, err := syscall.Wait4(-1, &ws, syscall.WALL, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			break
		}
		tk := t.tasks[tid]
		if tk == nil && !ws.Exited() && !ws.Signaled() {
			// A new child can report (its first stop, even a seccomp stop
			// of a vfork child's execve) before its parent's clone event:
			// register it now, with its thread group from /proc; the
			// parent's event confirms it later.
			tk = &task{tgid: procTgid(tid)}
			t.tasks[tid] = tk
		}
		switch {
		case ws.Exited() || ws.Signaled():
			delete(t.tasks, tid)
			if tid == t.root {
				if ws.Exited() {
					t.exitStatus = ws.ExitStatus()
				} else {
					t.exitStatus = 128 + int(ws.Signal())
				}
				t.rootDone = true
				t.killAll()
			}
		case ws.Stopped() && t.dying:
			syscall.Tgkill(tk.tgid, tid, syscall.SIGKILL)
			syscall.Kill(tid, syscall.SIGKILL)
		case ws.Stopped():
			t.stopped(tid, tk, ws)
		}
	}
	return t.exitStatus
}

func (t *tracer) stopped(tid int, tk *task, ws syscall.WaitStatus) {
	sig := ws.StopSignal()
	event := int(ws>>16) & 0xff
	if sig == syscall.SIGTRAP && event != 0 || event == ptraceEventStop {
		switch event {
		case ptraceEventSeccomp:
			t.seccompStop(tid, tk)
			return
		case ptraceEventClone, ptraceEventFork, ptraceEventVfork:
			msg, err := syscall.PtraceGetEventMsg(tid)
			if err == nil {
				child := int(msg)
				tgid := child
				switch {
				case event != ptraceEventClone:
				case tk.pending && tk.pendingFlags&cloneThread != 0:
					tgid = tk.tgid
				case !tk.pending:
					// No approved flags to go by: ask /proc.
					tgid = procTgid(child)
				}
				if c := t.tasks[child]; c != nil {
					c.tgid = tgid
				} else {
					t.tasks[child] = &task{tgid: tgid}
				}
			}
			tk.pending = false
		case ptraceEventExec:
			if msg, err := syscall.PtraceGetEventMsg(tid); err == nil && int(msg) != tid {
				// A non-leader thread executed: it now has the leader's id.
				delete(t.tasks, int(msg))
			}
			tk.tgid = tid
		}
		t.cont(tid, 0)
		return
	}
	// Signal-delivery stop: pass the signal on.
	t.cont(tid, int(sig))
}

// seccompStop decides one traced call.
func (t *tracer) seccompStop(tid int, tk *task) {
	// A clone that never produced a child failed; forget it.
	tk.pending = false
	r, err := getRegs(tid)
	if err != nil {
		return // the task died under us
	}
	nr := r.nr()
	name := t.names[nr]
	if name == "" {
		name = "syscall_" + strconv.Itoa(int(nr))
	}
	if t.watch {
		if msg, err := syscall.PtraceGetEventMsg(tid); err == nil && msg == traceWatchDeny {
			t.logf("watch: pid %d: would deny %s (not allowed by the filter)", tid, name)
			t.cont(tid, 0)
			return
		}
	}
	errno, why := t.decide(tid, tk, name, r)
	if errno == emulatedOK {
		if t.debug {
			t.logf("pid %d: skip %s %s (returns 0)", tid, name, why)
		}
		if err := r.skipWithErrno(tid, 0); err == nil {
			t.cont(tid, 0)
		}
		return
	}
	if errno == 0 {
		if t.debug {
			t.logf("pid %d: allow %s %s", tid, name, why)
		}
		t.cont(tid, 0)
		return
	}
	if t.watch {
		t.logf("watch: pid %d: would deny %s %s (%v)", tid, name, why, errno)
		t.cont(tid, 0)
		return
	}
	if t.debug {
		t.logf("pid %d: deny %s %s (%v)", tid, name, why, errno)
	}
	if err := r.skipWithErrno(tid, errno); err == nil {
		t.cont(tid, 0)
	}
	if t.limitHits >= forkBombThreshold && !t.dying {
		t.logf("process limit hit %d times: killing the program", t.limitHits)
		t.killAll()
	}
}

// decide returns 0 to allow the call, or the errno to fail it with, plus a
// description for the logs.
func (t *tracer) decide(tid int, tk *task, name string, r *regs) (syscall.Errno, string) {
	res := resolver{tgid: tk.tgid, tid: tid}
	kind, ok := checkedSyscalls[name]
	if !ok {
		_, owner := ownerSyscalls[name]
		switch {
		case treeTargetSyscalls[name]:
			kind = checkTarget
		case owner:
			kind = checkOwner
		default:
			return syscall.EPERM, "(not a checked call)"
		}
	}
	switch kind {
	case checkTarget:
		return t.decideTarget(name, r)
	case checkOpen:
		return t.decideOpen(res, name, r)
	case checkExec:
		return t.decideExec(res, name, r)
	case checkPath:
		return t.decidePath(res, name, r)
	case checkProc:
		return t.decideProc(tid, tk, name, r)
	case checkSignal:
		return t.decideSignal(tid, name, r)
	case checkGroup:
		return t.decideSetpgid(tk, r)
	case checkOwner:
		return t.decideOwner(tid, name, r)
	case checkPidfd:
		return t.decidePidfdSignal(tid, r)
	}
	return syscall.EPERM, "(unknown call)"
}

// writable checks a resolved path against the write globs.
func (t *tracer) writable(p string, err error) (syscall.Errno, string) {
	if err != nil {
		if en, ok := err.(syscall.Errno); ok && en == syscall.ENOENT {
			return syscall.ENOENT, "(no such path)"
		}
		return syscall.EPERM, fmt.Sprintf("(unresolvable path: %v)", err)
	}
	if matchAny(t.policy.PathRules.Write, p) {
		return 0, p
	}
	return syscall.EPERM, p
}

func (t *tracer) decideOpen(res resolver, name string, r *regs) (syscall.Errno, string) {
	var dirfd int32 = atFdCwd
	var pathArg uint64
	var flags uint64
	switch name {
	case "open":
		pathArg, flags = r.arg(0), r.arg(1)
	case "creat":
		pathArg, flags = r.arg(0), 0x1|oCreat|0x200
	case "openat":
		dirfd, pathArg, flags = int32(r.arg(0)), r.arg(1), r.arg(2)
	case "openat2":
		dirfd, pathArg = int32(r.arg(0)), r.arg(1)
		b, err := readMem(res.tid, r.arg(2), 8)
		if err != nil || len(b) < 8 {
			return syscall.EFAULT, "(unreadable open_how)"
		}
		flags = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
	}
	path, err := readString(res.tid, pathArg)
	if err != nil {
		return syscall.EFAULT, "(unreadable path)"
	}
	follow := flags&oNofollow == 0 && !(flags&oCreat != 0 && flags&oExcl != 0)
	if flags&oWriteMaskForChecks == 0 {
		if t.policy.readsUnrestricted() {
			return 0, path + " (read)"
		}
		p, err := res.resolve(dirfd, path, follow)
		if err != nil {
			return 0, path + " (read, unresolvable: the kernel decides)"
		}
		if matchAny(t.policy.PathRules.Read, p) {
			return 0, p + " (read)"
		}
		return syscall.EPERM, p + " (read)"
	}
	p, err := res.resolve(dirfd, path, follow)
	if err == nil && flags&oTmpfile == oTmpfile {
		p += "/.tmpfile"
	}
	return t.writable(p, err)
}

func (t *tracer) decideExec(res resolver, name string, r *regs) (syscall.Errno, string) {
	var p string
	var err error
	if name == "execve" {
		var path string
		if path, err = readString(res.tid, r.arg(0)); err != nil {
			return syscall.EFAULT, "(unreadable path)"
		}
		p, err = res.resolve(atFdCwd, path, true)
	} else {
		dirfd, flags := int32(r.arg(0)), r.arg(4)
		var path string
		if path, err = readString(res.tid, r.arg(1)); err != nil {
			return syscall.EFAULT, "(unreadable path)"
		}
		if path == "" && flags&atEmptyPath != 0 {
			p, err = res.fdPath(dirfd)
		} else {
			p, err = res.resolve(dirfd, path, flags&atSymlinkNofollow == 0)
		}
	}
	if !t.firstExec {
		// The program named on the command line.
		t.firstExec = true
		return 0, p + " (the program)"
	}
	if err == nil {
		err = targetExists(p)
	}
	if err == syscall.ENOENT || err == syscall.ENOTDIR {
		// A missing target fails as the kernel would fail it: PATH searches
		// (execvp, posix_spawnp) go on to the next directory on ENOENT but
		// stop at EPERM. This tells nothing stat() does not, and a missing
		// file uses no exec allowance.
		return err.(syscall.Errno), p + " (no such file)"
	}
	if err != nil {
		return syscall.EPERM, fmt.Sprintf("(unresolvable target: %v)", err)
	}
	if t.policy.ExecAllowance >= 0 && t.execs >= t.policy.ExecAllowance {
		return syscall.EPERM, p + " (exec allowance used up)"
	}
	if !matchAny(t.policy.PathRules.Exec, p) {
		return syscall.EPERM, p + " (not in exec globs)"
	}
	t.execs++
	return 0, p
}

// targetExists reports whether a resolved exec target exists (nil), or the
// ENOENT/ENOTDIR the kernel would give. It does not follow a final symlink:
// the resolver already has, unless the call asked it not to.
func targetExists(p string) error {
	if !strings.HasPrefix(p, "/") {
		return nil // a pipe:/socket: magic link: the kernel decides
	}
	var st syscall.Stat_t
	err := syscall.Lstat(p, &st)
	if err == syscall.ENOENT || err == syscall.ENOTDIR {
		return err
	}
	return nil
}

// pathArgs lists, per call, the (dirfd arg, path arg, follow) of each path
// it writes; dirfd -1 means AT_FDCWD and path -1 means the fd itself.
type pathArg struct {
	dirfd, path int
	follow      bool
	flagsArg    int // argument holding AT_* flags, or -1
}

var pathArgs = map[string][]pathArg{
	"unlink":       {{-1, 0, false, -1}},
	"unlinkat":     {{0, 1, false, -1}},
	"rmdir":        {{-1, 0, false, -1}},
	"mkdir":        {{-1, 0, false, -1}},
	"mkdirat":      {{0, 1, false, -1}},
	"rename":       {{-1, 0, false, -1}, {-1, 1, false, -1}},
	"renameat":     {{0, 1, false, -1}, {2, 3, false, -1}},
	"renameat2":    {{0, 1, false, -1}, {2, 3, false, -1}},
	"link":         {{-1, 0, false, -1}, {-1, 1, false, -1}},
	"linkat":       {{0, 1, false, 4}, {2, 3, false, -1}},
	"symlink":      {{-1, 1, false, -1}},
	"symlinkat":    {{1, 2, false, -1}},
	"chmod":        {{-1, 0, true, -1}},
	"fchmod":       {{0, -1, true, -1}},
	"fchmodat":     {{0, 1, true, -1}},
	"fchmodat2":    {{0, 1, true, 3}},
	"chown":        {{-1, 0, true, -1}},
	"lchown":       {{-1, 0, false, -1}},
	"fchown":       {{0, -1, true, -1}},
	"fchownat":     {{0, 1, true, 4}},
	"truncate":     {{-1, 0, true, -1}},
	"mknod":        {{-1, 0, false, -1}},
	"mknodat":      {{0, 1, false, -1}},
	"utime":        {{-1, 0, true, -1}},
	"utimes":       {{-1, 0, true, -1}},
	"utimensat":    {{0, 1, true, 3}},
	"futimesat":    {{0, 1, true, -1}},
	"setxattr":     {{-1, 0, true, -1}},
	"lsetxattr":    {{-1, 0, false, -1}},
	"fsetxattr":    {{0, -1, true, -1}},
	"removexattr":  {{-1, 0, true, -1}},
	"lremovexattr": {{-1, 0, false, -1}},
	"fremovexattr": {{0, -1, true, -1}},
}

func (t *tracer) decidePath(res resolver, name string, r *regs) (syscall.Errno, string) {
	desc := ""
	for _, a := range pathArgs[name] {
		var p string
		var err error
		dirfd := int32(atFdCwd)
		if a.dirfd >= 0 {
			dirfd = int32(r.arg(a.dirfd))
		}
		follow := a.follow
		var atFlags uint64
		if a.flagsArg >= 0 {
			atFlags = r.arg(a.flagsArg)
			if name == "linkat" {
				follow = atFlags&atSymlinkFollow != 0
			} else if atFlags&atSymlinkNofollow != 0 {
				follow = false
			}
		}
		if a.path < 0 {
			p, err = res.fdPath(dirfd)
		} else {
			addr := r.arg(a.path)
			var path string
			if addr == 0 && name == "utimensat" {
				path = "" // futimens: the dirfd itself
			} else if path, err = readString(res.tid, addr); err != nil {
				return syscall.EFAULT, "(unreadable path)"
			}
			if path == "" && (atFlags&atEmptyPath != 0 || name == "utimensat") {
				p, err = res.fdPath(dirfd)
			} else {
				p, err = res.resolve(dirfd, path, follow)
			}
		}
		errno, d := t.writable(p, err)
		if errno != 0 {
			return errno, d
		}
		desc += d + " "
	}
	return 0, desc
}

func (t *tracer) decideProc(tid int, tk *task, name string, r *regs) (syscall.Errno, string) {
	var flags uint64
	switch name {
	case "clone":
		flags = r.arg(0)
	case "clone3":
		b, err := readMem(tid, r.arg(0), 8)
		if err != nil || len(b) < 8 {
			return syscall.EFAULT, "(unreadable clone_args)"
		}
		for i := 7; i >= 0; i-- {
			flags = flags<<8 | uint64(b[i])
		}
	}
	if !t.firstExec {
		// The jail's own runtime, before the program starts.
		tk.pending, tk.pendingFlags = true, flags
		return 0, "(jail runtime)"
	}
	if flags&cloneUntraced != 0 || flags&cloneNamespaces != 0 {
		return syscall.EPERM, fmt.Sprintf("(flags %#x)", flags)
	}
	thread := flags&cloneThread != 0
	if t.live()+1 > t.policy.MaxChildProcs {
		t.limitHits++
		return syscall.EAGAIN, fmt.Sprintf("(max_child_procs %d reached)", t.policy.MaxChildProcs)
	}
	if !thread {
		if t.policy.ForkAllowance >= 0 && t.forks >= t.policy.ForkAllowance {
			t.limitHits++
			return syscall.EPERM, "(fork allowance used up)"
		}
		t.forks++
	}
	tk.pending, tk.pendingFlags = true, flags
	return 0, fmt.Sprintf("(flags %#x, %d live)", flags, t.live())
}

func (t *tracer) decideSignal(tid int, name string, r *regs) (syscall.Errno, string) {
	a0, a1 := int(int32(r.arg(0))), int(int32(r.arg(1)))
	var ok bool
	switch name {
	case "kill":
		switch {
		case a0 > 0:
			ok = t.inTree(a0)
		case a0 == 0:
			// The caller's own process group: it too must hold only
			// traced processes.
			pgid, err := syscall.Getpgid(tid)
			if err != nil {
				return syscall.ESRCH, "(caller's group unknown)"
			}
			if errno, why := t.groupTraced(pgid); errno != 0 {
				return errno, fmt.Sprintf("(own group %d: %s)", pgid, why)
			}
			return 0, fmt.Sprintf("(own group %d)", pgid)
		case a0 == -1:
			ok = false
		default:
			if errno, why := t.groupTraced(-a0); errno != 0 {
				return errno, fmt.Sprintf("(group %d: %s)", -a0, why)
			}
			return 0, fmt.Sprintf("(group %d)", -a0)
		}
	case "tkill":
		ok = t.tasks[a0] != nil
	case "tgkill", "rt_tgsigqueueinfo":
		tk := t.tasks[a1]
		ok = tk != nil && tk.tgid == a0
	case "rt_sigqueueinfo":
		ok = t.inTree(a0)
	case "pidfd_open":
		// PIDFD_THREAD makes a pidfd of one thread, named by its tid.
		ok = t.inTree(a0) || r.arg(1)&pidfdThread != 0 && t.tasks[a0] != nil
	}
	if ok {
		return 0, fmt.Sprintf("(target %d)", a0)
	}
	// Not a task of the tree: one that has exited fails (or passes) as
	// without the jail. The call is skipped either way, so nothing reaches
	// a process that takes the id over meanwhile.
	target := a0
	if name == "tgkill" || name == "rt_tgsigqueueinfo" {
		target = a1
	}
	if target > 0 && taskGone(target) {
		return syscall.ESRCH, fmt.Sprintf("(target %d: no such process)", target)
	}
	sameTask := name == "kill" || name == "tkill" || name == "rt_sigqueueinfo" || a0 == a1
	if sameTask && name != "pidfd_open" && t.treeZombie(target) {
		// The kernel accepts a signal to a zombie and drops it.
		return emulatedOK, fmt.Sprintf("(target %d: a zombie of the tree)", target)
	}
	return syscall.EPERM, fmt.Sprintf("(target %d outside the jail)", a0)
}

// taskGone reports whether no thread tid exists (any thread id, leader or
// not); a zombie still exists.
func taskGone(tid int) bool {
	return syscall.Tgkill(procTgid(tid), tid, 0) == syscall.ESRCH
}

// treeZombie reports whether pid is a zombie whose parent is traced: a
// process of the tree that exited and awaits its parent's wait.
func (t *tracer) treeZombie(pid int) bool {
	state, ppid := procStat(pid)
	return state == "Z" && ppid > 0 && t.inTree(ppid)
}

// decideOwner checks the owner a descriptor would get: 0 (none), a
// process or thread of the tree, or a group whose every member is traced.
func (t *tracer) decideOwner(tid int, name string, r *regs) (syscall.Errno, string) {
	cmd := uint32(r.arg(1))
	kind, who := fOwnerPid, 0
	switch {
	case name == "fcntl" && cmd == fSetownEx:
		// struct f_owner_ex { int type; pid_t pid; }
		b, err := readMem(tid, r.arg(2), 8)
		if err != nil || len(b) < 8 {
			return syscall.EFAULT, "(unreadable f_owner_ex)"
		}
		kind = int(int32(binary.LittleEndian.Uint32(b)))
		who = int(int32(binary.LittleEndian.Uint32(b[4:])))
		switch {
		case kind != fOwnerTid && kind != fOwnerPid && kind != fOwnerPgrp:
			return syscall.EINVAL, fmt.Sprintf("(owner type %d)", kind)
		case who < 0:
			return syscall.ESRCH, fmt.Sprintf("(owner %d)", who)
		}
	case name == "fcntl" && cmd == fSetown:
		who = int(int32(r.arg(2)))
	case name == "ioctl" && (cmd == fioSetown || cmd == siocSpgrp):
		// The argument points to the int owner (sockets only; other files
		// answer ENOTTY, or give the number a meaning of their own).
		b, err := readMem(tid, r.arg(2), 4)
		if err != nil || len(b) < 4 {
			return syscall.EFAULT, "(unreadable owner)"
		}
		who = int(int32(binary.LittleEndian.Uint32(b)))
	default:
		return 0, fmt.Sprintf("(command %#x)", cmd)
	}
	if kind != fOwnerPgrp && who < 0 {
		// A negative owner names a process group. The kernel refuses
		// INT_MIN itself (EINVAL).
		if who == -1<<31 {
			return syscall.EINVAL, "(owner INT_MIN)"
		}
		kind, who = fOwnerPgrp, -who
	}
	switch {
	case who == 0:
		return 0, "(no owner)"
	case kind == fOwnerPgrp:
		if errno, why := t.groupTraced(who); errno != 0 {
			return errno, fmt.Sprintf("(owner group %d: %s)", who, why)
		}
		return 0, fmt.Sprintf("(owner group %d)", who)
	case t.tasks[who] != nil || kind == fOwnerPid && t.inTree(who):
		// A thread of the tree (a thread id named as a process signals
		// nobody), or a process of the tree.
		return 0, fmt.Sprintf("(owner %d)", who)
	case taskGone(who):
		return syscall.ESRCH, fmt.Sprintf("(owner %d: no such process)", who)
	}
	return syscall.EPERM, fmt.Sprintf("(owner %d outside the jail)", who)
}

// pidfdTarget tells what descriptor fd of tid names for pidfd_send_signal:
// the pid behind a pidfd (fdinfo's Pid: line; PIDFD_THREAD in its flags
// makes it one thread's) or a /proc/<pid> directory (the kernel accepts
// both). errno is EBADF for any other descriptor and ESRCH for a process
// that no longer exists, as the kernel would say; EPERM when the jail cannot
// tell (a procfs directory other than our /proc/<pid>).
func pidfdTarget(tid int, fd int32) (pid int, thread bool, errno syscall.Errno, why string) {
	if fd < 0 {
		return 0, false, syscall.EBADF, fmt.Sprintf("(fd %d)", fd)
	}
	fdPath := "/proc/" + strconv.Itoa(tid) + "/fd/" + strconv.Itoa(int(fd))
	link, err := os.Readlink(fdPath)
	if err != nil {
		return 0, false, syscall.EBADF, fmt.Sprintf("(fd %d: %v)", fd, err)
	}
	if link == "anon_inode:[pidfd]" || strings.HasPrefix(link, "pidfd:") {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/fdinfo/" + strconv.Itoa(int(fd)))
		if err != nil {
			return 0, false, syscall.EBADF, fmt.Sprintf("(fd %d: %v)", fd, err)
		}
		pid, flags := 0, int64(0)
		seen := false
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Pid:"); ok {
				pid, err = strconv.Atoi(strings.TrimSpace(v))
				seen = err == nil
			} else if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, _ = strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			}
		}
		switch {
		case !seen:
			return 0, false, syscall.EPERM, fmt.Sprintf("(fd %d: a pidfd without a Pid line)", fd)
		case pid == -1:
			return 0, false, syscall.ESRCH, fmt.Sprintf("(fd %d: a pidfd of an exited process)", fd)
		case pid <= 0:
			// 0: a process outside our pid namespace.
			return 0, false, syscall.EPERM, fmt.Sprintf("(fd %d: a pidfd of pid %d)", fd, pid)
		}
		return pid, flags&pidfdThread != 0, 0, fmt.Sprintf("(pidfd of %d)", pid)
	}
	var st syscall.Stat_t
	var fs syscall.Statfs_t
	if syscall.Stat(fdPath, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR ||
		syscall.Statfs(fdPath, &fs) != nil || fs.Type != procSuperMagic {
		return 0, false, syscall.EBADF, fmt.Sprintf("(fd %d: %s is no pidfd)", fd, link)
	}
	name, deleted := strings.CutSuffix(link, " (deleted)")
	n, err := strconv.Atoi(strings.TrimPrefix(name, "/proc/"))
	if err != nil || n <= 0 || name != "/proc/"+strconv.Itoa(n) {
		return 0, false, syscall.EPERM, fmt.Sprintf("(fd %d: procfs directory %s)", fd, link)
	}
	if deleted {
		return 0, false, syscall.ESRCH, fmt.Sprintf("(fd %d: %s of an exited process)", fd, name)
	}
	var ours syscall.Stat_t
	if syscall.Stat(name, &ours) != nil || ours.Dev != st.Dev || ours.Ino != st.Ino {
		return 0, false, syscall.EPERM, fmt.Sprintf("(fd %d: not our %s)", fd, name)
	}
	return n, false, 0, fmt.Sprintf("(%s)", name)
}

// decidePidfdSignal allows pidfd_send_signal(fd, sig, info, flags) only
// toward the tree, signal 0 included: a thread of the tree, a process of
// the tree, or (PIDFD_SIGNAL_PROCESS_GROUP) a group whose every member is
// traced. A target that exited fails with ESRCH (a zombie of the tree takes
// the signal and drops it), as without the jail.
func (t *tracer) decidePidfdSignal(tid int, r *regs) (syscall.Errno, string) {
	flags := r.arg(3)
	switch flags {
	case 0, pidfdSignalThread, pidfdSignalTgroup, pidfdSignalPgroup:
	default:
		return syscall.EINVAL, fmt.Sprintf("(flags %#x)", flags)
	}
	pid, thread, errno, why := pidfdTarget(tid, int32(r.arg(0)))
	if errno != 0 {
		return errno, why
	}
	// Scope: the pidfd's own (a thread or a process) unless flags say.
	scope := "process"
	switch {
	case flags == pidfdSignalThread || flags == 0 && thread:
		scope = "thread"
	case flags == pidfdSignalPgroup:
		// The process group whose id is pid (ESRCH if pid leads none).
		if errno, gwhy := t.groupTraced(pid); errno != 0 {
			return errno, fmt.Sprintf("%s (group %d: %s)", why, pid, gwhy)
		}
		return 0, fmt.Sprintf("%s (group %d)", why, pid)
	}
	// A thread of the tree; as a process, pid may be any of its threads.
	if t.tasks[pid] != nil || scope == "process" && t.inTree(pid) {
		return 0, fmt.Sprintf("%s (%s %d)", why, scope, pid)
	}
	if taskGone(pid) {
		return syscall.ESRCH, fmt.Sprintf("%s (%s %d: no such process)", why, scope, pid)
	}
	if t.treeZombie(pid) {
		return emulatedOK, fmt.Sprintf("%s (%s %d: a zombie of the tree)", why, scope, pid)
	}
	return syscall.EPERM, fmt.Sprintf("%s (%s %d outside the jail)", why, scope, pid)
}

// decideSetpgid allows setpgid(pid, pgid) only into a group of traced
// processes (the filter already let pgid 0, a new group, through). The
// kernel itself checks that pid is the caller or its child and that the
// group is in the caller's session.
func (t *tracer) decideSetpgid(tk *task, r *regs) (syscall.Errno, string) {
	pid, pgid := int(int32(r.arg(0))), int(int32(r.arg(1)))
	if pid == 0 {
		pid = tk.tgid
	}
	if pgid == 0 || pgid == pid {
		return 0, fmt.Sprintf("(pid %d leads a new group)", pid)
	}
	if pgid < 0 {
		return syscall.EINVAL, fmt.Sprintf("(group %d)", pgid)
	}
	if errno, why := t.groupTraced(pgid); errno != 0 {
		return errno, fmt.Sprintf("(pid %d joining group %d: %s)", pid, pgid, why)
	}
	return 0, fmt.Sprintf("(pid %d joining group %d)", pid, pgid)
}

// groupTraced returns 0 when process group pgid exists and every process in
// it is traced; else ESRCH (no such group, as the kernel would say) or EPERM,
// and why. It lists /proc (group signals and setpgid
// into another group are rare). A member not yet registered (a child whose
// first stop is still on its way) counts when an ancestor is traced: every
// descendant of a traced process is traced.
func (t *tracer) groupTraced(pgid int) (syscall.Errno, string) {
	if pgid <= 0 {
		return syscall.ESRCH, "no such group"
	}
	d, err := os.Open("/proc")
	if err != nil {
		return syscall.EPERM, "cannot list /proc"
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return syscall.EPERM, "cannot list /proc"
	}
	members := 0
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
			continue // gone, or in another group
		}
		members++
		if !t.descendsFromTree(pid) {
			return syscall.EPERM, fmt.Sprintf("pid %d is outside the jail", pid)
		}
	}
	if members == 0 {
		return syscall.ESRCH, "no such group"
	}
	return 0, ""
}

// descendsFromTree reports whether pid is a traced process or a descendant
// of one.
func (t *tracer) descendsFromTree(pid int) bool {
	for depth := 0; depth < 64 && pid > 1; depth++ {
		if t.inTree(pid) {
			return true
		}
		if pid = procPpid(pid); pid <= 0 {
			return false
		}
	}
	return false
}

// procPpid returns the parent of pid from /proc/<pid>/stat, or -1.
func procPpid(pid int) int {
	_, ppid := procStat(pid)
	return ppid
}

// procStat returns the state letter and parent of pid from
// /proc/<pid>/stat, or "" and -1.
func procStat(pid int) (string, int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", -1
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return "", -1
	}
	return f[0], ppid
}

// decideTarget allows a scheduling or resource-limit call whose target
// thread (any thread id, as the kernel looks it up) belongs to the tree.
func (t *tracer) decideTarget(name string, r *regs) (syscall.Errno, string) {
	target := int(int32(r.arg(0)))
	if name == "setpriority" {
		target = int(int32(r.arg(1))) // the filter only lets PRIO_PROCESS through
	}
	if target == 0 || t.tasks[target] != nil {
		return 0, fmt.Sprintf("(target %d)", target)
	}
	return syscall.EPERM, fmt.Sprintf("(target %d outside the jail)", target)
}
