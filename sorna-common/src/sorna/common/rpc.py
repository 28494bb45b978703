"""Gateway -> agent RPC over ZMQ and msgpack (PROTOCOLS.md section 1).

The agent runs an :class:`RPCServer` (a bound ROUTER socket). A caller keeps one
:class:`RPCClient` (a connected DEALER socket) per agent, shared by concurrent calls; replies
are matched to calls by id, not by order. :class:`RPCClientPool` keeps one client per address.

A failed call raises an ``RPCError`` of ``sorna.common.errors``: ``RPCTimeout`` (leaving no
pending entry), ``RPCClosed`` (``RPCPeerRestarted`` when the caller learnt that the server's
process was replaced), or ``RemoteError`` carrying the wire ``error.type`` as an
``ErrorType`` (``MethodNotFound`` for an unknown method); an unencodable request raises
``CodecError``. A handler that raises a ``SornaError`` answers with its ``error_type``.

This module moves maps by method name; the typed methods of the agent are
``sorna.common.agentapi`` (``AgentClient`` and the agent's ``AgentMethods`` table).

The sockets are plain pyzmq sockets (on the caller's ``zmq.asyncio.Context`` if given) driven by
the event loop's reader callbacks: a readable socket is drained in one callback, and a reply
resolves its call's future directly. This costs a fraction of pyzmq's per-message futures,
which is most of the round trip on loopback (see ``bench/rpc.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final, NotRequired, Self, TypedDict, cast

import zmq
import zmq.asyncio

from sorna.common.codec import packb, unpackb
from sorna.common.constants import RPC_VERSION
from sorna.common.errors import (
    BadReply,
    CodecError,
    ErrorType,
    MethodNotFound,
    RemoteError,
    RPCClosed,
    RPCError,
    RPCTimeout,
    SornaError,
)

log = logging.getLogger(__name__)

#: Seconds a call waits for its reply unless the method or the call says otherwise.
DEFAULT_CALL_TIMEOUT: Final = 30.0

_SOCKET_OPTIONS: Final = {
    zmq.LINGER: 0,
    # Queues per peer deep enough that thousands of concurrent calls never fill them.
    zmq.SNDHWM: 100_000,
    zmq.RCVHWM: 100_000,
    # Reconnect to a restarted agent quickly (milliseconds).
    zmq.RECONNECT_IVL: 100,
    zmq.RECONNECT_IVL_MAX: 2_000,
    # ZMTP heartbeats notice a peer that vanished without closing its connection.
    zmq.HEARTBEAT_IVL: 5_000,
    zmq.HEARTBEAT_TIMEOUT: 15_000,
}
# A readable socket yields to other callbacks after this many messages.
_READ_BATCH: Final = 256
# Plain ints: pyzmq's enum flags cost microseconds per operation on the hot path.
_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)
_DONTWAIT: Final = int(zmq.DONTWAIT)
_SNDMORE: Final = int(zmq.DONTWAIT | zmq.SNDMORE)

Handler = Callable[[dict[str, Any]], Awaitable[Any]] | Callable[[dict[str, Any]], Any]
"""An RPC method: takes the request's ``params`` and returns the reply's ``result``.

