"""A kernel's scratch folder (its ``/home/work``) as the agent sees it from the host.

Every path a caller names is relative to ``/home/work`` (or absolute under it); anything that
leaves the folder, including through a symbolic link the kernel planted, is refused with
:class:`~sorna.agent.errors.InvalidApiParams`. These functions block: run them in a thread.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sorna.common.constants import KERNEL_WORK_DIR, KERNEL_WORK_UID

from .errors import InvalidApiParams, PayloadTooLarge

#: path -> (size, mtime in ns) of every regular file under a scratch folder.
Snapshot = dict[str, tuple[int, int]]


def relative_path(path: str) -> str:
    """Normalise ``path`` to a path relative to /home/work; refuse one that leaves it."""
    if "\x00" in path:
        raise InvalidApiParams("path contains a NUL byte")
    if path.startswith("/"):
        if path != KERNEL_WORK_DIR and not path.startswith(KERNEL_WORK_DIR + "/"):
            raise InvalidApiParams(f"{path!r} is outside {KERNEL_WORK_DIR}")
        path = path[len(KERNEL_WORK_DIR) :].lstrip("/")
    if any(part == ".." for part in path.split("/")):
        raise InvalidApiParams(f"{path!r} leaves {KERNEL_WORK_DIR}")
    normal = posixpath.normpath(path) if path else "."
    return "" if normal == "." else normal


@dataclass(frozen=True, slots=True)
class Scratch:
    """The host folder bind-mounted as a kernel's /home/work."""

    root: Path

    def create(self, owner_uid: int | None = KERNEL_WORK_UID) -> None:
        """Make the folder, writable by the kernel's user."""
        self.root.mkdir(parents=True, exist_ok=True)
        _give(self.root, owner_uid)

    def resolve(self, path: str, *, must_exist: bool = True) -> Path:
        """The host path of ``path``; its real location must stay inside the folder."""
        rel = relative_path(path)
        real_root = self.root.resolve()
        target = real_root / rel if rel else real_root
        real = target.resolve() if must_exist else target.parent.resolve() / target.name
        if real != real_root and real_root not in real.parents:
            raise InvalidApiParams(f"{path!r} leaves {KERNEL_WORK_DIR}")
        if must_exist and not real.exists():
            raise InvalidApiParams(f"{path!r} does not exist")
        return real

    def write(self, path: str, data: bytes, owner_uid: int | None = KERNEL_WORK_UID) -> None:
        """Write a file (making its folders), never through a symbolic link."""
        if not relative_path(path):
            raise InvalidApiParams("an upload needs a file name")
        target = self.resolve(path, must_exist=False)
        missing: list[Path] = []
        parent = target.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        target.parent.mkdir(parents=True, exist_ok=True)
        for folder in missing:
            _give(folder, owner_uid)
        self.resolve(str(target.parent.relative_to(self.root.resolve())) or ".")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(target, flags, 0o644)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise PayloadTooLarge(f"no room for {path!r} in {KERNEL_WORK_DIR}") from None
            raise InvalidApiParams(f"cannot write {path!r}: {e.strerror}") from None
        try:
            view = memoryview(data)
            while view:  # unbuffered: a failed write leaves nothing to flush at close
                view = view[os.write(fd, view) :]
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            os.ftruncate(fd, 0)  # the disk cap is reached: keep no partial upload
            raise PayloadTooLarge(f"{path!r} does not fit in {KERNEL_WORK_DIR}") from None
        finally:
            os.close(fd)
        _give(target, owner_uid)

    def list(self, path: str) -> list[dict[str, Any]]:
        """The entries of a folder (or the one file) under /home/work."""
        target = self.resolve(path)
        entries = [target] if not target.is_dir() else sorted(target.iterdir())
        out: list[dict[str, Any]] = []
        for entry in entries:
            try:
                st = entry.lstat()
            except OSError:
                continue
            kind = (
                "dir"
                if stat.S_ISDIR(st.st_mode)
                else "link"
                if stat.S_ISLNK(st.st_mode)
                else "file"
            )
            out.append(
                {
                    "name": entry.name,
                    "size": st.st_size,
                    "mode": stat.filemode(st.st_mode),
                    "mtime": st.st_mtime,
                    "type": kind,
                }
            )
        return out

    def read(self, path: str, offset: int, length: int) -> tuple[bytes, bool]:
        """Read up to ``length`` bytes at ``offset``; also say whether the end was reached."""
        target = self.resolve(path)
        if not target.is_file():
            raise InvalidApiParams(f"{path!r} is not a file")
        if offset < 0 or length < 0:
            raise InvalidApiParams("offset and length must not be negative")
        with target.open("rb") as f:
            f.seek(offset)
            data = f.read(length)
            eof = offset + len(data) >= os.fstat(f.fileno()).st_size
        return data, eof

    def snapshot(self) -> Snapshot:
        """Size and mtime of every regular, non-hidden file (hidden folders are skipped)."""
        found: Snapshot = {}
        root = str(self.root)
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith("."):
                    continue
                full = os.path.join(folder, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[os.path.relpath(full, root)] = (st.st_size, st.st_mtime_ns)
        return found


def changed_files(before: Snapshot, after: Snapshot, max_size: int) -> list[str]:
    """Files new or changed between two snapshots, at most ``max_size`` bytes each."""
    return sorted(
        path
        for path, (size, mtime) in after.items()
        if before.get(path) != (size, mtime) and size <= max_size
    )


def _give(path: Path, uid: int | None) -> None:
    if uid is None:
        return
    try:
        os.chown(path, uid, uid, follow_symlinks=False)
    except PermissionError:
        path.chmod(0o777 if path.is_dir() else 0o666)
