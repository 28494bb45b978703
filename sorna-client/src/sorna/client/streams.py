"""The WebSocket streams of API.md: ``execute`` (console items as they happen) and ``pty``."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import aiohttp
from yarl import URL

from .exceptions import ConnectionFailed, ProtocolError, SornaClientError, problem_error
from .types import ConsoleItem, ConsoleKind

if TYPE_CHECKING:
    from .session import AsyncSession

#: Event types after which the server sends nothing more for the run.
TERMINAL_EVENTS: Final = frozenset({"finished", "exec-timeout"})
_CONSOLE_KINDS: Final = frozenset(k.value for k in ConsoleKind)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One message of the execute stream: ``type`` (stdout, ..., finished) and its ``data``."""

    type: str
    data: Any

    @property
    def console_item(self) -> ConsoleItem | None:
        """The event as a console item, for stdout/stderr/media/html/log events."""
        if self.type in _CONSOLE_KINDS:
            return ConsoleItem.from_wire([self.type, self.data])
        return None

    @property
    def is_password(self) -> bool:
        """For ``waiting-input``: whether the prompt asks for a secret."""
        return isinstance(self.data, dict) and bool(self.data.get("is_password"))


class _Socket:
    """A WebSocket opened on ``async with`` and closed on exit."""

    def __init__(self, session: AsyncSession, url: URL) -> None:
        self._session = session
        self._url = url
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def _open(self) -> None:
        self._ws = await self._session.ws_connect(self._url)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the WebSocket."""
        if self._ws is not None:
            ws, self._ws = self._ws, None
            await ws.close()

    def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            raise SornaClientError("the stream is not open: use it with `async with`")
        return self._ws

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self._socket().send_str(json.dumps(message))
        except ConnectionError as e:
            raise ConnectionFailed(f"the stream was closed: {e}") from e

    async def _receive_json(self) -> dict[str, Any] | None:
        """Return the next JSON message, or None once the server closed the socket."""
        ws = self._socket()
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    raise ProtocolError(f"non-JSON stream message: {msg.data!r:.200}") from None
                if not isinstance(data, dict):
                    raise ProtocolError(f"unexpected stream message: {data!r:.200}")
                return data
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise ConnectionFailed(f"the stream failed: {ws.exception()}")
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                return None
            # BINARY, PING, PONG: not part of the contract; skip.


class AsyncExecuteStream(_Socket):
    """A run over ``/stream/kernel/:id/execute``; iterate for :class:`StreamEvent` items.

    Iteration ends after ``finished`` or ``exec-timeout``; answer ``waiting-input`` events
    with :meth:`send_input`. After ``build-finished`` (batch mode) the stream asks for the
    exec part itself. An ``error`` event raises its decoded :class:`SornaAPIError`.
    """

    def __init__(self, session: AsyncSession, url: URL, request: dict[str, Any]) -> None:
        super().__init__(session, url)
        # Input and continue messages name the run, so it gets an id up front.
        self.run_id: str = request.get("runId") or uuid.uuid4().hex
        self._request = {**request, "runId": self.run_id}
        self._done = False

    async def __aenter__(self) -> Self:
        await self._open()
        try:
            await self._send(self._request)
        except BaseException:
            await self.close()
            raise
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._done:
            raise StopAsyncIteration
        data = await self._receive_json()
        if data is None:
            self._done = True
            raise ProtocolError("the execute stream closed before the run finished")
        event = StreamEvent(str(data.get("type")), data.get("data"))
        if event.type == "error":
            self._done = True
            problem = event.data if isinstance(event.data, dict) else {}
            raise problem_error(problem)
        if event.type in TERMINAL_EVENTS:
            self._done = True
        elif event.type == "build-finished":
            await self._send({"mode": "continue", "code": "", "runId": self.run_id})
        return event

    async def send_input(self, line: str) -> None:
        """Answer a ``waiting-input`` event with one line."""
        await self._send({"mode": "input", "code": line, "runId": self.run_id})


class AsyncPtyStream(_Socket):
    """The terminal of a tty kernel over ``/stream/kernel/:id/pty``; iterate for output bytes."""

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        while True:
            data = await self._receive_json()
            if data is None:
                raise StopAsyncIteration
            if data.get("type") == "out":
                try:
                    return base64.b64decode(str(data.get("data") or ""))
                except ValueError:
                    raise ProtocolError(f"bad pty output: {data!r:.200}") from None

    async def send(self, chars: bytes | str) -> None:
        """Type ``chars`` into the terminal."""
        raw = chars.encode() if isinstance(chars, str) else chars
        await self._send({"type": "stdin", "chars": base64.b64encode(raw).decode()})

    async def resize(self, rows: int, cols: int) -> None:
        """Tell the terminal its new size."""
        await self._send({"type": "resize", "rows": rows, "cols": cols})

    async def ping(self) -> None:
        """Keep the terminal alive."""
        await self._send({"type": "ping"})

    async def restart(self) -> None:
        """Restart the terminal's shell."""
        await self._send({"type": "restart"})
