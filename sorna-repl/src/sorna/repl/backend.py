"""The interface a language daemon implements, and what the daemon core offers it.

A backend is the thin per-language part: it runs a snippet (``code``), a batch ``build`` or
``exec`` command, completes code, and stops a run on ``interrupt``. Everything about the wire
(sockets, queueing, streaming, the output cap, ``finished`` frames) is the daemon core's job.

Threads: ``run_code``/``build``/``execute`` are called on the daemon's main thread, one at a
time; ``complete``/``interrupt`` are called on the I/O thread, possibly while a run is going.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .protocol import OutputOp


class KernelIO(Protocol):
    """The daemon core, as seen by a backend."""

    @property
    def workdir(self) -> Path:
        """The directory runs start in (``/home/work`` in images)."""
        ...

    def write(self, stream: OutputOp, text: str) -> bool:
        """Stream text on stdout/stderr; False once the run exceeded its output cap."""
        ...

    def emit(self, op: OutputOp, payload: bytes = b"") -> None:
        """Send any other output frame, after the output written so far."""
        ...

    def read_input(self, *, is_password: bool = False) -> str:
        """Send ``waiting-input`` (unless a line is already queued) and block for a line.

        The returned line carries no trailing newline. Raises whatever the thread's signal
        handlers raise (``KeyboardInterrupt`` on interrupt) while waiting.
        """
        ...

    def poll_input(self) -> str | None:
        """Return a queued ``input`` line without waiting, or None."""
        ...


class LanguageBackend(abc.ABC):
    """One language's way of running code. Subclass per language."""

    #: Canonical language name (``python3``, ``c``, ...), for logs.
    lang: str = "unknown"
    #: The program the ``tty`` feature runs on a PTY (None: no tty feature).
    tty_argv: Sequence[str] | None = None

    def __init__(self) -> None:
        self._io: KernelIO | None = None

    @property
    def io(self) -> KernelIO:
        """The daemon core this backend is attached to."""
        if self._io is None:
            raise RuntimeError("backend is not attached to a daemon")
        return self._io

    def attach(self, io: KernelIO) -> None:
        """Called once by the daemon before any run."""
        self._io = io

    @abc.abstractmethod
    def run_code(self, code: str) -> int:
        """Run a query-mode snippet; return its exit status (0 = success)."""

    @abc.abstractmethod
    def build(self, command: str) -> int:
        """Run a batch build command (``*`` = the language's default); return its status."""

    @abc.abstractmethod
    def execute(self, command: str) -> int:
        """Run a batch exec command (``*`` = the language's default); return its status."""

    def complete(self, code: str, options: Mapping[str, Any]) -> list[str]:
        """Return completion candidates for the end of ``code`` (none by default)."""
        return []

    def interrupt(self) -> None:
        """Stop the current run (called from the I/O thread; only while a run is going)."""
        return None

    def close(self) -> None:
        """Release what the backend holds (child processes, files)."""
        return None
