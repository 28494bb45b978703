"""The blocking API: each call runs the async one on a private event loop thread.

Nothing here knows HTTP or the API's shapes; every method forwards to its async twin.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from .admin import AsyncAdmin
from .config import ClientConfig
from .exceptions import KernelNotFound
from .kernel import AsyncKernel, ExecMode, InputCallback, OutputCallback
from .session import AsyncSession
from .streams import AsyncExecuteStream, AsyncPtyStream, StreamEvent
from .types import FileEntry, KernelInfo, RunResult

_T = TypeVar("_T")


class _LoopThread:
    """An event loop running in a daemon thread, for blocking callers."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sorna-client-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def iterate(self, source: AsyncIterator[_T]) -> Iterator[_T]:
        while True:
            try:
                yield self.run(_anext(source))
            except StopAsyncIteration:
                return

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _anext(source: AsyncIterator[_T]) -> _T:
    return await source.__anext__()


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


class Session:
    """A blocking connection to one Sorna endpoint; close it (or use ``with``)."""

    def __init__(self, config: ClientConfig | None = None, **options: Any) -> None:
        self._runner = _LoopThread()
        try:
            self.aio = AsyncSession(config, **options)
        except BaseException:
            self._runner.close()
            raise
        self.config = self.aio.config

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and the loop thread."""
        if not self.aio.closed:
            self._runner.run(self.aio.close())
        self._runner.close()

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run one coroutine of the async API on this session's loop."""
        return self._runner.run(coro)

    def iterate(self, source: AsyncIterator[_T]) -> Iterator[_T]:
        """Iterate an async iterator of the async API on this session's loop."""
        return self._runner.iterate(source)

    def hello(self) -> dict[str, Any]:
        """``GET /v2``: the server's API version."""
        return self.call(self.aio.hello())

    def authorize(self, echo: Any = "hello") -> Any:
        """``GET /v2/authorize``: check the credentials; returns the echoed value."""
        return self.call(self.aio.authorize(echo))


