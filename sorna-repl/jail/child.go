package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// childMarker as argv[1] makes the jail run as the child that installs the
// filter and executes the program.
const childMarker = "__sorna_jail_child__"

func init() {
	if len(os.Args) > 1 && os.Args[1] == childMarker {
		// Filter, prctl and execve must all happen on the main thread, the
		// one the tracer seized.
		runtime.LockOSThread()
	}
}

// sockFprog is struct sock_fprog.
type sockFprog struct {
	Len    uint16
	_      [6]byte
	Filter *sockFilter
}

// runChild reads the filter from fd 3 (written by the tracer after it has
// seized us), enforces the Landlock ruleset on fd 4 when args[0] is
// "landlock", installs the filter and executes the rest of args; it only
// returns on failure.
func runChild(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "jail: child: bad arguments")
		return 126
	}
	mode, argv := args[0], args[1:]
	sync := os.NewFile(3, "jail-sync")
	buf, err := io.ReadAll(sync)
	sync.Close()
	if err != nil || len(buf) == 0 || len(buf)%8 != 0 {
		fmt.Fprintln(os.Stderr, "jail: child: no filter from the tracer")
		return 126
	}
	prog := decodeFilter(buf)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, 38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "jail: child: PR_SET_NO_NEW_PRIVS:", e)
		return 126
	}
	if mode == "landlock" {
		if err := restrictSelf(4); err != nil {
			fmt.Fprintln(os.Stderr, "jail: child: landlock_restrict_self:", err)
			return 126
		}
	}
	fprog := sockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, e := syscall.RawSyscall(sysSeccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 0, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		fmt.Fprintln(os.Stderr, "jail: child: seccomp:", e)
		return 126
	}
	err = syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "jail: cannot execute %s: %v\n", argv[0], err)
	return 127
}
