//go:build amd64

package main

import "syscall"

// auditArch is AUDIT_ARCH_X86_64: the filter kills any other ABI.
const auditArch = 0xc000003e

// regs wraps the tracee's registers at a seccomp stop.
type regs struct{ r syscall.PtraceRegs }

func getRegs(tid int) (*regs, error) {
	var r regs
	if err := syscall.PtraceGetRegs(tid, &r.r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *regs) nr() uint32 { return uint32(r.r.Orig_rax) }

func (r *regs) arg(i int) uint64 {
	switch i {
	case 0:
		return r.r.Rdi
	case 1:
		return r.r.Rsi
	case 2:
		return r.r.Rdx
	case 3:
		return r.r.R10
	case 4:
		return r.r.R8
	default:
		return r.r.R9
	}
}

// skipWithErrno makes the kernel skip the call and return -errno.
func (r *regs) skipWithErrno(tid int, errno syscall.Errno) error {
	r.r.Orig_rax = ^uint64(0)
	r.r.Rax = uint64(-int64(errno))
	return syscall.PtraceSetRegs(tid, &r.r)
}

const (
	sysSeccomp        = 317
	sysProcessVMReadv = 310
)