A coroutine function runs in a task of its own per request; a plain function must not block
and is answered inline, without a task."""


class ErrorInfo(TypedDict):
    """The ``error`` member of a failed reply."""

    type: str
    message: str
    data: Any


class Request(TypedDict):
    """A request map."""

    v: int
    id: str
    method: str
    params: Mapping[str, Any]
    deadline: NotRequired[float]


class Reply(TypedDict):
    """A reply map: exactly one of ``result`` and ``error`` is present."""

    v: int
    id: str
    result: NotRequired[Any]
    error: NotRequired[ErrorInfo]


def _socket(context: zmq.Context[Any], kind: int) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Socket(context, kind)
    for option, value in _SOCKET_OPTIONS.items():
        sock.setsockopt(option, value)
    return sock


_ERROR_TYPES: Final = {t.value: t for t in ErrorType}


def _remote_error(error: object) -> RemoteError:
    if not isinstance(error, dict):
        return BadReply(f"reply error is not a map: {error!r}")
    wire, message = str(error.get("type", ErrorType.INTERNAL_ERROR)), str(error.get("message", ""))
    type_ = _ERROR_TYPES.get(wire)
    if type_ is None:  # a newer peer's type: keep its name in the message
        type_, message = ErrorType.INTERNAL_ERROR, f"{wire}: {message}"
    if type_ is ErrorType.METHOD_NOT_FOUND:
        return MethodNotFound(message, error.get("data"))
    return RemoteError(type_, message, error.get("data"))


class _Closing:
    """``async with`` support for objects with an async ``close()``."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class _LoopSocket:
    """Drive a ZMQ socket from the event loop: drain it when readable, send without blocking."""

    def __init__(self, sock: zmq.Socket[bytes], on_message: Callable[[list[bytes]], None]) -> None:
        self._sock = sock
        self._on_message = on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_scheduled = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start delivering incoming messages to the callback on ``loop``."""
        self._loop = loop
        loop.add_reader(self._sock.FD, self._drain)
        self._drain_soon()

    def send(self, frames: list[bytes]) -> None:
        """Queue a message; raise ``zmq.Again`` if the peer's queue is full."""
        for frame in frames[:-1]:
            self._sock.send(frame, _SNDMORE)
        self._sock.send(frames[-1], _DONTWAIT)
        # The ZMQ fd is edge-triggered and a send may consume the edge of an arrival.
        self._drain_soon()

    def close(self) -> None:
        """Stop reading and close the socket, dropping unsent messages."""
        if self._loop is not None and not self._sock.closed:
            self._loop.remove_reader(self._sock.FD)
        self._sock.close(linger=0)

    def _drain_soon(self) -> None:
        if self._loop is None or self._drain_scheduled:
            return
        if cast(int, self._sock.getsockopt(_EVENTS)) & _POLLIN:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        sock = self._sock
        for _ in range(_READ_BATCH):
            # Checking EVENTS is much cheaper than a recv that raises zmq.Again.
            if sock.closed or not cast(int, sock.getsockopt(_EVENTS)) & _POLLIN:
                return
            try:
                self._on_message(sock.recv_multipart(_DONTWAIT))
            except Exception:
                log.exception("RPC: failed to handle a message")
        self._drain_soon()


