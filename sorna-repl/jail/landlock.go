package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// Landlock (linux/landlock.h). The system call numbers are the same on every
// architecture.
const (
	sysLandlockCreateRuleset = 444
	sysLandlockAddRule       = 445
	sysLandlockRestrictSelf  = 446

	llCreateRulesetVersion = 1
	llRulePathBeneath      = 1

	llExecute    = 1 << 0
	llWriteFile  = 1 << 1
	llRemoveDir  = 1 << 4
	llRemoveFile = 1 << 5
	llMakeChar   = 1 << 6
	llMakeDir    = 1 << 7
	llMakeReg    = 1 << 8
	llMakeSock   = 1 << 9
	llMakeFifo   = 1 << 10
	llMakeBlock  = 1 << 11
	llMakeSym    = 1 << 12
	llRefer      = 1 << 13 // ABI 2
	llTruncate   = 1 << 14 // ABI 3

	// llMinABI is the first ABI that covers everything the write checks
	// need: REFER (before it, every cross-directory rename fails) and
	// TRUNCATE (before it, truncate(2) is not restricted).
	llMinABI = 3

	llFileWrite = llWriteFile | llTruncate
	llDirWrite  = llFileWrite | llRemoveDir | llRemoveFile | llMakeChar | llMakeDir | llMakeReg |
		llMakeSock | llMakeFifo | llMakeBlock | llMakeSym | llRefer

	devptsMagic = 0x1cd1
	oPath       = 0x200000
)

// landlockABI returns the kernel's Landlock ABI version, or 0 when Landlock
// is missing, disabled, or blocked (a container's seccomp profile).
func landlockABI() int {
	v, _, e := syscall.RawSyscall(sysLandlockCreateRuleset, 0, 0, llCreateRulesetVersion)
	if e != 0 {
		return 0
	}
	return int(v)
}

// llRule grants access beneath path (or to path itself when it is a file).
type llRule struct {
	path   string
	access uint64
}

// landlockPlan is the ruleset the child installs before its filter.
type landlockPlan struct {
	abi     int
	handled uint64 // write rights always; llExecute when the exec globs allow it
	rules   []llRule
}

// planLandlock translates the policy's write and exec globs into Landlock
// rules. It returns nil and the reason when the write globs cannot be
// expressed as file hierarchies (then every write-path call stays traced).
// program is the command line's program: its first exec is free, so it and
// its interpreters get EXECUTE even outside the exec globs.
func planLandlock(p *Policy, abi int, program string) (*landlockPlan, string) {
	if !p.useLandlock() {
		return nil, "disabled by the policy (use_landlock: false)"
	}
	if abi < llMinABI {
		if abi == 0 {
			return nil, "not available"
		}
		return nil, fmt.Sprintf("ABI %d is older than %d", abi, llMinABI)
	}
	plan := &landlockPlan{abi: abi, handled: llDirWrite}
	for _, g := range p.PathRules.Write {
		rule, ok, why := globRule(g, llDirWrite, llFileWrite)
		if why != "" {
			return nil, fmt.Sprintf("write glob %q: %s", g, why)
		}
		if ok {
			plan.rules = append(plan.rules, rule)
		}
	}
	var execRules []llRule
	execOK := true
	for _, g := range p.PathRules.Exec {
		rule, ok, why := globRule(g, llExecute, llExecute)
		if why != "" || strings.Contains(g, ":") {
			execOK = false
			break
		}
		if ok {
			execRules = append(execRules, rule)
		}
	}
	if execOK {
		plan.handled |= llExecute
		plan.rules = append(plan.rules, execRules...)
		for _, f := range interpreters(program, 0) {
			plan.rules = append(plan.rules, llRule{f, llExecute})
		}
	}
	return plan, ""
}

