"""The async transport: one aiohttp session that signs every request and decodes errors."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from .auth import signed_headers
from .config import ClientConfig, load_config
from .exceptions import ConnectionFailed, ProtocolError, SornaClientError, decode_problem

log = logging.getLogger(__name__)

JSON_TYPE: Final = "application/json"
USER_AGENT: Final = "sorna-client/2.0.0"
LARGE_BODY: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer, read whole."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """Decode the body as JSON (``None`` for an empty body)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise ProtocolError(f"expected JSON, got {self.body[:200]!r}") from None

    def json_object(self) -> dict[str, Any]:
        """Decode the body as a JSON object."""
        data = self.json()
        if not isinstance(data, dict):
            raise ProtocolError(f"expected a JSON object, got {self.body[:200]!r}")
        return data


class AsyncSession:
    """A connection to one Sorna endpoint with one keypair; close it (or use ``async with``)."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        read_timeout: float | None = 120.0,
        connect_timeout: float | None = 15.0,
    ) -> None:
        self.config = config if config is not None else load_config()
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._http: aiohttp.ClientSession | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool; the session cannot be used afterwards."""
        self._closed = True
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise SornaClientError("the session is closed")
        if self._http is None:
            # Our own Host and Content-Type headers are signed, so aiohttp must not add others.
            self._http = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT},
                auto_decompress=True,
            )
        return self._http

    def url(self, *parts: str, query: Mapping[str, str] | None = None) -> URL:
        """Return the endpoint URL of ``/<api major>/<parts...>`` with an optional query."""
        url = self.config.endpoint_url / self.config.api_major
        for part in parts:
            url = url / part
        return url.with_query(query) if query else url

    def _headers(self, method: str, url: URL, content_type: str, body: bytes) -> dict[str, str]:
        cfg = self.config
        return signed_headers(
            access_key=cfg.access_key,
            secret_key=cfg.secret_key,
            hash_type=cfg.hash_type,
            version=cfg.version,
            method=method,
            url=url,
            content_type=content_type,
            body=body,
        )

    @asynccontextmanager
    async def open(
        self,
        method: str,
        url: URL,
        *,
        json_body: Any = None,
        multipart: aiohttp.MultipartWriter | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a signed request and yield the (successful) response before its body is read.

        Error answers raise the :class:`SornaAPIError` subclass their problem type maps to.
        """
        data: bytes | io.BytesIO | aiohttp.MultipartWriter
        if multipart is not None:
            data, content_type, signed_body = multipart, multipart.content_type, b""
        else:
            body = b"" if json_body is None else json.dumps(json_body).encode()
            data, content_type, signed_body = _payload(body), JSON_TYPE, body
        headers = self._headers(method, url, content_type, signed_body)
        try:
            async with self._client().request(method, url, data=data, headers=headers) as resp:
                if resp.status >= 400:
                    raise decode_problem(resp.status, resp.reason or "", await resp.read())
                yield resp
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise ConnectionFailed(_connection_message(self.config.endpoint, e)) from e
        except aiohttp.ClientPayloadError as e:
            raise ProtocolError(f"broken answer from {self.config.endpoint}: {e}") from e

    async def request(
        self,
        method: str,
        url: URL,
        *,
        json_body: Any = None,
        multipart: aiohttp.MultipartWriter | None = None,
    ) -> Answer:
        """Send a signed request and read the whole (successful) answer."""
        async with self.open(method, url, json_body=json_body, multipart=multipart) as resp:
            return Answer(resp.status, resp.headers, await resp.read())

    async def ws_connect(self, url: URL) -> aiohttp.ClientWebSocketResponse:
        """Open a WebSocket to ``url``, authenticated by signed headers on the upgrade."""
        headers = self._headers("GET", url, JSON_TYPE, b"")
        try:
            return await self._client().ws_connect(url, headers=headers, heartbeat=30.0)
        except aiohttp.WSServerHandshakeError as e:
            # The handshake's error body is gone by now; status and reason are what we have.
            raise decode_problem(e.status, e.message, b"") from None
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise ConnectionFailed(_connection_message(self.config.endpoint, e)) from e

    # -- calls that belong to no kernel ---------------------------------------------------

    async def hello(self) -> dict[str, Any]:
        """``GET /v2``: the server's API version."""
        return (await self.request("GET", self.url())).json_object()

    async def authorize(self, echo: Any = "hello") -> Any:
        """``GET /v2/authorize``: check the credentials; returns the echoed value."""
        answer = await self.request("GET", self.url("authorize"), json_body={"echo": echo})
        data = answer.json_object()
        if data.get("authorized") != "yes":
            raise ProtocolError(f"unexpected authorize answer: {data!r:.200}")
        return data.get("echo")


def _payload(body: bytes) -> bytes | io.BytesIO:
    # A large body goes file-like, sent in chunks, so it never stalls the loop; small ones
    # stay bytes (aiohttp reads file-like bodies through an executor, a thread hop per call).
    return io.BytesIO(body) if len(body) > LARGE_BODY else body


def _connection_message(endpoint: str, e: BaseException) -> str:
    if isinstance(e, TimeoutError | asyncio.TimeoutError):
        return f"{endpoint} did not answer in time"
    return f"cannot reach {endpoint}: {e}"
