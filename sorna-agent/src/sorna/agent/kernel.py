"""One live kernel on this agent: its link to the REPL daemon and its FIFO of runs.

A driver task takes runs in arrival order and sends each to the daemon only when the one
before it ended, so every output frame belongs to the run at the head. The reader task feeds
frames to that run; :meth:`Kernel.execute` gathers a run's output for up to the flush interval
and answers with the API result object (``continued`` when the run goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from sorna.common.errors import SornaError
from sorna.common.ids import RunId
from sorna.common.messages import ExecuteParams, ExecuteResult, KernelUsage
from sorna.common.types import ExecMode, KernelStatus, RunStatus, TerminationReason
from sorna.repl.client import ReplClient
from sorna.repl.protocol import CompletePayload, InputOp, OutputOp, json_payload

from . import safefs
from .backend import Endpoint, KernelSpec
from .errors import InvalidApiParams, KernelExecutionFailed
from .files import Snapshot, changed_files, display_name
from .runs import Run
from .storage import OutputStore

log = logging.getLogger(__name__)

#: How long a completion or status request waits for the daemon.
QUERY_TIMEOUT = 5.0

#: Scratch folders with fewer entries than this are listed without a thread.
INLINE_SNAPSHOT_FILES = 200

#: Restarts a kernel whose run passed its execution timeout.
Restarter = Callable[["Kernel"], Awaitable[None]]


class Kernel:
    """A kernel's runs, link and book-keeping."""

    def __init__(
        self,
        *,
        spec: KernelSpec,
        flush_interval: float,
        max_output_file_bytes: int,
        store: OutputStore | None,
        restarter: Restarter,
        file_pool: Executor,
    ) -> None:
        self.spec = spec
        self.status = KernelStatus.PREPARING
        self.created_at = time.time()
        self.last_used = time.monotonic()
        self.num_queries = 0
        self.usage = KernelUsage()
        self._flush = flush_interval
        self._max_file = max_output_file_bytes
        self._store = store
        self._restarter = restarter
        self._file_pool = file_pool
        self._client: ReplClient | None = None
        self._pinned: list[int] = []
        self._reader: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Run] = asyncio.Queue()
        self._runs: dict[RunId, Run] = {}
        self._current: Run | None = None
        self._driver: asyncio.Task[None] | None = None
        self._query_lock = asyncio.Lock()
        self._answers: dict[str, asyncio.Future[Any]] = {}
        self._scratch_files = 0

    @property
    def kernel_id(self) -> str:
        return self.spec.kernel_id

    @property
    def busy(self) -> bool:
        """Whether a run is going or waiting."""
        return self._current is not None or not self._queue.empty()

    # -- link ----------------------------------------------------------------------------

    def attach(self, endpoint: Endpoint) -> None:
        """Connect to the daemon and start reading (and driving runs, the first time)."""
        self.detach()
        # The sockets sit in a folder the kernel can write: connect to what they are now, by
        # descriptor, so that a name swapped for a link never sends the agent elsewhere.
        addrs = [self._pin(addr) for addr in (endpoint.input_addr, endpoint.output_addr)]
        self._client = ReplClient(addrs[0], addrs[1], frame_timeout=None)
        self._reader = asyncio.create_task(self._read(self._client))
        if self._driver is None:
            self._driver = asyncio.create_task(self._drive())
        self.status = KernelStatus.RUNNING

    def detach(self) -> None:
        """Drop the link to the daemon (before a restart or removal)."""
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._client is not None:
            self._client.close()  # terms its own context: no ZMQ thread uses the fds after
            self._client = None
        pinned, self._pinned = self._pinned, []
        for fd in pinned:
            os.close(fd)

    def _pin(self, addr: str) -> str:
        if not addr.startswith("ipc://"):
            return addr
        path = addr[len("ipc://") :]
        try:
            fd = safefs.pin_socket(path)
        except OSError as e:
            self.detach()
            raise KernelExecutionFailed(f"kernel {self.kernel_id}: REPL socket: {e}") from None
        self._pinned.append(fd)
        return f"ipc:///proc/self/fd/{fd}"

    async def close(self, reason: TerminationReason | None = None) -> None:
        """End every run (saying why) and stop the tasks; the daemon is the caller's."""
        note = f"kernel terminated ({reason})" if reason else "kernel terminated"
        self.abort_runs(note, {"reason": str(reason) if reason else "destroyed"})
        tasks = [t for t in (self._reader, self._driver) if t is not None]
        self._driver = None
        self.detach()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.status = KernelStatus.TERMINATED

    def abort_runs(self, note: str, options: dict[str, Any], *, queued: bool = True) -> None:
        """End the current run (and the queued ones) with a note on stderr."""
        runs = [self._current] if self._current is not None else []
        if queued:
            while not self._queue.empty():
                runs.append(self._queue.get_nowait())
        for run in runs:
            if run is not None and run.outcome is None:
                run.append("stderr", f"\n[{note}]\n")
                run.files_ready = True
                run.end(RunStatus.FINISHED, options)

    async def _send(self, op: InputOp, payload: bytes | str = b"") -> None:
        if self._client is None:
            raise KernelExecutionFailed(f"kernel {self.kernel_id} has no link to its daemon")
        await self._client.send(op, payload)

    async def _read(self, client: ReplClient) -> None:
        while True:
            try:
                frame = await client.recv()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("kernel %s: bad frame from the daemon: %s", self.kernel_id, e)
                continue
            if frame.op in (OutputOp.COMPLETION, OutputOp.STATUS):
                future = self._answers.pop(frame.op, None)
                if future is not None and not future.done():
                    future.set_result(_json(frame))
                continue
            run = self._current
            if run is None:
                log.debug("kernel %s: %s frame outside a run", self.kernel_id, frame.op)
                continue
            run.add(frame)

    async def _ask(self, op: InputOp, answer: OutputOp, payload: bytes = b"") -> Any:
        async with self._query_lock:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._answers[answer] = future
            try:
                await self._send(op, payload)
                return await asyncio.wait_for(future, QUERY_TIMEOUT)
            finally:
                self._answers.pop(answer, None)

    async def ping(self) -> bool:
        """Whether the daemon answers a ``status`` request."""
        try:
            return isinstance(await self._ask(InputOp.STATUS, OutputOp.STATUS), dict)
        except (TimeoutError, KernelExecutionFailed):
            return False

    async def complete(self, code: str, options: dict[str, Any] | None) -> list[str]:
        """Completion candidates from the daemon (none if it does not answer in time)."""
        self.last_used = time.monotonic()
        request: CompletePayload = {"code": code, "options": options or {}}
        try:
            found = await self._ask(InputOp.COMPLETE, OutputOp.COMPLETION, json_payload(request))
        except TimeoutError:
            return []
        return [str(c) for c in found] if isinstance(found, list) else []

    async def interrupt(self) -> None:
        """Ask the daemon to stop the current run."""
        self.last_used = time.monotonic()
        await self._send(InputOp.INTERRUPT)

    # -- runs ----------------------------------------------------------------------------

    async def execute(self, params: ExecuteParams) -> ExecuteResult:
        """Serve one execute call, taking its mode literally (the gateway has already read
        the original client's habits into it): a new ``query`` or ``batch`` run, ``input`` to
        the run that waits for it, or ``continue`` of a run."""
        self.last_used = time.monotonic()
        mode, code = params.mode, params.code
        run = self._runs.get(params.run_id)
        if mode == ExecMode.INPUT:
            target = run or (
                self._current if self._current and self._current.awaits_input else None
            )
            if target is None or not target.awaits_input:
                raise InvalidApiParams("no run of this kernel waits for input")
            target.awaits_input = False
            await self._send(InputOp.INPUT, code)
            return await self._gather(target)
        if mode == ExecMode.CONTINUE:
            target = run or self._oldest()
            if target is None:
                raise InvalidApiParams(f"no pending run {params.run_id!r}")
            return await self._gather(target)
        if mode not in (ExecMode.QUERY, ExecMode.BATCH):
            raise InvalidApiParams(f"unknown mode {mode!r}")
        if run is not None:
            raise InvalidApiParams(f"run {params.run_id!r} already exists")
        run = Run(params.run_id, mode, code, dict(params.options or {}))
        self._runs[run.run_id] = run
        self.num_queries += 1
        self._queue.put_nowait(run)
        return await self._gather(run)

    def _oldest(self) -> Run | None:
        return next(iter(self._runs.values()), None)

    async def _gather(self, run: Run) -> ExecuteResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._flush
        while True:
            result = run.ready_result()
            if result is not None:
                if run.outcome is not None:
                    self._runs.pop(run.run_id, None)
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                return run.take(RunStatus.CONTINUED)
            await run.wait_change(remaining)

    async def _drive(self) -> None:
        while True:
            run = await self._queue.get()
            if run.outcome is not None:
                continue
            self._current = run
            try:
                await self._serve(run)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("kernel %s: run %s failed", self.kernel_id, run.run_id)
                run.append("stderr", f"\n[agent error: {e}]\n")
                run.files_ready = True
                run.end(RunStatus.FINISHED, {"error": str(e)})
            finally:
                self._current = None
                self.last_used = time.monotonic()

    async def _serve(self, run: Run) -> None:
        before = await self._snapshot()
        timeout_ms = self.spec.limits.exec_timeout_ms
        run.started = True
        try:
            async with asyncio.timeout(timeout_ms / 1000 if timeout_ms > 0 else None):
                await self._steps(run)
        except TimeoutError:
            if run.outcome is None:
                log.info("kernel %s: run %s passed %d ms", self.kernel_id, run.run_id, timeout_ms)
                run.outcome = RunStatus.EXEC_TIMEOUT
                run.final_options = {"exec_timeout_ms": timeout_ms}
                await self._restarter(self)
        if run.outcome is None:
            run.outcome = RunStatus.FINISHED
            run.final_options = run.step_options
        if not run.files_ready:
            after = await self._snapshot()
            run.files = await self._publish(run, changed_files(before, after, self._max_file))
            run.files_ready = True
        run.notify()

    async def _steps(self, run: Run) -> None:
        if run.mode == ExecMode.BATCH:
            build = str(run.options.get("build", ""))
            if build:
                run.step_done.clear()
                await self._send(InputOp.BUILD, build)
                await run.step_done.wait()
                if run.outcome is not None:
                    return
                status = (run.step_options or {}).get("exit_code", 0)
                run.build_finished = True
                run.notify()
                if status != 0:
                    return
            run.step_done.clear()
            await self._send(InputOp.EXEC, str(run.options.get("exec", "*")) or "*")
        else:
            run.step_done.clear()
            await self._send(InputOp.CODE, run.code)
        await run.step_done.wait()

    async def _snapshot(self) -> Snapshot:
        # A small folder is walked in place (tens of microseconds); a big one in a thread.
        # The kernel may have filled it since the last walk: the inline walk gives up past
        # its budget rather than hold the event loop.
        found = None
        if self._scratch_files < INLINE_SNAPSHOT_FILES:
            found = self.spec.scratch.snapshot(budget=INLINE_SNAPSHOT_FILES)
        if found is None:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self._file_pool, self.spec.scratch.snapshot)
        found = found or {}
        self._scratch_files = len(found)
        return found

    async def _publish(self, run: Run, paths: list[str]) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = []
        for path in paths:
            name, exact = display_name(path)
            entry: dict[str, Any] = {"name": name}
            files.append(entry)
            if not exact:
                # The API speaks UTF-8: listed escaped, as list_files does, but not uploaded.
                entry["downloadable"] = False
                log.info(
                    "kernel %s: run %s: output file %s is not named in UTF-8; not uploaded",
                    self.kernel_id,
                    run.run_id,
                    name,
                )
                continue
            if self._store is not None:
                key = f"{self.kernel_id}/{run.run_id}/{path}"
                url = await self._upload(self._store, key, path)
                if url is not None:
                    entry["url"] = url
        return files

    async def _upload(self, store: OutputStore, key: str, path: str) -> str | None:
        # Read on the file pool from a descriptor opened beneath the folder, then sent as
        # bytes: by now the kernel may have swapped the file for a link to a host file.
        loop = asyncio.get_running_loop()
        read = self.spec.scratch.read_output
        try:
            data = await loop.run_in_executor(self._file_pool, read, path, self._max_file)
        except (SornaError, OSError) as e:
            log.info("kernel %s: output file %s not uploaded: %s", self.kernel_id, path, e)
            return None
        return None if data is None else await store.upload(data, key)


def _json(frame: Any) -> Any:
    try:
        return frame.json()
    except ValueError:
        return None
