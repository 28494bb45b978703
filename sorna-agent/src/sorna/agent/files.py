"""A kernel's scratch folder (its ``/home/work``) as the agent sees it from the host.

Every path a caller names is relative to ``/home/work`` (or absolute under it). The kernel
owns the folder and may change it while the agent, as root, works on it, so every operation
opens the folder once and resolves the path beneath it following no symbolic link on any
component (:mod:`sorna.agent.safefs`), then acts on the descriptor it got: a link planted or
swapped in anywhere on the way is refused with :class:`~sorna.agent.errors.InvalidApiParams`,
never followed. Only regular files are read or written; files are opened non-blocking, so a
FIFO, socket or device the kernel made is refused at once instead of holding a thread.

Listing entries are ``{"name", "size", "mode", "mtime", "type"}`` with ``type`` one of
``file``, ``dir``, ``link`` (a symbolic link, listed as itself), ``fifo``, ``socket`` or
``device``. A name that is not UTF-8 (the kernel may make any bytes) is listed with each
undecodable byte as a ``\\xNN`` escape and ``"downloadable": false``: the API speaks UTF-8, so
such a file cannot be named in a download; after a run it is listed the same way in the
result's files and not uploaded to S3.

Bad paths (a NUL byte, ``..``, a name over 255 bytes, a path over 4,096 bytes) are
:class:`InvalidApiParams`; a full disk while uploading is :class:`PayloadTooLarge`.
These functions block: run them on the agent's file pool.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sorna.common.constants import KERNEL_WORK_DIR, KERNEL_WORK_UID

from . import safefs
from .errors import AgentError, InvalidApiParams, PayloadTooLarge

log = logging.getLogger(__name__)

#: path -> (size, mtime in ns) of every regular file under a scratch folder.
Snapshot = dict[str, tuple[int, int]]

#: Errors that say something about the kernel's path (the caller's problem), not the agent's.
_PATH_ERRORS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EXDEV,
        errno.ENAMETOOLONG,
        errno.ENXIO,
        errno.EACCES,
        errno.EPERM,
        errno.ETXTBSY,
        errno.EROFS,
        errno.EAGAIN,
        errno.EINVAL,
        errno.EMLINK,
        errno.ENOTEMPTY,
    }
)
_FULL_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def relative_path(path: str) -> str:
    """Normalise ``path`` to a path relative to /home/work; refuse one that leaves it."""
    if "\x00" in path:
        raise InvalidApiParams("path contains a NUL byte")
    raw = _encode(path)
    if len(raw) > safefs.MAX_PATH_BYTES:
        raise InvalidApiParams(f"path is longer than {safefs.MAX_PATH_BYTES} bytes")
    if any(len(part) > safefs.MAX_NAME_BYTES for part in raw.split(b"/")):
        raise InvalidApiParams(f"a name in the path is longer than {safefs.MAX_NAME_BYTES} bytes")
    if path.startswith("/"):
        if path != KERNEL_WORK_DIR and not path.startswith(KERNEL_WORK_DIR + "/"):
            raise InvalidApiParams(f"{path!r} is outside {KERNEL_WORK_DIR}")
        path = path[len(KERNEL_WORK_DIR) :].lstrip("/")
    if any(part == ".." for part in path.split("/")):
        raise InvalidApiParams(f"{path!r} leaves {KERNEL_WORK_DIR}")
    normal = posixpath.normpath(path) if path else "."
    return "" if normal == "." else normal


def display_name(name: str) -> tuple[str, bool]:
    """A file name as listed, and whether it is the name itself (UTF-8) or an escaped form."""
    raw = os.fsencode(name)
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), False


@dataclass(frozen=True, slots=True)
class Scratch:
    """The host folder bind-mounted as a kernel's /home/work."""

    root: Path

    def create(self, owner_uid: int | None = KERNEL_WORK_UID) -> None:
        """Make the folder, writable by the kernel's user (before the kernel starts)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = safefs.open_root(self.root)
        try:
            safefs.give(fd, owner_uid)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _opened(self) -> Iterator[int]:
        fd = safefs.open_root(self.root)
        try:
            yield fd
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes, owner_uid: int | None = KERNEL_WORK_UID) -> None:
        """Write a regular file (making its folders), never through a link nor onto a FIFO."""
        rel = relative_path(path)
        if not rel:
            raise InvalidApiParams("an upload needs a file name")
        folder, _, name = _encode(rel).rpartition(b"/")
        with _as_api_error(path), self._opened() as root:
            dir_fd = safefs.make_dirs(root, folder, mode=0o755, owner=owner_uid)
            try:
                _write_file(dir_fd, name, data, owner_uid, path)
            finally:
                os.close(dir_fd)

    def list(self, path: str) -> list[dict[str, Any]]:
        """The entries of a folder (or the one entry of a file) under /home/work.

        A link in the folder is listed as itself; a path naming a link is refused.
        """
        rel = relative_path(path)
        with _as_api_error(path), self._opened() as root:
            fd = safefs.open_beneath(root, _encode(rel), os.O_PATH)
            try:
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode):
                    raise InvalidApiParams(f"{path!r} is a symbolic link (not followed)")
                if not stat.S_ISDIR(st.st_mode):
                    return [_entry(posixpath.basename(rel), st)]
                # "." of an O_PATH descriptor is the very folder it holds: no second lookup.
                dir_fd = os.open(".", safefs.DIR_FLAGS | os.O_CLOEXEC, dir_fd=fd)
            finally:
                os.close(fd)
            try:
                return _entries(dir_fd)
            finally:
                os.close(dir_fd)

    def read(self, path: str, offset: int, length: int) -> tuple[bytes, bool]:
        """Read up to ``length`` bytes at ``offset``; also say whether the end was reached."""
        if offset < 0 or length < 0:
            raise InvalidApiParams("offset and length must not be negative")
        rel = relative_path(path)
        with _as_api_error(path), self._opened() as root:
            fd = _open_regular(root, _encode(rel), path)
            try:
                data = _pread(fd, length, offset)
                eof = offset + len(data) >= os.fstat(fd).st_size
            finally:
                os.close(fd)
        return data, eof

    def read_output(self, path: str, max_size: int) -> bytes | None:
        """The bytes of an output file for S3, or None if it is over ``max_size`` by now."""
        with _as_api_error(path), self._opened() as root:
            fd = _open_regular(root, _encode(path), path)
            try:
                if os.fstat(fd).st_size > max_size:
                    return None
                data = _pread(fd, max_size + 1, 0)
            finally:
                os.close(fd)
        return data if len(data) <= max_size else None

    def snapshot(self, budget: int | None = None) -> Snapshot | None:
        """Size and mtime of every regular, non-hidden file (hidden folders are skipped).

        Walks folder descriptors and follows no link. With a ``budget`` of entries, returns
        None as soon as the folder holds more (the caller then walks it off the event loop).
        """
        found: Snapshot = {}
        seen = 0
        try:
            root = safefs.open_root(self.root)
        except OSError:
            return found
        try:
            pending = [b""]
            while pending:
                folder = pending.pop()
                try:
                    dir_fd = safefs.open_beneath(root, folder, safefs.DIR_FLAGS)
                except OSError:
                    continue  # gone, replaced by a link, or too deep to name: not walked
                try:
                    with os.scandir(dir_fd) as it:
                        for entry in it:
                            seen += 1
                            if budget is not None and seen > budget:
                                return None
                            if entry.name.startswith("."):
                                continue
                            rel = posixpath.join(os.fsdecode(folder), entry.name)
                            try:
                                st = entry.stat(follow_symlinks=False)
                            except OSError:
                                continue
                            if stat.S_ISDIR(st.st_mode):
                                pending.append(os.fsencode(rel))
                            elif stat.S_ISREG(st.st_mode):
                                found[rel] = (st.st_size, st.st_mtime_ns)
                except OSError:
                    continue
                finally:
                    os.close(dir_fd)
        finally:
            os.close(root)
        return found


def changed_files(before: Snapshot, after: Snapshot, max_size: int) -> list[str]:
    """Files new or changed between two snapshots, at most ``max_size`` bytes each."""
    return sorted(
        path
        for path, (size, mtime) in after.items()
        if before.get(path) != (size, mtime) and size <= max_size
    )


def _encode(path: str) -> bytes:
    try:
        return path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidApiParams("path is not valid UTF-8") from None


@contextlib.contextmanager
def _as_api_error(path: str) -> Iterator[None]:
    """Turn what the system says about a kernel's path into the caller's error."""
    try:
        yield
    except AgentError:
        raise
    except OSError as e:
        if e.errno in _FULL_ERRORS:
            raise PayloadTooLarge(f"no space left in {KERNEL_WORK_DIR}") from None
        if e.errno not in _PATH_ERRORS:
            raise
        raise InvalidApiParams(f"{path!r}: {_reason(e)}") from None


def _reason(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "does not exist"
    if e.errno in (errno.ELOOP, errno.EXDEV):
        return "is or passes through a symbolic link"
    if e.errno == errno.ENXIO:
        return "is not a regular file"
    if e.errno == errno.EAGAIN:
        return "is busy (leased or locked by the kernel)"
    return e.strerror or str(e)


def _refuse_kind(st: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise InvalidApiParams(f"{path!r} is not a regular file but a {safefs.kind(st.st_mode)}")


def _open_regular(root: int, rel: bytes, path: str) -> int:
    """Open a regular file for reading; anything else is refused before it is opened."""
    # An O_PATH look first: a device is refused without ever being opened (opening one may
    # act on it); the real open then checks again, as the name may have changed between.
    probe = safefs.open_beneath(root, rel, os.O_PATH)
    try:
        _refuse_kind(os.fstat(probe), path)
    finally:
        os.close(probe)
    fd = safefs.open_beneath(root, rel, os.O_RDONLY | safefs.NONBLOCKING)
    try:
        _refuse_kind(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_file(dir_fd: int, name: bytes, data: bytes, owner: int | None, path: str) -> None:
    try:
        _refuse_kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), path)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | safefs.NONBLOCKING
    try:
        fd = safefs.open_beneath(dir_fd, name, flags | os.O_CREAT | os.O_EXCL, 0o644)
        created = True
    except FileExistsError:
        # No O_TRUNC: what the name holds now is checked before a byte of it changes.
        fd = safefs.open_beneath(dir_fd, name, flags)
        created = False
    try:
        st = os.fstat(fd)
        _refuse_kind(st, path)
        if st.st_nlink > 1:
            raise InvalidApiParams(f"{path!r} has other hard links; not written through")
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        safefs.give(fd, owner)
    except BaseException:
        os.close(fd)
        if created:
            # Nothing left behind: the name is in the folder's descriptor, so this removes
            # only what is in the kernel's folder, whatever it is by now.
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
        raise
    os.close(fd)


def _pread(fd: int, length: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < length:
        chunk = os.pread(fd, length - got, offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _entries(dir_fd: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in sorted(os.listdir(dir_fd)):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        out.append(_entry(name, st))
    return out


def _entry(name: str, st: os.stat_result) -> dict[str, Any]:
    shown, exact = display_name(name)
    entry: dict[str, Any] = {
        "name": shown,
        "size": st.st_size,
        "mode": stat.filemode(st.st_mode),
        "mtime": st.st_mtime,
        "type": safefs.kind(st.st_mode),
    }
    if not exact:
        entry["downloadable"] = False
    return entry
