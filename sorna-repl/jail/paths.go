package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

const (
	atFdCwd           = -100
	atSymlinkNofollow = 0x100
	atSymlinkFollow   = 0x400
	atEmptyPath       = 0x1000
	maxSymlinks       = 40
)

var errPathTooLong = errors.New("path too long")

// readString reads a NUL-terminated string from the tracee's memory.
func readString(pid int, addr uint64) (string, error) {
	if addr == 0 {
		return "", syscall.EFAULT
	}
	var out []byte
	for len(out) < 4096 {
		// Read up to the end of the page so an unmapped next page is no error.
		n := 4096 - int(addr%4096)
		if memMode == memPeek && n > 128 {
			n = 128 // a word per call: do not read a whole page for a short path
		}
		chunk, err := readMem(pid, addr, n)
		if err != nil {
			return "", err
		}
		if i := indexByte(chunk, 0); i >= 0 {
			return string(append(out, chunk[:i]...)), nil
		}
		out = append(out, chunk...)
		addr += uint64(n)
	}
	return "", errPathTooLong
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// memReader says how readMem reaches the tracee's memory. process_vm_readv
// is the fastest, but Docker's default seccomp profile denies it to a
// container without CAP_SYS_PTRACE; /proc/<pid>/mem (then PTRACE_PEEKDATA,
// one word per call) only need us to be the tracer.
type memReader int

const (
	memVMReadv memReader = iota
	memProcMem
	memPeek
)

var memMode = memVMReadv

// readMem copies up to n bytes from the tracee at addr (fewer if the range
// runs into unmapped memory, EFAULT if none can be read).
func readMem(pid int, addr uint64, n int) ([]byte, error) {
	buf := make([]byte, n)
	if memMode == memVMReadv {
		local := syscall.Iovec{Base: &buf[0], Len: uint64(n)}
		remote := struct {
			base uint64
			len  uint64
		}{addr, uint64(n)}
		got, _, e := syscall.Syscall6(sysProcessVMReadv, uintptr(pid),
			uintptr(unsafe.Pointer(&local)), 1, uintptr(unsafe.Pointer(&remote)), 1, 0)
		switch e {
		case 0:
			return buf[:got], nil
		case syscall.EPERM, syscall.ENOSYS, syscall.EACCES:
			debugf("process_vm_readv: %v: reading tracee memory through /proc/<pid>/mem", e)
			memMode = memProcMem
		default:
			return nil, e
		}
	}
	if memMode == memProcMem {
		got, err := readProcMem(pid, addr, buf)
		if err == nil {
			return buf[:got], nil
		}
		if err != syscall.EACCES && err != syscall.EPERM {
			return nil, err
		}
		debugf("/proc/%d/mem: %v: reading tracee memory with PTRACE_PEEKDATA", pid, err)
		memMode = memPeek
	}
	return peekMem(pid, addr, buf)
}

// readProcMem reads through /proc/<pid>/mem.
func readProcMem(pid int, addr uint64, buf []byte) (int, error) {
	fd, err := syscall.Open("/proc/"+strconv.Itoa(pid)+"/mem", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		if err == syscall.ENOENT {
			return 0, syscall.ESRCH
		}
		return 0, err
	}
	defer syscall.Close(fd)
	if addr > 1<<63-1 {
		return 0, syscall.EFAULT
	}
	got, err := syscall.Pread(fd, buf, int64(addr))
	if err == syscall.EIO || err == nil && got == 0 {
		return 0, syscall.EFAULT // unmapped
	}
	return got, err
}

// peekMem reads word by word with PTRACE_PEEKDATA, stopping at the first
// unreadable word.
func peekMem(pid int, addr uint64, buf []byte) ([]byte, error) {
	got := 0
	for got < len(buf) {
		n, err := syscall.PtracePeekData(pid, uintptr(addr)+uintptr(got), buf[got:])
		got += n
		if err != nil {
			if got == 0 {
				if err == syscall.EIO {
					err = syscall.EFAULT
				}
				return nil, err
			}
			break
		}
		if n == 0 {
			break
		}
	}
	return buf[:got], nil
}

// resolver turns a tracee's (dirfd, path) into an absolute path with every
// symlink resolved, as the kernel would see it.
type resolver struct {
	tgid, tid int
}

// base returns the directory relative paths start from.
func (r resolver) base(dirfd int32) (string, error) {
	if dirfd == atFdCwd {
		return os.Readlink("/proc/" + strconv.Itoa(r.tid) + "/cwd")
	}
	return r.fdPath(dirfd)
}

// fdPath returns what a descriptor of the tracee refers to.
func (r resolver) fdPath(fd int32) (string, error) {
	if fd < 0 {
		return "", syscall.EBADF
	}
	return os.Readlink("/proc/" + strconv.Itoa(r.tid) + "/fd/" + strconv.Itoa(int(fd)))
}

// resolve returns the absolute, symlink-free form of path (relative to
// dirfd); followFinal says whether a symlink in the last component is
// followed. A missing tail is appended as is (the call will fail on it).
func (r resolver) resolve(dirfd int32, path string, followFinal bool) (string, error) {
	if path == "" {
		return "", syscall.ENOENT
	}
	if !strings.HasPrefix(path, "/") {
		b, err := r.base(dirfd)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(b, "/") {
			return "", syscall.ENOTDIR
		}
		path = b + "/" + path
	}
	comps := splitPath(path)
	resolved := "/"
	links := 0
	for i := 0; i < len(comps); i++ {
		c := comps[i]
		last := i == len(comps)-1
		switch c {
		case ".":
			continue
		case "..":
			resolved = parentDir(resolved)
			continue
		}
		if resolved == "/proc" && (c == "self" || c == "thread-self") {
			// The tracee's /proc/self, not ours.
			resolved = "/proc/" + strconv.Itoa(r.tgid)
			if c == "thread-self" {
				resolved += "/task/" + strconv.Itoa(r.tid)
			}
			continue
		}
		next := joinPath(resolved, c)
		if last && !followFinal {
			return next, nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(next, &st); err != nil {
			if err == syscall.ENOENT || err == syscall.ENOTDIR {
				// Nothing below can be a symlink; ".." past a missing
				// directory fails in the kernel, so refuse it here too.
				for _, rest := range comps[i+1:] {
					if rest == ".." {
						return "", syscall.ENOENT
					}
					if rest != "." {
						next = joinPath(next, rest)
					}
				}
				return next, nil
			}
			return "", err
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFLNK {
			resolved = next
			continue
		}
		links++
		if links > maxSymlinks {
			return "", syscall.ELOOP
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(target, "/") && strings.HasPrefix(next, "/proc/") {
			// A /proc magic link to a pipe, socket or anonymous inode.
			if last {
				return target, nil
			}
			return "", syscall.ENOTDIR
		}
		if strings.HasPrefix(target, "/") {
			resolved = "/"
		}
		comps = append(splitPath(target), comps[i+1:]...)
		i = -1
	}
	return resolved, nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}
