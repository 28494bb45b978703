// Command jail runs a program under a seccomp-bpf filter and a ptrace
// tracer that checks the arguments of the calls the filter cannot decide.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"unsafe"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == childMarker {
		os.Exit(runChild(os.Args[2:]))
	}
	os.Exit(runJail(os.Args[1:]))
}

func usage(fs *flag.FlagSet) {
	fmt.Fprintln(os.Stderr, "usage: jail [-policy FILE] [-debug] [-watch] [-no-landlock] -- /abs/program [args...]")
	fs.PrintDefaults()
}

// replAddrEnvs name the REPL daemon's bind addresses (sorna.repl.protocol ENV_INPUT_ADDR and
// ENV_OUTPUT_ADDR); a test checks the two spellings agree.
var replAddrEnvs = []string{"SORNA_REPL_INPUT", "SORNA_REPL_OUTPUT"}

// servesOnTCP reports whether the daemon serves on TCP: no ipc:// address in its environment
// or its arguments (without one, the daemon binds its default tcp ports).
func servesOnTCP(getenv func(string) string, argv []string) bool {
	for _, name := range replAddrEnvs {
		if strings.HasPrefix(getenv(name), "ipc://") {
			return false
		}
	}
	for _, arg := range argv {
		if strings.Contains(arg, "ipc://") {
			return false
		}
	}
	return true
}

func runJail(args []string) int {
	fs := flag.NewFlagSet("jail", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy JSON file (default: the built-in default policy)")
	debug := fs.Bool("debug", false, "log every decision the tracer makes")
	watch := fs.Bool("watch", false, "allow everything, log what the policy would deny")
	noLandlock := fs.Bool("no-landlock", false, "check every write path in the tracer, even where Landlock could")
	tcpRepl := fs.Bool("tcp-repl", false, "allow TCP/UDP sockets when the daemon serves its REPL on TCP: no ipc:// address in "+
		strings.Join(replAddrEnvs, " or ")+" or in the program's arguments (a kernel image started by hand)")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if len(argv) == 0 || !strings.HasPrefix(argv[0], "/") {
		usage(fs)
		return 2
	}
	if *debug {
		debugf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "jail: "+format+"\n", args...) }
	}
	switch os.Getenv("SORNA_JAIL_MEM_READER") { // for tests: force a fallback
	case "procmem":
		memMode = memProcMem
	case "peek":
		memMode = memPeek
	}
	policy := DefaultPolicy()
	if *policyPath != "" {
		var err error
		if policy, err = LoadPolicy(*policyPath); err != nil {
			fmt.Fprintln(os.Stderr, "jail:", err)
			return 2
		}
	}
	if *tcpRepl && !policy.AllowNetwork && servesOnTCP(os.Getenv, argv) {
		// The daemon must bind its TCP ports (PROTOCOLS section 3), so the program may open
		// network sockets; whether a network exists is the container's business. An agent
		// always gives ipc addresses: its kernels keep the policy's denial.
		debugf("the REPL is served on TCP: network sockets allowed")
		policy.AllowNetwork = true
	}
	var plan *landlockPlan
	why := "off (-no-landlock)"
	if *watch {
		why = "off (-watch traces every check)"
	} else if !*noLandlock {
		plan, why = planLandlock(&policy, landlockABI(), argv[0])
	}
	ruleset := -1
	if plan != nil {
		var err error
		if ruleset, err = plan.build(); err != nil {
			plan, why = nil, err.Error()
		}
	}
	if plan != nil {
		debugf("landlock ABI %d enforces the write globs%s (%d rules)", plan.abi,
			map[bool]string{true: " and the exec globs", false: ""}[plan.handled&llExecute != 0], len(plan.rules))
	} else {
		debugf("landlock: %s: the tracer checks every write path", why)
	}
	filter := encodeFilter(assembleFilter(filterOptions{policy: &policy, watch: *watch, landlock: plan != nil, ids: currentIDs()}))

	// Every ptrace request must come from the thread that seized the child.
	runtime.LockOSThread()
	// Orphans of the program are re-parented to us, so none is left behind.
	syscall.RawSyscall6(syscall.SYS_PRCTL, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0, 0, 0, 0)

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jail:", err)
		return 2
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jail:", err)
		return 2
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	files := []uintptr{0, 1, 2, rd.Fd()}
	mode := "-"
	if ruleset >= 0 {
		files, mode = append(files, uintptr(ruleset)), "landlock"
	}
	pid, err := syscall.ForkExec(self, append([]string{self, childMarker, mode}, argv...), &syscall.ProcAttr{
		Env:   programEnv(&policy),
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	rd.Close()
	if ruleset >= 0 {
		syscall.Close(ruleset)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jail: cannot start:", err)
		return 2
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PTRACE, ptraceSeize, uintptr(pid), 0, ptraceOptions, 0, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "jail: PTRACE_SEIZE:", e)
		syscall.Kill(pid, syscall.SIGKILL)
		return 2
	}
	if _, err := wr.Write(filter); err != nil {
		fmt.Fprintln(os.Stderr, "jail: cannot send the filter:", err)
		syscall.Kill(pid, syscall.SIGKILL)
		return 2
	}
	wr.Close()
	go forwardSignals(signals, pid)
	return newTracer(&policy, pid, *debug, *watch).run()
}

// currentIDs returns the ids the program will run with, or nil when the
// real, effective and saved ids differ (then no id call is allowed at all).
func currentIDs() *ownIDs {
	var u, g [3]uint32
	syscall.RawSyscall(syscall.SYS_GETRESUID, uintptr(unsafe.Pointer(&u[0])), uintptr(unsafe.Pointer(&u[1])), uintptr(unsafe.Pointer(&u[2])))
	syscall.RawSyscall(syscall.SYS_GETRESGID, uintptr(unsafe.Pointer(&g[0])), uintptr(unsafe.Pointer(&g[1])), uintptr(unsafe.Pointer(&g[2])))
	if u[0] != u[1] || u[1] != u[2] || g[0] != g[1] || g[1] != g[2] {
		return nil
	}
	return &ownIDs{uid: u[0], gid: g[0]}
}

// debugf logs with -debug only.
var debugf = func(string, ...any) {}

// forwardSignals passes the first SIGINT/SIGTERM to the program's process
// group and kills the group on the second.
func forwardSignals(signals <-chan os.Signal, pgid int) {
	first := true
	for s := range signals {
		if first {
			syscall.Kill(-pgid, s.(syscall.Signal))
			first = false
			continue
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
		// The main process may have left the group: kill it too; the tracer
		// then ends whatever is left.
		syscall.Kill(pgid, syscall.SIGKILL)
	}
}

// programEnv builds the program's environment from the policy.
func programEnv(p *Policy) []string {
	var env []string
	for _, k := range p.PreservedEnvKeys {
		if v, ok := os.LookupEnv(k); ok {
			if _, over := p.ExtraEnvs[k]; !over {
				env = append(env, k+"="+v)
			}
		}
	}
	for k, v := range p.ExtraEnvs {
		env = append(env, k+"="+v)
	}
	return env
}
