"""The agent's RPC methods, typed at both ends.

The caller holds an :class:`AgentClient`: one async method per RPC method of
``sorna.common.messages`` (``create_kernel``, ``execute``, ...), taking and returning its
dataclasses. The agent serves an :class:`AgentMethods` table: one handler per
:class:`~sorna.common.messages.RPCMethod` constant, typed so that a handler of the wrong params
or result type does not check. Neither end spells a method name.

A reply that is not the method's result type raises :class:`~sorna.common.errors.BadReply`;
params that are not the method's params type answer ``invalid-api-params``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sorna.common import messages as m
from sorna.common.errors import BadReply, CodecError, InvalidParams
from sorna.common.messages import RPC_METHODS, P, R, RPCMethod
from sorna.common.rpc import Handler, RPCClient

__all__ = ["AgentClient", "AgentMethods"]


class AgentClient:
    """Typed calls to one agent over a shared :class:`~sorna.common.rpc.RPCClient`.

    ``timeout`` (seconds) defaults to the RPC client's timeout for the method. Each call raises
    what :meth:`RPCClient.call` raises, and ``BadReply`` for a reply of the wrong shape.
    """

    __slots__ = ("_rpc",)

    def __init__(self, rpc: RPCClient) -> None:
        self._rpc = rpc

    @property
    def address(self) -> str:
        """The agent's RPC address."""
        return self._rpc.address

    async def call(
        self,
        method: RPCMethod[P, R],
        params: P,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - it also becomes the request's deadline
    ) -> R:
        """Call ``method`` with ``params``; return its decoded result."""
        raw = await self._rpc.call(method.name, params.to_wire(), timeout=timeout)
        try:
            return method.result.from_wire(raw)
        except CodecError as e:
            raise BadReply(f"{method.name} on {self._rpc.address}: {e}") from None

    async def ping(
        self,
        params: m.PingParams,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.PingResult:
        """Echo ``params.echo`` back (a liveness probe)."""
        return await self.call(m.PING, params, timeout=timeout)

    async def create_kernel(
        self,
        params: m.CreateKernelParams,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.CreateKernelResult:
        """Start a kernel; return once its daemon listens."""
        return await self.call(m.CREATE_KERNEL, params, timeout=timeout)

    async def destroy_kernel(
        self,
        params: m.KernelRef,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.DestroyKernelResult:
        """Destroy a kernel; return its final usage."""
        return await self.call(m.DESTROY_KERNEL, params, timeout=timeout)

    async def restart_kernel(
        self,
        params: m.KernelRef,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.Empty:
        """Restart a kernel's daemon, keeping its files."""
        return await self.call(m.RESTART_KERNEL, params, timeout=timeout)

    async def execute(
        self,
        params: m.ExecuteParams,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.ExecuteResult:
        """Run (or continue, or feed input to) a run; return what it printed so far."""
        return await self.call(m.EXECUTE, params, timeout=timeout)

    async def interrupt_kernel(
        self,
        params: m.KernelRef,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.Empty:
        """Interrupt a kernel's current run."""
        return await self.call(m.INTERRUPT_KERNEL, params, timeout=timeout)

    async def get_completions(
        self,
        params: m.CompletionParams,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.CompletionResult:
        """Return completion candidates for ``params.code``."""
        return await self.call(m.GET_COMPLETIONS, params, timeout=timeout)

    async def upload_file(
        self,
        params: m.UploadFileParams,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.Empty:
        """Write one file under the kernel's /home/work."""
        return await self.call(m.UPLOAD_FILE, params, timeout=timeout)

    async def list_files(
        self,
        params: m.ListFilesParams,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.ListFilesResult:
        """List a folder under the kernel's /home/work."""
        return await self.call(m.LIST_FILES, params, timeout=timeout)

    async def download_file(
        self,
        params: m.DownloadFileParams,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.DownloadFileResult:
        """Read one chunk of a file under the kernel's /home/work."""
        return await self.call(m.DOWNLOAD_FILE, params, timeout=timeout)

    async def reset(
        self,
        params: m.Empty,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> m.ResetResult:
        """Destroy every kernel of the agent."""
        return await self.call(m.RESET, params, timeout=timeout)


class AgentMethods:
    """The agent's side: one handler per RPC method, served by an ``RPCServer``.

    :meth:`serve` takes a coroutine handler (it runs in a task per request);
    :meth:`serve_inline` a quick, non-blocking plain function (answered without a task).
    :meth:`handlers` is the name -> handler map for ``RPCServer(handlers=...)``, once every
    method of ``RPC_METHODS`` has its handler.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def serve(self, method: RPCMethod[P, R], handler: Callable[[P], Awaitable[R]]) -> None:
        """Serve ``method`` with the coroutine function ``handler``."""
        decode = method.params.from_wire

        async def handle(raw: dict[str, Any]) -> Any:
            return (await handler(_decode(decode, raw))).to_wire()

        self._add(method, handle)

    def serve_inline(self, method: RPCMethod[P, R], handler: Callable[[P], R]) -> None:
        """Serve ``method`` with the plain function ``handler`` (it must not block)."""
        decode = method.params.from_wire

        def handle(raw: dict[str, Any]) -> Any:
            return handler(_decode(decode, raw)).to_wire()

        self._add(method, handle)

    def _add(self, method: RPCMethod[Any, Any], handle: Handler) -> None:
        if method.name in self._handlers:
            raise ValueError(f"{method.name} is served twice")
        self._handlers[method.name] = handle

    def handlers(self, *, partial: bool = False) -> Mapping[str, Handler]:
        """The handlers by wire name; raise ValueError if a method has none (unless
        ``partial``: a benchmark or test serving a few methods)."""
        missing = sorted(set(RPC_METHODS) - set(self._handlers))
        if missing and not partial:
            raise ValueError(f"no handler for {', '.join(missing)}")
        return dict(self._handlers)


def _decode(decode: Callable[[dict[str, Any]], P], raw: dict[str, Any]) -> P:
    try:
        return decode(raw)
    except CodecError as e:
        raise InvalidParams(str(e)) from None
