"""One run of code in a kernel, and the API result object built from its frames."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sorna.common.ids import RunId
from sorna.common.messages import ExecuteResult
from sorna.common.types import RunStatus
from sorna.repl.protocol import Frame, OutputOp

_TEXT_OPS = frozenset({OutputOp.STDOUT, OutputOp.STDERR})


@dataclass
class Run:
    """A run's state: its request, the output not yet delivered, and how it ended."""

    run_id: RunId
    mode: str
    code: str
    options: dict[str, Any]
    console: list[list[Any]] = field(default_factory=list)
    #: Set when the run can take no more output (finished, timed out, killed).
    outcome: RunStatus | None = None
    #: Options of the final result (``finished`` payload, exit code, reason).
    final_options: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    #: One-shot notices delivered before the end: ``waiting-input`` / ``build-finished``.
    waiting_input: dict[str, Any] | None = None
    build_finished: bool = False
    #: True while the daemon waits for an ``input`` op from this run.
    awaits_input: bool = False
    #: Set by the reader when the daemon ends the current step (build or exec).
    step_done: asyncio.Event = field(default_factory=asyncio.Event)
    step_options: dict[str, Any] | None = None
    _waiters: set[asyncio.Future[None]] = field(default_factory=set)
    started: bool = False

    def add(self, frame: Frame) -> None:
        """Take one output frame of this run."""
        op = frame.op
        if op in _TEXT_OPS:
            self.append(op, frame.text)
        elif op == OutputOp.MEDIA:
            media = _json(frame)
            if isinstance(media, dict):
                self.console.append(["media", [media.get("type"), media.get("data")]])
        elif op == OutputOp.HTML:
            self.console.append(["html", frame.text])
        elif op == OutputOp.LOG:
            self.console.append(["log", frame.text])
        elif op == OutputOp.WAITING_INPUT:
            payload = _json(frame)
            self.waiting_input = payload if isinstance(payload, dict) else {"is_password": False}
            self.awaits_input = True
        elif op in (OutputOp.FINISHED, OutputOp.BUILD_FINISHED):
            payload = _json(frame)
            self.step_options = payload if isinstance(payload, dict) else {}
            self.step_done.set()
            return
        else:
            return
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits in :meth:`wait_change`."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_change(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until :meth:`notify` or ``timeout`` seconds (a timer, not a task: hot path)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)

    def append(self, stream: str, text: str) -> None:
        """Add text, merged with the previous item when it is of the same stream."""
        if self.console and self.console[-1][0] == stream:
            self.console[-1][1] += text
        else:
            self.console.append([stream, text])

    def end(self, outcome: RunStatus, options: dict[str, Any] | None = None) -> None:
        """Mark the run over (idempotent: the first outcome wins)."""
        if self.outcome is None:
            self.outcome = outcome
            self.final_options = options
        self.step_done.set()
        self.notify()

    def take(self, status: RunStatus, options: dict[str, Any] | None = None) -> ExecuteResult:
        """Build a result, handing over the output gathered since the last one."""
        console, self.console = self.console, []
        files = self.files if status in (RunStatus.FINISHED, RunStatus.EXEC_TIMEOUT) else []
        return ExecuteResult(
            runId=self.run_id, status=str(status), console=console, options=options, files=files
        )

    def ready_result(self) -> ExecuteResult | None:
        """A result to answer with now (end or notice), or None to keep gathering."""
        if self.waiting_input is not None and self.outcome is None:
            options, self.waiting_input = self.waiting_input, None
            return self.take(RunStatus.WAITING_INPUT, options)
        if self.build_finished and self.outcome is None:
            self.build_finished = False
            return self.take(RunStatus.BUILD_FINISHED)
        if self.outcome is not None and self.files_ready:
            return self.take(self.outcome, self.final_options)
        return None

    #: Set once output files of a finished run are listed (and uploaded).
    files_ready: bool = False


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _json(frame: Frame) -> Any:
    try:
        return frame.json()
    except ValueError:
        return None
