"""Test helpers: a signing API client and a running gateway (used by the test suites)."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from sorna.gateway import keys as K
from sorna.gateway import signing
from sorna.gateway.server import GatewayRunner
from sorna.manager.keypairs import Keypair

VERSION = "v2.20170315"


class GatewayTestServer(TestServer):
    """aiohttp's TestServer, running the app as ``sorna-manager serve`` does
    (:class:`~sorna.gateway.server.GatewayRunner`)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return GatewayRunner(self.app, **kwargs)


class API:
    """A signing client of one gateway."""

    def __init__(
        self, server: TestServer, session: aiohttp.ClientSession, keypair: Keypair
    ) -> None:
        self.server = server
        self.session = session
        self.keypair = keypair
        self.host = f"{server.host}:{server.port}"

    def headers(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        version: str = VERSION,
        date: str | None = None,
        sign_method: str = "HMAC-SHA256",
        secret: str | None = None,
        access_key: str | None = None,
    ) -> dict[str, str]:
        date = date or datetime.datetime.now(datetime.UTC).isoformat()
        sig = signing.sign(
            secret_key=secret or self.keypair.secret_key,
            method=method,
            path_with_query=path,
            date=date,
            host=self.host,
            content_type=content_type,
            version=version,
            body=body,
            sign_method=sign_method,
        )
        return {
            "Date": date,
            "Host": self.host,
            "Content-Type": content_type,
            "X-Sorna-Version": version,
            "Authorization": signing.authorization(
                sign_method, access_key or self.keypair.access_key, sig
            ),
        }

    async def request(
        self, method: str, path: str, body: Any = None, **sign_kw: Any
    ) -> aiohttp.ClientResponse:
        raw = b"" if body is None else json.dumps(body).encode()
        headers = self.headers(method, path, raw, **sign_kw)
        return await self.session.request(
            method,
            self.server.make_url(path),
            data=raw,
            headers=headers,
            skip_auto_headers=("Content-Type",),
        )

    async def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        async with await self.request(method, path, body, **kw) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    def with_keypair(self, keypair: Keypair) -> API:
        return API(self.server, self.session, keypair)


@dataclasses.dataclass
class Gateway:
    app: web.Application
    server: TestServer
    admin: API

    async def keypair(self, **kw: Any) -> Keypair:
        kw.setdefault("concurrency_limit", 5)
        kw.setdefault("rate_limit", 1000)
        return await self.app[K.KEYPAIRS].create(**kw)

    async def api(self, **kw: Any) -> API:
        return self.admin.with_keypair(await self.keypair(**kw))
