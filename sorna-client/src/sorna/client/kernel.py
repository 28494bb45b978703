"""``AsyncKernel``: one kernel session on the server, and every call API.md offers on it."""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp
from yarl import URL

from .config import ClientConfig
from .exceptions import KernelNotFound, ProtocolError, SornaClientError
from .session import AsyncSession
from .streams import AsyncExecuteStream, AsyncPtyStream
from .types import ConsoleItem, FileEntry, KernelId, KernelInfo, RunId, RunResult, RunStatus

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK: Final = 64 * 1024
_T = TypeVar("_T")


class ExecMode(StrEnum):
    """``mode`` of an execute call."""

    QUERY = "query"
    BATCH = "batch"
    COMPLETE = "complete"
    CONTINUE = "continue"
    INPUT = "input"


@dataclass(frozen=True, slots=True)
class InputRequest:
    """What a program waiting for input asked: the prompt it printed, and if it is secret."""

    prompt: str
    is_password: bool


#: Answers a ``waiting-input``: returns the line to send (sync or async).
InputCallback = Callable[[InputRequest], str | Awaitable[str]]
#: Receives console items as each chunk of a run arrives.
OutputCallback = Callable[[ConsoleItem], Awaitable[None] | None]

_TERMINAL: Final = frozenset({RunStatus.FINISHED, RunStatus.EXEC_TIMEOUT})