// globRule translates one glob: `DIR/**` grants dirAccess beneath DIR (no
// rule when DIR is missing: nothing can be created there), an exact existing
// file grants fileAccess, `DIR/*` on a devpts mount (flat, and nobody
// creates files there) grants fileAccess beneath it, `kind:*` needs no rule
// (pipes, sockets and anonymous inodes are not mediated by path). Anything
// else returns a reason.
func globRule(g string, dirAccess, fileAccess uint64) (llRule, bool, string) {
	if !strings.HasPrefix(g, "/") {
		if strings.HasSuffix(g, ":*") && !strings.ContainsAny(strings.TrimSuffix(g, ":*"), "*?[") {
			return llRule{}, false, ""
		}
		return llRule{}, false, "not a path hierarchy"
	}
	if dir, ok := strings.CutSuffix(g, "/**"); ok && !strings.ContainsAny(dir, "*?[") {
		if dir == "" {
			dir = "/"
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return llRule{}, false, ""
		}
		return llRule{dir, dirAccess}, true, ""
	}
	if dir, ok := strings.CutSuffix(g, "/*"); ok && !strings.ContainsAny(dir, "*?[") {
		var fs syscall.Statfs_t
		if syscall.Statfs(dir, &fs) == nil && fs.Type == devptsMagic {
			return llRule{dir, fileAccess}, true, ""
		}
		return llRule{}, false, "`*` only maps to a hierarchy on devpts"
	}
	if strings.ContainsAny(g, "*?[") {
		return llRule{}, false, "not DIR/** or an exact path"
	}
	st, err := os.Stat(g)
	if err != nil {
		return llRule{}, false, "exact path does not exist (it could not be created)"
	}
	if st.IsDir() {
		return llRule{}, false, "" // only metadata calls reach a directory itself: traced
	}
	return llRule{g, fileAccess}, true, ""
}

// interpreters returns program plus the interpreters the kernel opens to run
// it: the ELF PT_INTERP, or a script's `#!` line (recursively).
func interpreters(program string, depth int) []string {
	if depth > 4 {
		return nil
	}
	out := []string{program}
	f, err := os.Open(program)
	if err != nil {
		return out
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	if bytes.HasPrefix(head, []byte("#!")) {
		line := head[2:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		if fields := strings.Fields(string(line)); len(fields) > 0 && strings.HasPrefix(fields[0], "/") {
			out = append(out, interpreters(fields[0], depth+1)...)
		}
		return out
	}
	if e, err := elf.NewFile(f); err == nil {
		for _, prog := range e.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(b, 0); err == nil {
					out = append(out, interpreters(string(bytes.TrimRight(b, "\x00")), depth+1)...)
				}
			}
		}
	}
	return out
}

// build creates the ruleset and returns its descriptor, which the child
// inherits and enforces.
func (pl *landlockPlan) build() (int, error) {
	attr := struct{ handledFS uint64 }{pl.handled}
	fd, _, e := syscall.RawSyscall(sysLandlockCreateRuleset, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return -1, fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	for _, r := range pl.rules {
		if err := addPathRule(int(fd), r); err != nil {
			syscall.Close(int(fd))
			return -1, err
		}
	}
	return int(fd), nil
}

func addPathRule(ruleset int, r llRule) error {
	pfd, err := syscall.Open(r.path, oPath|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("landlock rule for %s: %w", r.path, err)
	}
	defer syscall.Close(pfd)
	access := r.access
	var st syscall.Stat_t
	if syscall.Fstat(pfd, &st) == nil && st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		access &= llExecute | llFileWrite // the rights that apply to a file
	}
	// struct landlock_path_beneath_attr is packed: u64 access, s32 fd.
	var attr [12]byte
	*(*uint64)(unsafe.Pointer(&attr[0])) = access
	*(*int32)(unsafe.Pointer(&attr[8])) = int32(pfd)
	if _, _, e := syscall.RawSyscall6(sysLandlockAddRule, uintptr(ruleset), llRulePathBeneath,
		uintptr(unsafe.Pointer(&attr[0])), 0, 0, 0); e != 0 {
		return fmt.Errorf("landlock rule for %s: %w", r.path, e)
	}
	return nil
}

// restrictSelf enforces the ruleset on the calling thread (the child, after
// PR_SET_NO_NEW_PRIVS), then closes it.
func restrictSelf(ruleset int) error {
	_, _, e := syscall.RawSyscall(sysLandlockRestrictSelf, uintptr(ruleset), 0, 0)
	syscall.Close(ruleset)
	if e != 0 {
		return e
	}
	return nil
}
