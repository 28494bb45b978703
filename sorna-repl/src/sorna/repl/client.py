"""An asyncio client for one REPL daemon (used by the agent and by the tests).

Frames of different kinds can interleave on the output socket (a ``status`` answer arrives in
the middle of a run's output). Each helper takes the frames it is waiting for and leaves the
others, in order, for whoever asks next::

    async with ReplClient(input_addr, output_addr) as client:
        result = await client.run_code("print(input('name? '))", input_answers=["Ada"])
        assert result.stdout == "name? Ada\\n"
"""

from __future__ import annotations

import collections
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import zmq
import zmq.asyncio

from .protocol import (
    CompletePayload,
    Frame,
    InputOp,
    OutputOp,
    StatusPayload,
    WaitingInputPayload,
    json_payload,
)

#: Output ops that belong to a run (as opposed to answers to immediate ops).
RUN_OPS = frozenset(
    {
        OutputOp.STDOUT,
        OutputOp.STDERR,
        OutputOp.MEDIA,
        OutputOp.HTML,
        OutputOp.LOG,
        OutputOp.WAITING_INPUT,
        OutputOp.FINISHED,
        OutputOp.BUILD_FINISHED,
    }
)


class ReplClientError(Exception):
    """The daemon did something the client cannot go on from."""


class InputExhaustedError(ReplClientError):
    """The run asked for input and no answer was left."""


@dataclass
class RunResult:
    """Everything one run sent, up to and including its ``finished``/``build-finished``."""

    frames: list[Frame] = field(default_factory=list)

    def _join(self, op: OutputOp) -> str:
        return "".join(f.text for f in self.frames if f.op == op)

    @property
    def stdout(self) -> str:
        """All stdout text."""
        return self._join(OutputOp.STDOUT)

    @property
    def stderr(self) -> str:
        """All stderr text."""
        return self._join(OutputOp.STDERR)

    @property
    def media(self) -> list[dict[str, Any]]:
        """The payloads of ``media`` frames."""
        return [f.json() for f in self.frames if f.op == OutputOp.MEDIA]

    @property
    def html(self) -> list[str]:
        """The payloads of ``html`` frames."""
        return [f.text for f in self.frames if f.op == OutputOp.HTML]

    @property
    def waiting_inputs(self) -> list[WaitingInputPayload]:
        """The payloads of ``waiting-input`` frames."""
        return [f.json() for f in self.frames if f.op == OutputOp.WAITING_INPUT]

    @property
    def ops(self) -> list[str]:
        """The ops in arrival order."""
        return [f.op for f in self.frames]

    @property
    def exit_code(self) -> int | None:
        """The exit status reported in the final frame, if any."""
        if not self.frames:
            return None
        try:
            options = self.frames[-1].json()
        except ValueError:
            return None
        if isinstance(options, dict) and isinstance(options.get("exit_code"), int):
            return int(options["exit_code"])
        return None


