package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestMatchGlob(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"/tmp/**", "/tmp/a", true},
		{"/tmp/**", "/tmp/a/b/c", true},
		{"/tmp/**", "/tmp", false},
		{"/tmp/**", "/tmpx/a", false},
		{"/tmp/*", "/tmp/a", true},
		{"/tmp/*", "/tmp/a/b", false},
		{"/home/**/x.py", "/home/work/a/b/x.py", true},
		{"/home/**/x.py", "/home/work/a/b/y.py", false},
		{"/dev/pts/?", "/dev/pts/1", true},
		{"/dev/pts/?", "/dev/pts/12", false},
		{"pipe:*", "pipe:[1234]", true},
		{"/etc/passwd", "/etc/passwd", true},
		{"/etc/passwd", "/etc/passwd2", false},
		{"/**", "/anything/at/all", true},
	}
	for _, c := range cases {
		if got := matchGlob(c.pattern, c.name); got != c.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestParsePolicyDefaults(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"max_child_procs": 3, "path_rules": {"write": ["/w/**"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxChildProcs != 3 || p.PathRules.Write[0] != "/w/**" || len(p.PathRules.Write) != 1 {
		t.Errorf("explicit values lost: %+v", p)
	}
	d := DefaultPolicy()
	if p.ExecAllowance != d.ExecAllowance || len(p.PathRules.Exec) != len(d.PathRules.Exec) {
		t.Errorf("absent keys did not take defaults: %+v", p)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	cases := map[string]string{
		`{"max_child_proc": 3}`:                  "unknown field",
		`{"path_rules": {"wirte": []}}`:          "unknown field",
		`{"allowed_syscalls": ["ptrace"]}`:       "always denied",
		`{"allowed_syscalls": ["no_such_call"]}`: "unknown system call",
		`{"allowed_syscalls": ["openat"]}`:       "argument-checked",
		`{"exec_allowance": -2}`:                 "exec_allowance",
		`{"path_rules": {"write": ["tmp/**"]}}`:  "absolute",
		`{} {}`:                                  "trailing",
	}
	for in, want := range cases {
		_, err := ParsePolicy([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePolicy(%s) error = %v, want one mentioning %q", in, err, want)
		}
	}
}

func TestShippedDefaultPolicyParses(t *testing.T) {
	if _, err := LoadPolicy("policies/default.json"); err != nil {
		t.Fatal(err)
	}
}

// runFilter interprets a classic BPF seccomp program for one call.
func runFilter(t *testing.T, prog []sockFilter, arch, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	load := func(off uint32) uint32 {
		switch {
		case off == offNr:
			return nr
		case off == offArch:
			return arch
		case off >= offArgs && off < offArgs+48:
			a := args[(off-offArgs)/8]
			if (off-offArgs)%8 == 4 {
				return uint32(a >> 32)
			}
			return uint32(a)
		}
		t.Fatalf("bad load offset %d", off)
		return 0
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		f := prog[pc]
		switch f.Code {
		case bpfLD | bpfW | bpfABS:
			acc = load(f.K)
		case bpfALU | bpfAND | bpfK:
			acc &= f.K
		case bpfRET | bpfK:
			return f.K
		case bpfJMP | bpfJA:
			pc += int(f.K)
		case bpfJMP | bpfJEQ | bpfK, bpfJMP | bpfJGE | bpfK, bpfJMP | bpfJSET | bpfK:
			var cond bool
			switch f.Code {
			case bpfJMP | bpfJEQ | bpfK:
				cond = acc == f.K
			case bpfJMP | bpfJGE | bpfK:
				cond = acc >= f.K
			default:
				cond = acc&f.K != 0
			}
			if cond {
				pc += int(f.Jt)
			} else {
				pc += int(f.Jf)
			}
		default:
			t.Fatalf("unknown opcode %#x at %d", f.Code, pc)
		}
	}
	t.Fatal("program fell off the end")
	return 0
}

func TestFilterDecisions(t *testing.T) {
	p := DefaultPolicy()
	prog := decodeFilter(encodeFilter(assembleFilter(filterOptions{policy: &p})))
	if len(prog) > 4096 {
		t.Fatalf("filter too long: %d", len(prog))
	}
	nr := func(name string) uint32 { return syscallNumbers[name] }
	eperm := uint32(retErrno | 1)
	cases := []struct {
		name string
		arch uint32
		nr   uint32
		args [6]uint64
		want uint32
	}{
		{"wrong arch is killed", 0x40000003, nr("read"), [6]uint64{}, retKillProcess},
		{"x32 numbers denied", auditArch, 0x40000000 | nr("read"), [6]uint64{}, eperm},
		{"read allowed", auditArch, nr("read"), [6]uint64{}, retAllow},
		{"futex allowed", auditArch, nr("futex"), [6]uint64{}, retAllow},
		{"openat read-only allowed", auditArch, nr("openat"), [6]uint64{0, 0, 0x80000}, retAllow},
		{"openat for write traced", auditArch, nr("openat"), [6]uint64{0, 0, 0x241}, retTrace},
		{"open O_RDWR traced", auditArch, nr("open"), [6]uint64{0, 2}, retTrace},
		{"execve traced", auditArch, nr("execve"), [6]uint64{}, retTrace},
		{"clone traced", auditArch, nr("clone"), [6]uint64{}, retTrace},
		{"ptrace denied", auditArch, nr("ptrace"), [6]uint64{}, eperm},
		{"setuid denied", auditArch, nr("setuid"), [6]uint64{}, eperm},
		{"io_uring_setup denied", auditArch, nr("io_uring_setup"), [6]uint64{}, eperm},
		{"unknown number denied", auditArch, 999, [6]uint64{}, eperm},
		{"unix socket allowed", auditArch, nr("socket"), [6]uint64{1, 1}, retAllow},
		{"inet socket denied without network", auditArch, nr("socket"), [6]uint64{2, 1}, eperm},
		{"netlink socket denied", auditArch, nr("socket"), [6]uint64{16, 3}, eperm},
		{"prlimit64 on self allowed", auditArch, nr("prlimit64"), [6]uint64{0}, retAllow},
		{"prlimit64 on another task traced", auditArch, nr("prlimit64"), [6]uint64{1}, retTrace},
		{"sched_setscheduler on self allowed", auditArch, nr("sched_setscheduler"), [6]uint64{0}, retAllow},
		{"sched_setscheduler on a tid traced", auditArch, nr("sched_setscheduler"), [6]uint64{1234}, retTrace},
		{"setpriority on self allowed", auditArch, nr("setpriority"), [6]uint64{0, 0, 5}, retAllow},
		{"setpriority on a tid traced", auditArch, nr("setpriority"), [6]uint64{0, 1234, 5}, retTrace},
		{"setpriority on a group denied", auditArch, nr("setpriority"), [6]uint64{1, 0, 5}, eperm},
		{"setpriority on a user denied", auditArch, nr("setpriority"), [6]uint64{2, 0, 5}, eperm},
		{"setpgid into a new group allowed", auditArch, nr("setpgid"), [6]uint64{0, 0}, retAllow},
		{"setpgid of a child into a new group allowed", auditArch, nr("setpgid"), [6]uint64{1234, 0}, retAllow},
		{"setpgid into another group traced", auditArch, nr("setpgid"), [6]uint64{0, 1234}, retTrace},
		{"setsid allowed", auditArch, nr("setsid"), [6]uint64{}, retAllow},
		{"kill traced", auditArch, nr("kill"), [6]uint64{0, 15}, retTrace},
		{"fcntl F_GETFL allowed", auditArch, nr("fcntl"), [6]uint64{3, 3}, retAllow},
		{"fcntl F_SETSIG allowed", auditArch, nr("fcntl"), [6]uint64{3, 10, 9}, retAllow},
		{"fcntl F_SETOWN traced", auditArch, nr("fcntl"), [6]uint64{3, 8, 1}, retTrace},
		{"fcntl F_SETOWN_EX traced", auditArch, nr("fcntl"), [6]uint64{3, 15, 0x1000}, retTrace},
		{"fcntl F_SETOWN with high cmd bits traced", auditArch, nr("fcntl"), [6]uint64{3, 1<<32 | 8, 1}, retTrace},
		{"ioctl FIONREAD allowed", auditArch, nr("ioctl"), [6]uint64{3, 0x541b}, retAllow},
		{"ioctl FIOSETOWN traced", auditArch, nr("ioctl"), [6]uint64{3, 0x8901}, retTrace},
		{"ioctl SIOCSPGRP traced", auditArch, nr("ioctl"), [6]uint64{3, 0x8902}, retTrace},
	}
	for _, c := range cases {
		if got := runFilter(t, prog, c.arch, c.nr, c.args); got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, got, c.want)
		}
	}
	// Every number gets a decision without falling off the program.
	for n := uint32(0); n < 600; n++ {
		runFilter(t, prog, auditArch, n, [6]uint64{})
	}
}

func TestPolicyAllowedSyscallsOverrideBuiltIns(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"allowed_syscalls": ["sched_setscheduler", "setpriority"]}`))
	if err != nil {
		t.Fatal(err)
	}
	prog := assembleFilter(filterOptions{policy: &p})
	for _, c := range []struct {
		name string
		args [6]uint64
	}{{"sched_setscheduler", [6]uint64{1234}}, {"setpriority", [6]uint64{1, 7, 5}}} {
		if got := runFilter(t, prog, auditArch, syscallNumbers[c.name], c.args); got != retAllow {
			t.Errorf("%s listed in allowed_syscalls: got %#x, want RET_ALLOW", c.name, got)
		}
	}
}

func TestPolicyCannotLiftTheOwnerCheck(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"allowed_syscalls": ["fcntl", "ioctl"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, landlock := range []bool{false, true} {
		prog := assembleFilter(filterOptions{policy: &p, landlock: landlock})
		for _, c := range []struct {
			name string
			cmd  uint64
			want uint32
		}{
			{"fcntl", 8, retTrace}, {"fcntl", 15, retTrace}, {"fcntl", 4, retAllow},
			{"ioctl", 0x8901, retTrace}, {"ioctl", 0x8902, retTrace}, {"ioctl", 0x5421, retAllow},
		} {
			if got := runFilter(t, prog, auditArch, syscallNumbers[c.name], [6]uint64{3, c.cmd}); got != c.want {
				t.Errorf("%s cmd %#x (landlock %v): got %#x, want %#x", c.name, c.cmd, landlock, got, c.want)
			}
		}
	}
}

func TestFilterNetworkAndWatch(t *testing.T) {
	p := DefaultPolicy()
	p.AllowNetwork = true
	prog := assembleFilter(filterOptions{policy: &p})
	sock := syscallNumbers["socket"]
	for _, c := range []struct {
		args [6]uint64
		want uint32
	}{
		{[6]uint64{2, 1}, retAllow},
		{[6]uint64{10, 2 | 0x80000}, retAllow},
		{[6]uint64{2, 3}, retErrno | 1}, // SOCK_RAW
		{[6]uint64{16, 3}, retErrno | 1},
		{[6]uint64{17, 3}, retErrno | 1}, // AF_PACKET
	} {
		if got := runFilter(t, prog, auditArch, sock, c.args); got != c.want {
			t.Errorf("socket%v: got %#x, want %#x", c.args[:2], got, c.want)
		}
	}
	watch := assembleFilter(filterOptions{policy: &p, watch: true})
	if got := runFilter(t, watch, auditArch, syscallNumbers["mount"], [6]uint64{}); got != retTrace|traceWatchDeny {
		t.Errorf("watch mode: mount got %#x", got)
	}
}

func TestResolveSymlinks(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "real"), 0o755)
	os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link"))
	os.Symlink("/etc/passwd", filepath.Join(dir, "out"))
	pid := os.Getpid()
	r := resolver{tgid: pid, tid: pid}
	cases := []struct {
		path   string
		follow bool
		want   string
	}{
		{dir + "/link/f", true, dir + "/real/f"},
		{dir + "/out", true, "/etc/passwd"},
		{dir + "/out", false, dir + "/out"},
		{dir + "/link/../x", true, dir + "/x"},
		{dir + "/missing/a/b", true, dir + "/missing/a/b"},
		{"/proc/self/cwd", true, mustGetwd(t)},
	}
	for _, c := range cases {
		got, err := r.resolve(atFdCwd, c.path, c.follow)
		if err != nil || got != c.want {
			t.Errorf("resolve(%q, %v) = %q, %v; want %q", c.path, c.follow, got, err, c.want)
		}
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(wd)
	if err != nil {
		t.Fatal(err)
	}
	return real
}

func TestFilterWithLandlock(t *testing.T) {
	p := DefaultPolicy()
	prog := assembleFilter(filterOptions{policy: &p, landlock: true})
	nr := func(name string) uint32 { return syscallNumbers[name] }
	for _, c := range []struct {
		name string
		args [6]uint64
		want uint32
	}{
		{"openat", [6]uint64{0, 0, 0x241}, retAllow}, // the kernel enforces the write globs
		{"unlink", [6]uint64{}, retAllow},
		{"mkdirat", [6]uint64{}, retAllow},
		{"rename", [6]uint64{}, retTrace}, // both ends, EPERM rather than EXDEV
		{"linkat", [6]uint64{}, retTrace},
		{"fchmodat", [6]uint64{}, retTrace}, // metadata: not covered by Landlock
		{"execve", [6]uint64{}, retTrace},
		{"clone", [6]uint64{}, retTrace},
		{"kill", [6]uint64{}, retTrace},
	} {
		if got := runFilter(t, prog, auditArch, nr(c.name), c.args); got != c.want {
			t.Errorf("%s with landlock: got %#x, want %#x", c.name, got, c.want)
		}
	}
	p.PathRules.Read = []string{"/usr/**"}
	prog = assembleFilter(filterOptions{policy: &p, landlock: true})
	if got := runFilter(t, prog, auditArch, nr("openat"), [6]uint64{0, 0, 0}); got != retTrace {
		t.Errorf("read-only openat with read globs: got %#x, want RET_TRACE", got)
	}
}

func TestPlanLandlock(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	p := DefaultPolicy()
	p.PathRules.Write = []string{dir + "/**", file, dir + "/missing/**", "pipe:*", "socket:*"}
	p.PathRules.Exec = []string{"/usr/**"}
	plan, why := planLandlock(&p, 7, "/bin/sh")
	if plan == nil {
		t.Fatal(why)
	}
	if plan.handled&llExecute == 0 || plan.handled&llRefer == 0 {
		t.Errorf("handled %#x lacks EXECUTE or REFER", plan.handled)
	}
	want := map[string]uint64{dir: llDirWrite, file: llFileWrite, "/usr": llExecute, "/bin/sh": llExecute}
	for _, r := range plan.rules {
		if w, ok := want[r.path]; ok && w == r.access {
			delete(want, r.path)
		}
	}
	if len(want) != 0 {
		t.Errorf("rules %v lack %v", plan.rules, want)
	}
	for _, c := range []struct {
		write []string
		abi   int
		why   string
	}{
		{[]string{dir + "/*.txt"}, 7, "not DIR/** or an exact path"},
		{[]string{dir + "/*"}, 7, "devpts"},
		{[]string{dir + "/nope"}, 7, "does not exist"},
		{[]string{"pipe:[3]"}, 7, "not a path hierarchy"},
		{[]string{dir + "/**"}, 2, "older"},
		{[]string{dir + "/**"}, 0, "not available"},
	} {
		p.PathRules.Write = c.write
		if plan, why := planLandlock(&p, c.abi, "/bin/sh"); plan != nil || !strings.Contains(why, c.why) {
			t.Errorf("write %v, ABI %d: plan %v, reason %q; want none because %q", c.write, c.abi, plan, why, c.why)
		}
	}
	p.PathRules.Write = []string{dir + "/**"}
	p.PathRules.Exec = []string{"/usr/bin/py*"}
	if plan, _ := planLandlock(&p, 7, "/bin/sh"); plan == nil || plan.handled&llExecute != 0 {
		t.Errorf("exec globs Landlock cannot express must leave exec to the tracer: %+v", plan)
	}
}

func TestFilterAllowsOnlyNoOpIDChanges(t *testing.T) {
	p := DefaultPolicy()
	eperm := uint32(retErrno | 1)
	keep := uint64(0xffffffff)
	prog := assembleFilter(filterOptions{policy: &p, ids: &ownIDs{uid: 1000, gid: 100}})
	for _, c := range []struct {
		name string
		args [6]uint64
		want uint32
	}{
		{"setresuid", [6]uint64{keep, 1000, keep}, retAllow}, // seteuid(getuid())
		{"setresuid", [6]uint64{1000, 1000, 1000}, retAllow},
		{"setresuid", [6]uint64{^uint64(0), ^uint64(0), ^uint64(0)}, retAllow}, // -1 sign-extended
		{"setresuid", [6]uint64{keep, 0, keep}, eperm},
		{"setresuid", [6]uint64{0, keep, keep}, eperm},
		{"setresuid", [6]uint64{keep, keep, 0}, eperm},
		{"setresuid", [6]uint64{keep, 100, keep}, eperm}, // the gid is no uid
		{"setresgid", [6]uint64{keep, 100, keep}, retAllow},
		{"setresgid", [6]uint64{keep, 1000, keep}, eperm},
		{"setuid", [6]uint64{1000}, eperm}, // the rest of the family stays denied
		{"setreuid", [6]uint64{keep, 1000}, eperm},
		{"setgroups", [6]uint64{0, 0}, eperm},
	} {
		if got := runFilter(t, prog, auditArch, syscallNumbers[c.name], c.args); got != c.want {
			t.Errorf("%s%v: got %#x, want %#x", c.name, c.args[:3], got, c.want)
		}
	}
	// Without known ids (real, effective and saved differ) nothing passes.
	none := assembleFilter(filterOptions{policy: &p})
	if got := runFilter(t, none, auditArch, syscallNumbers["setresuid"], [6]uint64{keep, keep, keep}); got != eperm {
		t.Errorf("setresuid without ids: got %#x", got)
	}
	// The policy cannot allow them outright.
	if _, err := ParsePolicy([]byte(`{"allowed_syscalls": ["setresuid"]}`)); err == nil {
		t.Error("setresuid accepted in allowed_syscalls")
	}
}

func TestTargetExists(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/f"
	if err := os.WriteFile(file, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir+"/gone", dir+"/dangling"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]error{
		file:                nil,
		dir + "/dangling":   nil, // the link itself exists (a nofollow exec fails with ELOOP)
		dir + "/missing":    syscall.ENOENT,
		dir + "/no/such/f":  syscall.ENOENT,
		file + "/sub":       syscall.ENOTDIR,
		"pipe:[1234]":       nil,
		"/proc/self/fd/999": syscall.ENOENT,
	} {
		if got := targetExists(p); got != want {
			t.Errorf("targetExists(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestCallsThatReachOtherProcesses lists every call that can signal or
// otherwise act on a process named by pid or descriptor: each is denied
// outright (and may not be allowed by a policy), caller-only in the filter
// with other targets traced, or always traced.
func TestCallsThatReachOtherProcesses(t *testing.T) {
	eperm := uint32(retErrno | 1)
	denied := []string{
		"process_madvise", "process_mrelease", "pidfd_getfd", "kcmp", "process_vm_readv",
		"process_vm_writev", "migrate_pages", "move_pages", "ioprio_set", "ptrace",
	}
	traced := []string{
		"kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open",
		"pidfd_send_signal",
	}
	callerOnly := []string{
		"prlimit64", "sched_setaffinity", "sched_setparam", "sched_setscheduler",
		"sched_setattr", "sched_getattr", "get_robust_list",
	}
	for _, name := range append(append(append([]string{}, denied...), traced...), callerOnly...) {
		if containsString(safeSyscalls, name) {
			t.Errorf("%s is on the safe list", name)
		}
	}
	p := DefaultPolicy()
	for _, landlock := range []bool{false, true} {
		prog := assembleFilter(filterOptions{policy: &p, landlock: landlock})
		run := func(name string, args ...uint64) uint32 {
			var a [6]uint64
			copy(a[:], args)
			return runFilter(t, prog, auditArch, syscallNumbers[name], a)
		}
		for _, name := range denied {
			if got := run(name, 1234, 0, 0, 0); got != eperm {
				t.Errorf("%s (landlock %v): got %#x, want EPERM", name, landlock, got)
			}
			if !alwaysDenied[name] {
				t.Errorf("%s: a policy could allow it for any process", name)
			}
		}
		for _, name := range traced {
			for _, target := range []uint64{0, 1, 1234} {
				if got := run(name, target, 9, 0, 0); got != retTrace {
					t.Errorf("%s(%d) (landlock %v): got %#x, want RET_TRACE", name, target, landlock, got)
				}
			}
		}
		for _, name := range callerOnly {
			if got := run(name, 0); got != retAllow {
				t.Errorf("%s on the caller (landlock %v): got %#x, want RET_ALLOW", name, landlock, got)
			}
			if got := run(name, 1234); got != retTrace {
				t.Errorf("%s on another task (landlock %v): got %#x, want RET_TRACE", name, landlock, got)
			}
		}
		for _, c := range []struct {
			args []uint64
			want uint32
		}{
			{[]uint64{0, 0, 5}, retAllow}, {[]uint64{0, 1234, 5}, retTrace},
			{[]uint64{1, 0, 5}, eperm}, {[]uint64{2, 1000, 5}, eperm},
		} {
			if got := run("setpriority", c.args...); got != c.want {
				t.Errorf("setpriority%v (landlock %v): got %#x, want %#x", c.args, landlock, got, c.want)
			}
		}
	}
	for _, name := range append(append([]string{}, denied...), traced...) {
		if _, err := ParsePolicy([]byte(`{"allowed_syscalls": ["` + name + `"]}`)); err == nil {
			t.Errorf("a policy may list %s in allowed_syscalls", name)
		}
	}
}

func TestServesOnTCP(t *testing.T) {
	env := func(values map[string]string) func(string) string {
		return func(name string) string { return values[name] }
	}
	cases := []struct {
		name string
		env  map[string]string
		argv []string
		want bool
	}{
		{"by hand: no addresses", nil, []string{"/usr/bin/python3", "/home/sorna/run.py"}, true},
		{"tcp in the environment", map[string]string{"SORNA_REPL_INPUT": "tcp://*:2000"}, nil, true},
		{"agent: ipc input", map[string]string{"SORNA_REPL_INPUT": "ipc:///home/sorna/ipc/in"}, nil, false},
		{"agent: ipc output", map[string]string{"SORNA_REPL_OUTPUT": "ipc:///x"}, nil, false},
		{"local backend: ipc argument", nil, []string{"/usr/bin/python3", "run.py", "--input", "ipc:///tmp/k/in"}, false},
	}
	for _, c := range cases {
		if got := servesOnTCP(env(c.env), c.argv); got != c.want {
			t.Errorf("%s: servesOnTCP = %v, want %v", c.name, got, c.want)
		}
	}
}