class Kernel:
    """A kernel on the server (blocking twin of :class:`AsyncKernel`).

    ``with`` destroys the kernel on exit. A kernel made without an explicit session owns one,
    closed by :meth:`destroy` or :meth:`close`.
    """

    def __init__(self, session: Session, aio: AsyncKernel, *, owns_session: bool) -> None:
        self.session = session
        self.aio = aio
        self._owns_session = owns_session

    def __repr__(self) -> str:
        return f"<Kernel {self.kernel_id} lang={self.lang!r}>"

    @property
    def kernel_id(self) -> str:
        """The kernel's id."""
        return self.aio.kernel_id

    @property
    def lang(self) -> str:
        """The language asked for at creation."""
        return self.aio.lang

    @property
    def client_token(self) -> str:
        """The session token the kernel is reachable by."""
        return self.aio.client_token

    @property
    def created(self) -> bool:
        """False when :meth:`get_or_create` returned an existing kernel for the token."""
        return self.aio.created

    @classmethod
    def get_or_create(
        cls,
        lang: str,
        client_token: str | None = None,
        max_mem: int | None = None,
        exec_timeout: int | None = None,
        *,
        session: Session | None = None,
        config: ClientConfig | None = None,
    ) -> Kernel:
        """Create a kernel, or get the live one of this ``client_token`` and language."""
        sess = session if session is not None else Session(config)
        try:
            aio = sess.call(
                _await(
                    AsyncKernel.get_or_create(
                        lang, client_token, max_mem, exec_timeout, session=sess.aio
                    )
                )
            )
        except BaseException:
            if session is None:
                sess.close()
            raise
        return cls(sess, aio, owns_session=session is None)

    @classmethod
    def from_id(cls, kernel_id: str, *, session: Session) -> Kernel:
        """Address an existing kernel by its id, through ``session``."""
        return cls(session, AsyncKernel(session.aio, kernel_id), owns_session=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.destroy()
        except KernelNotFound:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the owned session, leaving the kernel alive."""
        if self._owns_session:
            self.session.close()

    def destroy(self) -> Mapping[str, Any]:
        """Terminate the kernel; returns its final usage stats."""
        try:
            return self.session.call(self.aio.destroy())
        finally:
            self.close()

    def restart(self) -> None:
        """Restart the kernel: same id, state lost, ``/home/work`` kept."""
        self.session.call(self.aio.restart())

    def interrupt(self) -> None:
        """Interrupt the running code."""
        self.session.call(self.aio.interrupt())

    def get_info(self) -> KernelInfo:
        """Return the kernel's language, age and resource usage."""
        return self.session.call(self.aio.get_info())

    def execute(
        self,
        code: str = "",
        mode: str = ExecMode.QUERY,
        run_id: str | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Send one execute call and return that chunk of the run."""
        return self.session.call(self.aio.execute(code, mode, run_id, opts))

    def run(
        self,
        code: str = "",
        *,
        mode: str = ExecMode.QUERY,
        opts: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        on_input: InputCallback | None = None,
        on_output: OutputCallback | None = None,
    ) -> RunResult:
        """Run ``code`` to its end and return the whole result (see :meth:`AsyncKernel.run`).

        The callbacks are called on the session's loop thread.
        """
        return self.session.call(
            self.aio.run(
                code, mode=mode, opts=opts, run_id=run_id, on_input=on_input, on_output=on_output
            )
        )

    def complete(self, code: str, opts: Mapping[str, Any] | None = None) -> list[str]:
        """Return completion candidates for ``code``."""
        return self.session.call(self.aio.complete(code, opts))

    def upload(
        self, paths: Iterable[str | os.PathLike[str]], *, basedir: str | os.PathLike[str] = "."
    ) -> None:
        """Upload local files into ``/home/work``."""
        self.session.call(self.aio.upload(list(paths), basedir=basedir))

    def list_files(self, path: str = ".") -> list[FileEntry]:
        """List the files under ``/home/work/<path>``."""
        return self.session.call(self.aio.list_files(path))

    def download(self, path: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Download ``/home/work/<path>`` to ``dest``; returns where it was written."""
        return self.session.call(self.aio.download(path, dest))

    def stream_execute(
        self,
        code: str = "",
        mode: str = ExecMode.QUERY,
        run_id: str | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> ExecuteStream:
        """Run ``code`` over the execute WebSocket; use it with ``with``, then iterate."""
        return ExecuteStream(self.session, self.aio.stream_execute(code, mode, run_id, opts))

    def stream_pty(self) -> PtyStream:
        """Open the kernel's terminal (tty kernels); use it with ``with``."""
        return PtyStream(self.session, self.aio.stream_pty())


class ExecuteStream:
    """Blocking twin of :class:`AsyncExecuteStream`."""

    def __init__(self, session: Session, aio: AsyncExecuteStream) -> None:
        self.session = session
        self.aio = aio

    def __enter__(self) -> Self:
        self.session.call(self.aio.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.call(self.aio.close())

    def __iter__(self) -> Iterator[StreamEvent]:
        return self.session.iterate(self.aio)

    def send_input(self, line: str) -> None:
        """Answer a ``waiting-input`` event with one line."""
        self.session.call(self.aio.send_input(line))


class PtyStream:
    """Blocking twin of :class:`AsyncPtyStream`."""

    def __init__(self, session: Session, aio: AsyncPtyStream) -> None:
        self.session = session
        self.aio = aio

    def __enter__(self) -> Self:
        self.session.call(self.aio.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.call(self.aio.close())

    def __iter__(self) -> Iterator[bytes]:
        return self.session.iterate(self.aio)

    def send(self, chars: bytes | str) -> None:
        """Type ``chars`` into the terminal."""
        self.session.call(self.aio.send(chars))

    def resize(self, rows: int, cols: int) -> None:
        """Tell the terminal its new size."""
        self.session.call(self.aio.resize(rows, cols))

    def restart(self) -> None:
        """Restart the terminal's shell."""
        self.session.call(self.aio.restart())


class Admin:
    """Blocking twin of :class:`AsyncAdmin`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.aio = AsyncAdmin(session.aio)

    def keypairs(self) -> list[dict[str, Any]]:
        """List every keypair."""
        return self.session.call(self.aio.keypairs())

    def create_keypair(self, **options: Any) -> dict[str, Any]:
        """Create a keypair (``concurrency_limit``, ``rate_limit``, ``is_admin``)."""
        return self.session.call(self.aio.create_keypair(**options))

    def modify_keypair(self, access_key: str, **changes: Any) -> None:
        """Change a keypair's limits or active flag."""
        self.session.call(self.aio.modify_keypair(access_key, **changes))

    def deactivate_keypair(self, access_key: str) -> None:
        """Deactivate a keypair."""
        self.session.call(self.aio.deactivate_keypair(access_key))

    def agents(self) -> list[dict[str, Any]]:
        """List the agents in the registry."""
        return self.session.call(self.aio.agents())

    def kernels(self) -> list[dict[str, Any]]:
        """List the live kernels."""
        return self.session.call(self.aio.kernels())