class ReplClient:
    """Talk to one REPL daemon: PUSH to its input address, PULL from its output address."""

    def __init__(
        self,
        input_addr: str,
        output_addr: str,
        *,
        context: zmq.asyncio.Context | None = None,
        frame_timeout: float | None = 60.0,
    ) -> None:
        """Connect (ZMQ connects lazily: the daemon may bind later).

        ``frame_timeout`` bounds each wait for the next frame (None: wait forever); bound a
        whole exchange with ``asyncio.timeout``.
        """
        self._own_context = context is None
        self._ctx = context if context is not None else zmq.asyncio.Context()
        self._push = self._ctx.socket(zmq.PUSH)
        self._pull = self._ctx.socket(zmq.PULL)
        for sock in (self._push, self._pull):
            sock.setsockopt(zmq.LINGER, 0)
        self._push.connect(input_addr)
        self._pull.connect(output_addr)
        self._backlog: collections.deque[Frame] = collections.deque()
        self.frame_timeout = frame_timeout
        self.input_addr = input_addr
        self.output_addr = output_addr

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the sockets (and the context, if the client made it). Idempotent."""
        self._push.close(linger=0)
        self._pull.close(linger=0)
        if self._own_context:
            self._ctx.term()

    # -- raw frames ------------------------------------------------------------------------

    async def send(self, op: InputOp | str, payload: bytes | str = b"") -> None:
        """Send one input op."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        await self._push.send_multipart([str(op).encode("ascii"), data])

    async def recv(self) -> Frame:
        """The next output frame (earlier-skipped frames first)."""
        return await self._next(lambda f: True)

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Frame]:
        while True:
            yield await self.recv()

    async def _next(self, accept: Callable[[Frame], bool]) -> Frame:
        for i, frame in enumerate(self._backlog):
            if accept(frame):
                del self._backlog[i]
                return frame
        wait = self.frame_timeout
        while True:
            ready = await self._pull.poll(None if wait is None else int(wait * 1000))
            if not ready:
                raise TimeoutError(f"no frame from {self.output_addr} within {wait} s")
            frame = Frame.decode(await self._pull.recv_multipart())
            if accept(frame):
                return frame
            self._backlog.append(frame)

    # -- ops -------------------------------------------------------------------------------

    async def send_input(self, line: str) -> None:
        """Answer a ``waiting-input``."""
        await self.send(InputOp.INPUT, line)

    async def interrupt(self) -> None:
        """Ask the daemon to stop the current run."""
        await self.send(InputOp.INTERRUPT)

    async def status(self) -> StatusPayload:
        """Ask whether the daemon is busy and how many runs wait."""
        await self.send(InputOp.STATUS)
        frame = await self._next(lambda f: f.op == OutputOp.STATUS)
        payload: StatusPayload = frame.json()
        return payload

    async def complete(self, code: str, options: dict[str, Any] | None = None) -> list[str]:
        """Completion candidates for the end of ``code``."""
        request: CompletePayload = {"code": code, "options": options or {}}
        await self.send(InputOp.COMPLETE, json_payload(request))
        frame = await self._next(lambda f: f.op == OutputOp.COMPLETION)
        candidates = json.loads(frame.payload)
        if not isinstance(candidates, list):
            raise ReplClientError(f"completion payload is not a list: {frame.payload!r}")
        return [str(c) for c in candidates]

    async def collect(
        self,
        *,
        until: OutputOp = OutputOp.FINISHED,
        input_answers: Iterable[str] = (),
    ) -> RunResult:
        """Gather one run's frames up to ``until``, answering ``waiting-input`` in order."""
        answers = iter(input_answers)
        result = RunResult()
        while True:
            frame = await self._next(lambda f: f.op in RUN_OPS)
            result.frames.append(frame)
            if frame.op == until:
                return result
            if frame.op == OutputOp.WAITING_INPUT:
                answer = next(answers, None)
                if answer is None:
                    raise InputExhaustedError(f"run waits for input; got so far: {result.ops}")
                await self.send_input(answer)

    async def run_code(
        self,
        code: str,
        *,
        input_answers: Iterable[str] = (),
    ) -> RunResult:
        """Run a query-mode snippet and gather its frames up to ``finished``."""
        await self.send(InputOp.CODE, code)
        return await self.collect(input_answers=input_answers)

    async def build(self, command: str = "*") -> RunResult:
        """Run a batch build and gather its frames up to ``build-finished``."""
        await self.send(InputOp.BUILD, command)
        return await self.collect(until=OutputOp.BUILD_FINISHED)

    async def exec(
        self,
        command: str = "*",
        *,
        input_answers: Iterable[str] = (),
    ) -> RunResult:
        """Run a batch exec command and gather its frames up to ``finished``."""
        await self.send(InputOp.EXEC, command)
        return await self.collect(input_answers=input_answers)


__all__ = ["InputExhaustedError", "ReplClient", "ReplClientError", "RunResult"]
