"""Who runs the stack of a data folder: a lock the supervisor holds, and its state file.

The lock (``flock`` on ``run/lock``) is the truth: it is held exactly as long as a supervisor
lives, even one killed with SIGKILL. The state file says what that supervisor runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .config import Layout

Phase = Literal["starting", "running", "stopping"]


@dataclass(slots=True)
class State:
    """What a supervisor runs; rewritten whole (atomically) on every change."""

    pid: int
    endpoint: str
    phase: Phase = "starting"
    backend: str = ""
    backend_reason: str = ""
    children: dict[str, int] = field(default_factory=dict)
    line: str = ""
    error: str = ""

    def save(self, layout: Layout) -> None:
        tmp = layout.state.with_name(f".state.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(layout.state)

    @classmethod
    def load(cls, layout: Layout) -> State | None:
        try:
            data: dict[str, Any] = json.loads(layout.state.read_text())
        except (OSError, ValueError):
            return None
        try:
            return cls(**data)
        except TypeError:
            return None


class Lock:
    """The data folder's supervisor lock."""

    def __init__(self, layout: Layout) -> None:
        self._path = layout.lock
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False if another process holds it."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def is_running(layout: Layout) -> bool:
    """Tell whether a supervisor holds the lock of ``layout``."""
    if not layout.lock.exists():
        return False
    probe = Lock(layout)
    if probe.acquire():
        probe.release()
        return False
    return True