class RPCServer(_Closing):
    """Serve RPC methods on a bound ROUTER socket; each request runs as its own task."""

    def __init__(
        self,
        *,
        address: str,
        handlers: Mapping[str, Handler],
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self._bind_address = address
        self._handlers = dict(handlers)
        self._context = context
        self._owns_context = context is None
        self._io: _LoopSocket | None = None
        self._bound: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """Return the bound endpoint, e.g. ``tcp://127.0.0.1:41234`` for ``tcp://127.0.0.1:0``."""
        if self._bound is None:
            raise RuntimeError("RPCServer is not started")
        return self._bound

    async def start(self) -> None:
        """Bind the socket and start serving."""
        if self._io is not None:
            raise RuntimeError("RPCServer is already started")
        if self._context is None:
            self._context = zmq.asyncio.Context()
        sock = _socket(self._context, zmq.ROUTER)
        try:
            sock.bind(self._bind_address)
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        self._bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._io = _LoopSocket(sock, self._on_request)
        self._io.attach(asyncio.get_running_loop())
        log.info("RPC server listening on %s", self._bound)

    async def close(self) -> None:
        """Stop serving: cancel running handlers, wait for them, and close the socket."""
        io, self._io = self._io, None
        if io is not None:
            io.close()
            log.info("RPC server on %s closed", self._bound)
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_context and self._context is not None:
            self._context.term()
            self._context = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    def _on_request(self, frames: list[bytes]) -> None:
        routing, body = frames[:-1], frames[-1]
        try:
            request = unpackb(body)
        except CodecError as exc:
            log.warning("RPC server %s: dropping undecodable request: %s", self._bound, exc)
            return
        req_id = request.get("id") if isinstance(request, dict) else None
        if not isinstance(req_id, str):
            log.warning("RPC server %s: dropping request without an id", self._bound)
            return
        method = request.get("method")
        params = request.get("params", {})
        deadline = request.get("deadline")
        if (
            request.get("v") != RPC_VERSION
            or not isinstance(method, str)
            or not isinstance(params, dict)
            or not (deadline is None or isinstance(deadline, int | float))
        ):
            self._send_error(routing, req_id, ErrorType.BAD_REQUEST, "malformed request")
            return
        if deadline is not None and deadline < time.time():
            log.debug("RPC server %s: dropping expired %s request %s", self._bound, method, req_id)
            return
        handler = self._handlers.get(method)
        if handler is None:
            self._send_error(routing, req_id, ErrorType.METHOD_NOT_FOUND, f"no method {method!r}")
            return
        if not inspect.iscoroutinefunction(handler):
            # A plain function is a quick, non-blocking method: answer it right here, with no
            # task (the cheapest path, used by ``ping``). Coroutine handlers run in a task each.
            try:
                result = handler(params)
            except Exception as exc:
                self._reply(routing, req_id, method, None, exc)
                return
            if not inspect.isawaitable(result):
                self._reply(routing, req_id, method, result, None)
                return
            awaitable: Awaitable[Any] = result
        else:
            awaitable = handler(params)
        task = asyncio.create_task(self._serve(awaitable, routing, req_id, method))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, awaitable: Awaitable[Any], routing: list[bytes], req_id: str, method: str
    ) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._reply(routing, req_id, method, None, exc)
            return
        self._reply(routing, req_id, method, result, None)

    def _reply(
        self,
        routing: list[bytes],
        req_id: str,
        method: str,
        result: Any,
        error: BaseException | None,
    ) -> None:
        try:
            if error is not None:
                raise error
        except RemoteError as exc:
            self._send_error(routing, req_id, exc.type, exc.message, exc.data)
        except SornaError as exc:
            log.info("RPC method %s failed: %r", method, exc)
            self._send_error(routing, req_id, exc.error_type, str(exc))
        except Exception as exc:
            log.exception("RPC method %s raised", method)
            self._send_error(
                routing, req_id, ErrorType.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
            )
        else:
            try:
                body = packb({"v": RPC_VERSION, "id": req_id, "result": result})
            except CodecError as exc:
                log.error("RPC method %s returned an unencodable result: %s", method, exc)
                self._send_error(routing, req_id, exc.error_type, str(exc))
                return
            self._send(routing, body)

    def _send_error(
        self,
        routing: list[bytes],
        req_id: str,
        type_: ErrorType,
        message: str,
        data: Any = None,
    ) -> None:
        reply: Reply = {
            "v": RPC_VERSION,
            "id": req_id,
            "error": {"type": str(type_), "message": message, "data": data},
        }
        try:
            body = packb(reply)
        except CodecError:
            reply["error"]["data"] = None
            body = packb(reply)
        self._send(routing, body)

    def _send(self, routing: list[bytes], body: bytes) -> None:
        # ROUTER never blocks on send: it queues, or drops for a peer that has gone away.
        if self._io is not None:
            self._io.send([*routing, body])


