"""What a test's agents and kernels may leave below a scratch root, found and removed.

One place for the leak checks and the clean-up of every suite: processes working below a
folder (the kernels of an agent whose scratch root it is, even after the agent was SIGKILLed),
mounts below it (the kernels' disks), and :func:`scratch_folder`, the short temporary folder a
test's agent works in (``scratch_root`` in the pytest plugin).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def processes_under(root: Path) -> list[int]:
    """Processes working below ``root`` or naming it on their command line: the kernels of an
    agent whose scratch root it is (a sandbox's command line names its folders)."""
    found = []
    marker = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(entry / "cwd")
            if (
                cwd == str(root)
                or cwd.startswith(f"{root}/")
                or marker in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    """``pid`` has exited (a zombie counts: it holds no folder or mount any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def kill_processes_under(root: Path, *, within: float = 10.0) -> None:
    """SIGKILL :func:`processes_under` ``root`` (what a SIGKILLed agent left running) and wait
    up to ``within`` seconds for them to be gone."""
    pids = processes_under(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + within
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def mounts_under(root: Path) -> list[str]:
    """Mount points below ``root`` (from this process's mount table)."""
    prefix = str(root.resolve()) + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            found.append(point)
    return found


def unmount_under(root: Path) -> None:
    """Lazily unmount everything below ``root`` (kernels' disks a killed agent left mounted)."""
    for point in sorted(mounts_under(root), reverse=True):  # inner mounts first
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def clean_folder(root: Path) -> None:
    """Kill the processes, unmount the mounts below ``root``, then remove it."""
    kill_processes_under(root)
    unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def scratch_folder(prefix: str = "sc-") -> Iterator[Path]:
    """A fresh folder directly in /tmp, short because the kernels' ipc socket paths below it
    must stay under 108 bytes; :func:`clean_folder` at exit."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield root
    finally:
        clean_folder(root)