class AsyncKernel:
    """A kernel on the server. Get one with :meth:`get_or_create`, or address an existing one
    with ``AsyncKernel(session, kernel_id)``.

    ``async with`` destroys the kernel on exit. A kernel made without an explicit session
    owns one, closed by :meth:`destroy` or :meth:`close`.
    """

    def __init__(
        self,
        session: AsyncSession,
        kernel_id: str,
        *,
        lang: str = "",
        client_token: str = "",
        created: bool = True,
        owns_session: bool = False,
    ) -> None:
        self.session = session
        self.kernel_id = KernelId(kernel_id)
        self.lang = lang
        self.client_token = client_token
        #: False when :meth:`get_or_create` returned an existing kernel for the token.
        self.created = created
        self._owns_session = owns_session

    def __repr__(self) -> str:
        return f"<AsyncKernel {self.kernel_id} lang={self.lang!r}>"

    @classmethod
    def get_or_create(
        cls,
        lang: str,
        client_token: str | None = None,
        max_mem: int | None = None,
        exec_timeout: int | None = None,
        *,
        session: AsyncSession | None = None,
        config: ClientConfig | None = None,
    ) -> KernelOpener:
        """Create a kernel, or get the live one of this ``client_token`` and language.

        ``max_mem`` is in KiB, ``exec_timeout`` in ms. Await the result, or use it directly
        in ``async with`` (the kernel is destroyed on exit).
        """
        return KernelOpener(
            cls._get_or_create(lang, client_token, max_mem, exec_timeout, session, config)
        )

    @classmethod
    async def _get_or_create(
        cls,
        lang: str,
        client_token: str | None,
        max_mem: int | None,
        exec_timeout: int | None,
        session: AsyncSession | None,
        config: ClientConfig | None,
    ) -> AsyncKernel:
        owns = session is None
        sess = session if session is not None else AsyncSession(config)
        token = client_token or uuid.uuid4().hex
        body: dict[str, Any] = {"lang": lang, "clientSessionToken": token}
        limits = {
            k: v for k, v in (("maxMem", max_mem), ("execTimeout", exec_timeout)) if v is not None
        }
        if limits:
            body["limits"] = limits
        try:
            data = (
                await sess.request("POST", sess.url("kernel", "create"), json_body=body)
            ).json_object()
        except BaseException:
            if owns:
                await sess.close()
            raise
        if not isinstance(data.get("kernelId"), str):
            if owns:
                await sess.close()
            raise ProtocolError(f"create answered without a kernelId: {data!r:.200}")
        return cls(
            sess,
            data["kernelId"],
            lang=lang,
            client_token=token,
            created=bool(data.get("created", True)),
            owns_session=owns,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.destroy()
        except KernelNotFound:
            pass  # already gone (destroyed inside the block, or reaped)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the owned session, leaving the kernel alive (reach it again by its token)."""
        if self._owns_session:
            await self.session.close()

    async def destroy(self) -> Mapping[str, Any]:
        """Terminate the kernel; returns its final usage stats (empty if the server sent none)."""
        try:
            answer = await self.session.request("DELETE", self._url())
            data = answer.json() if answer.body else {}
        finally:
            await self.close()
        stats = data.get("stats") if isinstance(data, dict) else None
        return stats if isinstance(stats, dict) else {}

    async def restart(self) -> None:
        """Restart the kernel: same id, state lost, ``/home/work`` kept."""
        await self.session.request("PATCH", self._url())

    async def interrupt(self) -> None:
        """Interrupt the running code."""
        await self.session.request("POST", self._url("interrupt"))

    async def get_info(self) -> KernelInfo:
        """Return the kernel's language, age and resource usage."""
        return KernelInfo.from_wire((await self.session.request("GET", self._url())).json())

    # -- execution -------------------------------------------------------------------------

    async def execute(
        self,
        code: str = "",
        mode: str = ExecMode.QUERY,
        run_id: str | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Send one execute call and return that chunk of the run as it is."""
        body: dict[str, Any] = {"mode": str(mode), "code": code}
        if run_id:
            body["runId"] = run_id
        if opts is not None:
            body["options"] = dict(opts)
        data = (await self.session.request("POST", self._url(), json_body=body)).json_object()
        return RunResult.from_wire(data.get("result"))

    async def run(
        self,
        code: str = "",
        *,
        mode: str = ExecMode.QUERY,
        opts: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        on_input: InputCallback | None = None,
        on_output: OutputCallback | None = None,
    ) -> RunResult:
        """Run ``code`` to its end and return the whole result.

        Follows ``continued`` (and ``build-finished`` in batch mode), answers ``waiting-input``
        with ``on_input`` (a :class:`SornaClientError` without one), and hands each console
        item to ``on_output`` as its chunk arrives.
        """
        chunk = await self.execute(code, mode, run_id or uuid.uuid4().hex, opts)
        run_id = chunk.run_id or run_id
        console: list[ConsoleItem] = []
        files: dict[str, Any] = {}
        while True:
            console.extend(chunk.console)
            files.update((f.name, f) for f in chunk.files)
            if on_output is not None:
                for item in chunk.console:
                    await _maybe_await(on_output(item))
            if chunk.status in _TERMINAL:
                break
            if chunk.status == RunStatus.WAITING_INPUT:
                if on_input is None:
                    raise SornaClientError(
                        "the program is waiting for input and no on_input callback was given"
                    )
                request = InputRequest(_last_line(chunk.stdout), chunk.is_password)
                line = await _maybe_await(on_input(request))
                chunk = await self.execute(line, ExecMode.INPUT, run_id)
            else:
                chunk = await self.execute("", ExecMode.CONTINUE, run_id)
        return RunResult(
            run_id=chunk.run_id or RunId(run_id or ""),
            status=chunk.status,
            console=tuple(_merge(console)),
            options=chunk.options,
            files=tuple(files.values()),
        )

    async def complete(self, code: str, opts: Mapping[str, Any] | None = None) -> list[str]:
        """Return completion candidates for ``code`` (``opts``: line, row, col, post)."""
        body = {"code": code, "options": dict(opts or {})}
        data = (
            await self.session.request("POST", self._url("complete"), json_body=body)
        ).json_object()
        result = data.get("result")
        if not isinstance(result, list):
            raise ProtocolError(f"unexpected completion answer: {data!r:.200}")
        return [str(c) for c in result]

    def stream_execute(
        self,
        code: str = "",
        mode: str = ExecMode.QUERY,
        run_id: str | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> AsyncExecuteStream:
        """Run ``code`` over the execute WebSocket; use it with ``async with``, then iterate."""
        request: dict[str, Any] = {"mode": str(mode), "code": code}
        if run_id:
            request["runId"] = run_id
        if opts is not None:
            request["options"] = dict(opts)
        return AsyncExecuteStream(self.session, self._stream_url("execute"), request)

    def stream_pty(self) -> AsyncPtyStream:
        """Open the kernel's terminal (tty kernels); use it with ``async with``."""
        return AsyncPtyStream(self.session, self._stream_url("pty"))

    # -- files -----------------------------------------------------------------------------

    async def upload(
        self, paths: Iterable[str | os.PathLike[str]], *, basedir: str | os.PathLike[str] = "."
    ) -> None:
        """Upload local files into ``/home/work``, named by their path relative to ``basedir``.

        Files outside ``basedir`` keep only their base name.
        """
        files = await asyncio.to_thread(_read_uploads, list(paths), Path(basedir))
        with aiohttp.MultipartWriter("form-data") as writer:
            for name, content in files:
                part = writer.append(
                    io.BytesIO(content), {"Content-Type": "application/octet-stream"}
                )
                # Percent-encoded (aiohttp's default); the gateway decodes the name, so "/",
                # "%", quotes and non-ASCII all arrive exactly.
                part.set_content_disposition("form-data", name="src", filename=name)
            await self.session.request("POST", self._url("upload"), multipart=writer)

    async def list_files(self, path: str = ".") -> list[FileEntry]:
        """List the files under ``/home/work/<path>``."""
        url = self._url("files", query={"path": path})
        data = (await self.session.request("GET", url)).json_object()
        return [FileEntry.from_wire(f) for f in data.get("files") or ()]

    async def download(self, path: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Download ``/home/work/<path>`` to ``dest`` (a file, or a directory to put it in).

        Returns where it was written; the default is the base name in the current directory.
        """
        target = Path(dest) if dest is not None else Path(Path(path).name)
        if target.is_dir():
            target = target / Path(path).name
        url = self._url("download", query={"file": path})
        partial = target.with_name(f".{target.name}.part")
        async with self.session.open("GET", url) as resp:
            try:
                with partial.open("wb") as out:
                    async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                        out.write(chunk)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(target)
        return target

    # -- helpers ---------------------------------------------------------------------------

    def _url(self, *parts: str, query: Mapping[str, str] | None = None) -> URL:
        return self.session.url("kernel", self.kernel_id, *parts, query=query)

    def _stream_url(self, kind: str) -> URL:
        return self.session.url("stream", "kernel", self.kernel_id, kind)


class KernelOpener:
    """The result of :meth:`AsyncKernel.get_or_create`: await it or ``async with`` it."""

    def __init__(self, coro: Awaitable[AsyncKernel]) -> None:
        self._coro = coro
        self._kernel: AsyncKernel | None = None

    def __await__(self) -> Generator[Any, None, AsyncKernel]:
        return self._coro.__await__()

    async def __aenter__(self) -> AsyncKernel:
        self._kernel = await self._coro
        return self._kernel

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._kernel is not None:
            await self._kernel.__aexit__(exc_type, exc, tb)


async def _maybe_await(value: _T | Awaitable[_T]) -> _T:
    if inspect.isawaitable(value):
        return await value
    return value


def _last_line(text: str) -> str:
    return text.rsplit("\n", 1)[-1]


def _read_uploads(paths: list[str | os.PathLike[str]], basedir: Path) -> list[tuple[str, bytes]]:
    base = basedir.resolve()
    files = []
    for path in map(Path, paths):
        try:
            files.append((_remote_name(path, base), path.read_bytes()))
        except OSError as e:
            raise SornaClientError(f"cannot read {path}: {e.strerror}") from None
    return files


def _remote_name(path: Path, base: Path) -> str:
    resolved = path.resolve()
    if resolved.is_relative_to(base):
        return resolved.relative_to(base).as_posix()
    return path.name


def _merge(items: list[ConsoleItem]) -> list[ConsoleItem]:
    """Merge adjacent stdout (or stderr) items, as the server does within a chunk."""
    merged: list[ConsoleItem] = []
    for item in items:
        if (
            merged
            and item.kind in ("stdout", "stderr")
            and merged[-1].kind == item.kind
            and isinstance(item.data, str)
        ):
            merged[-1] = ConsoleItem(item.kind, merged[-1].data + item.data)
        else:
            merged.append(item)
    return merged