class RPCClient(_Closing):
    """Call RPC methods of one server through a DEALER socket shared by concurrent calls."""

    def __init__(
        self,
        address: str,
        *,
        context: zmq.Context[Any] | None = None,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        method_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        self._address = address
        self._timeout = timeout
        self._method_timeouts = dict(method_timeouts or {})
        self._owns_context = context is None
        self._context = context if context is not None else zmq.asyncio.Context()
        sock = _socket(self._context, zmq.DEALER)
        sock.connect(address)
        self._io = _LoopSocket(sock, self._on_reply)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._closed = False

    @property
    def address(self) -> str:
        """Return the server endpoint this client connects to."""
        return self._address

    @property
    def pending(self) -> int:
        """Return the number of calls waiting for a reply."""
        return len(self._pending)

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - it also becomes the request's deadline
    ) -> Any:
        """Call ``method`` and return its result.

        ``timeout`` defaults to the method's configured timeout, else the client's. Raise
        RPCTimeout, RPCClosed, RemoteError (MethodNotFound for an unknown method) or CodecError.
        """
        if self._closed:
            raise RPCClosed(f"RPC client for {self._address} is closed")
        if timeout is None:
            timeout = self._method_timeouts.get(method, self._timeout)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._io.attach(loop)
        req_id = f"{next(self._ids):x}"
        request: Request = {
            "v": RPC_VERSION,
            "id": req_id,
            "method": method,
            "params": params if params is not None else {},
            "deadline": time.time() + timeout,
        }
        body = packb(request)
        try:
            self._io.send([body])
        except zmq.Again:
            raise RPCError(f"send queue to {self._address} is full") from None
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[req_id] = future
        timer = loop.call_later(timeout, self._expire, req_id, method, timeout)
        try:
            return await future
        finally:
            timer.cancel()
            del self._pending[req_id]

    def _expire(self, req_id: str, method: str, timeout: float) -> None:
        future = self._pending.get(req_id)
        if future is not None and not future.done():
            future.set_exception(
                RPCTimeout(f"{method} on {self._address}: no reply within {timeout:g} s")
            )

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            reply = unpackb(frames[-1])
        except CodecError as exc:
            log.warning("RPC client %s: dropping undecodable reply: %s", self._address, exc)
            return
        req_id = reply.get("id") if isinstance(reply, dict) else None
        future = self._pending.get(req_id) if isinstance(req_id, str) else None
        if future is None or future.done():
            log.debug("RPC client %s: dropping late or unknown reply", self._address)
        elif "error" in reply:
            future.set_exception(_remote_error(reply["error"]))
        else:
            future.set_result(reply.get("result"))

    async def close(self, error: RPCClosed | None = None) -> None:
        """Fail pending calls with ``error`` (default RPCClosed) and close the socket.

        Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error or RPCClosed(f"RPC client for {self._address} closed"))
        self._io.close()
        if self._owns_context:
            self._context.term()


class RPCClientPool(_Closing):
    """Keep one :class:`RPCClient` per server address, created on first use, closed together."""

    def __init__(
        self,
        *,
        context: zmq.Context[Any] | None = None,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        method_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        self._owns_context = context is None
        self._context = context if context is not None else zmq.asyncio.Context()
        self._timeout = timeout
        self._method_timeouts = dict(method_timeouts or {})
        self._clients: dict[str, RPCClient] = {}
        self._closed = False

    def get(self, address: str) -> RPCClient:
        """Return the client for ``address``, connecting it if needed."""
        if self._closed:
            raise RPCClosed("RPC client pool is closed")
        client = self._clients.get(address)
        if client is None:
            client = RPCClient(
                address,
                context=self._context,
                timeout=self._timeout,
                method_timeouts=self._method_timeouts,
            )
            self._clients[address] = client
        return client

    async def call(
        self,
        address: str,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - see RPCClient.call
    ) -> Any:
        """Call ``method`` on the server at ``address``; see :meth:`RPCClient.call`."""
        return await self.get(address).call(method, params, timeout=timeout)

    async def discard(self, address: str, error: RPCClosed | None = None) -> int:
        """Close and forget the client for ``address`` (e.g. when its agent is lost).

        Its pending calls fail at once with ``error`` (default RPCClosed), e.g.
        RPCPeerRestarted when the server's process was replaced: the replies will never come.
        Return how many calls were pending.
        """
        client = self._clients.pop(address, None)
        if client is None:
            return 0
        pending = client.pending
        await client.close(error)
        return pending

    async def close(self) -> None:
        """Close every client (failing their pending calls) and the pool's own context."""
        if self._closed:
            return
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
        if self._owns_context:
            self._context.term()
