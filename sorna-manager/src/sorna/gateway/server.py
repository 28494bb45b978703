"""Serving the gateway app: aiohttp's runner, with the HTTP parser's refusals as problems.

aiohttp's parser refuses an oversized or malformed request line or header before any
middleware runs, and its connection handler answers with a plain-text 400 (aiohttp has no hook
for it: aio-libs/aiohttp#3287). The app's ``handler_args`` size the parser so that ordinary
oversized headers reach the middlewares; :class:`GatewayRunner` answers the rest, the requests
past even that, as ``application/problem+json`` too. Both ``sorna-manager serve`` and the
tests' servers run the app through it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from sorna.gateway.middlewares import API_VERSION
from sorna.gateway.problems import PROBLEM_CONTENT_TYPE, problem_body
from sorna.manager.errors import InvalidAPIParams

log = logging.getLogger(__name__)


def _parser_detail(exc: BaseException | None) -> str:
    # Never echo the refused bytes: they are the client's, and may be 32 KiB long.
    if isinstance(exc, LineTooLong):
        return f"a request line or header is longer than {exc.args[1]} bytes"
    if isinstance(exc, HttpProcessingError):
        return f"malformed HTTP request ({type(exc).__name__})"
    return "malformed HTTP request"


class _ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering client errors it finds itself as problems."""

    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        detail = _parser_detail(exc)
        log.info("refused a request from %s: %s", request.remote, detail)
        response = web.Response(
            status=status,
            text=json.dumps(problem_body(InvalidAPIParams(detail))),
            content_type=PROBLEM_CONTENT_TYPE,
            headers={"Server": f"Sorna-API/{API_VERSION}"},
        )
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        # As web.Server.__call__, with the handler class above (aiohttp 3.9 to 3.14).
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections answer the HTTP parser's refusals as problems."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _ProblemServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,
        )


async def serve(app: web.Application, host: str, port: int, *, reuse_port: bool) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully."""
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
        await stop.wait()
    finally:
        await runner.cleanup()
