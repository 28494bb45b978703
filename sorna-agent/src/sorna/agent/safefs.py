"""Open paths beneath a directory descriptor without following any symbolic link.

A kernel owns its scratch folder and may rename, swap (``renameat2(RENAME_EXCHANGE)``) or
replace anything in it at any moment, while the agent works on it as root. So the agent never
opens a kernel's path by its full name: it opens the folder once, then resolves each path
beneath that descriptor with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
RESOLVE_NO_MAGICLINKS)``, which fails (``ELOOP``/``EXDEV``) rather than follow a link on any
component, and then acts on the descriptor it got. Where ``openat2`` is missing (a kernel
before 5.6, or a seccomp profile that answers ``ENOSYS``) the same guarantee comes from a walk
one component at a time, each opened with ``O_NOFOLLOW`` relative to the one before.

Paths given here are relative, already normalised byte strings (no empty, ``.`` or ``..``
component); the callers in :mod:`sorna.agent.files` make them so. Everything raises
:class:`OSError` as the system call did.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import stat
from collections.abc import Callable
from typing import Any, Final

#: Longest path the kernel resolves (PATH_MAX, counting the final NUL) and longest name.
MAX_PATH_BYTES: Final = 4096
MAX_NAME_BYTES: Final = 255

#: ``openat2`` is 437 on every architecture that took the unified syscall table (5.6+).
_OPENAT2_SYSCALL: Final = 437
_OPENAT2_MACHINES: Final = frozenset({"x86_64", "aarch64"})
#: ``struct open_how.resolve`` bits (linux/openat2.h).
RESOLVE_NO_MAGICLINKS: Final = 0x02
RESOLVE_NO_SYMLINKS: Final = 0x04
RESOLVE_BENEATH: Final = 0x08
_RESOLVE: Final = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

#: Flags every open here carries: the last component is never followed either.
_ALWAYS: Final = os.O_NOFOLLOW | os.O_CLOEXEC
#: Opening a kernel's file never blocks (FIFO without a peer, leased file) nor takes a tty.
NONBLOCKING: Final = os.O_NONBLOCK | os.O_NOCTTY
#: A folder on the way down: a descriptor good for ``*at`` calls, listing and ``fchown``.
DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


#: ``syscall(SYS_openat2, dirfd, path, &how, sizeof how)``.
Openat2 = Callable[[int, int, bytes, Any, int], int]


@functools.cache
def _openat2() -> Openat2 | None:
    """libc's ``syscall`` bound for openat2, or None where the number is not known."""
    if platform.system() != "Linux" or platform.machine() not in _OPENAT2_MACHINES:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    fn.argtypes = [
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.POINTER(_OpenHow),
        ctypes.c_size_t,
    ]
    call: Openat2 = fn
    return call


def split(rel: bytes) -> list[bytes]:
    """The components of a normalised relative path (none for ``b""``)."""
    parts = [p for p in rel.split(b"/") if p]
    for part in parts:
        if part in (b".", b".."):
            raise OSError(errno.EINVAL, "path is not normalised", rel)
    return parts


def open_root(path: str | os.PathLike[str]) -> int:
    """Open the agent's own folder of a kernel (its last component is never followed)."""
    return os.open(path, DIR_FLAGS | _ALWAYS)


def open_beneath(dir_fd: int, rel: bytes, flags: int, mode: int = 0o600) -> int:
    """Open ``rel`` beneath ``dir_fd`` following no symbolic link; ``O_NOFOLLOW`` is implied.

    With ``O_PATH`` a final symbolic link is opened as itself (to ``fstat`` it).
    """
    parts = split(rel)
    if parts:
        fd = _try_openat2(dir_fd, b"/".join(parts), flags | _ALWAYS, mode)
        if fd is not None:
            return fd
    return walk_open(dir_fd, rel, flags, mode)


def _try_openat2(dir_fd: int, rel: bytes, flags: int, mode: int) -> int | None:
    call = _openat2()
    if call is None:
        return None
    # openat2 refuses a mode without O_CREAT or O_TMPFILE (whose bits include O_DIRECTORY).
    creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
    how = _OpenHow(flags=flags, mode=mode if creates else 0)
    how.resolve = _RESOLVE
    while True:
        fd = call(_OPENAT2_SYSCALL, dir_fd, rel, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err == errno.EINTR:
            continue
        if err == errno.ENOSYS:
            return None
        raise OSError(err, os.strerror(err), os.fsdecode(rel))


def walk_open(dir_fd: int, rel: bytes, flags: int, mode: int = 0o600) -> int:
    """:func:`open_beneath` without ``openat2``: one component at a time.

    Each folder on the way is opened relative to the one before with ``O_NOFOLLOW``, so a
    link anywhere fails (``ENOTDIR`` or ``ELOOP``) instead of leading out.
    """
    parts = split(rel)
    flags |= _ALWAYS
    if not parts:
        return os.open(".", flags, mode, dir_fd=dir_fd)
    cur = dir_fd
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | _ALWAYS, dir_fd=cur)
            if cur != dir_fd:
                os.close(cur)
            cur = nxt
        return os.open(parts[-1], flags, mode, dir_fd=cur)
    finally:
        if cur != dir_fd:
            os.close(cur)


def make_dirs(dir_fd: int, rel: bytes, *, mode: int, owner: int | None) -> int:
    """Open folder ``rel`` beneath ``dir_fd``, making the missing ones (given to ``owner``).

    Each folder is made with ``mkdirat`` in the descriptor of its parent and opened back
    without following links, so a link swapped in on the way fails instead of leading out.
    Returns a descriptor of the last folder (the caller closes it).
    """
    cur = os.dup(dir_fd)
    try:
        for part in split(rel):
            try:
                nxt = open_beneath(cur, part, DIR_FLAGS)
            except FileNotFoundError:
                made = True
                try:
                    os.mkdir(part, mode, dir_fd=cur)
                except FileExistsError:
                    made = False
                nxt = open_beneath(cur, part, DIR_FLAGS)
                if made:
                    give(nxt, owner)
            os.close(cur)
            cur = nxt
    except BaseException:
        os.close(cur)
        raise
    return cur


def give(fd: int, owner: int | None) -> None:
    """Hand an open file or folder to ``owner`` (or open it to all when we may not chown)."""
    if owner is None:
        return
    try:
        os.fchown(fd, owner, owner)
    except PermissionError:
        os.fchmod(fd, 0o777 if stat.S_ISDIR(os.fstat(fd).st_mode) else 0o666)


def kind(mode: int) -> str:
    """The listing type of a file mode: file, dir, link, fifo, socket or device."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def pin_socket(path: str) -> int:
    """An ``O_PATH`` descriptor of the unix socket at ``path``, whose last component is not
    followed if it is a link. Connecting to ``/proc/self/fd/<fd>`` then reaches this very socket
    however the kernel renames or replaces the name later (ZMQ reconnects by name)."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.ENOTSOCK, f"{path} is not a socket")
    return fd
