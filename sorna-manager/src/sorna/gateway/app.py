"""``create_app(settings)``: the gateway application, every resource in ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import zmq.asyncio
from aiohttp import web
from redis.asyncio import Redis

from sorna.common.events import EventConsumer
from sorna.common.keys import RedisKeys
from sorna.common.rpc import RPCClientPool
from sorna.gateway import keys as K
from sorna.gateway.console import add_console
from sorna.gateway.metrics import Metrics
from sorna.gateway.middlewares import MIDDLEWARES, PARSER_MAX_FIELD_BYTES, set_server_header
from sorna.gateway.ratelimit import RateLimiter
from sorna.gateway.routes import add_routes
from sorna.manager import db
from sorna.manager.config import ManagerSettings
from sorna.manager.events import EventHandlers, consume
from sorna.manager.kernels import KernelManager
from sorna.manager.keypairs import KeypairStore
from sorna.manager.liveness import LivenessChecker
from sorna.manager.registry import Registry

log = logging.getLogger(__name__)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[K.SETTINGS]
    client = Redis.from_url(
        settings.redis.url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=5
    )
    app[K.REDIS] = client
    try:
        yield
    finally:
        await client.aclose()


async def _db_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[K.SETTINGS]
    await db.migrate_url(settings.db.url)
    pool = await db.create_pool(settings.db.url, settings.db.pool_size)
    app[K.DB] = pool
    try:
        yield
    finally:
        await pool.close()


async def _rpc_ctx(app: web.Application) -> AsyncIterator[None]:
    context = zmq.asyncio.Context()
    pool = RPCClientPool(context=context, timeout=app[K.SETTINGS].timings.rpc_timeout_s)
    app[K.RPC] = pool
    try:
        yield
    finally:
        await pool.close()
        context.term()


async def _manager_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[K.SETTINGS]
    keys = RedisKeys(settings.redis.namespace)
    registry = Registry(app[K.REDIS], keys, settings.scheduler.policy)
    app[K.REGISTRY] = registry
    app[K.KERNELS] = KernelManager(
        pool=app[K.DB], registry=registry, rpc=app[K.RPC], settings=settings
    )
    app[K.KEYPAIRS] = KeypairStore(app[K.DB], cache_ttl=settings.auth.cache_ttl_s)
    app[K.LIMITER] = RateLimiter(app[K.REDIS], keys, settings.limits.rate_window_s)
    yield


async def _tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[K.SETTINGS]
    kernels = app[K.KERNELS]
    liveness = LivenessChecker(kernels=kernels, interval=settings.timings.liveness_interval_s)
    handlers = EventHandlers(kernels=kernels, liveness=liveness)
    consumer = EventConsumer(
        redis=app[K.REDIS],
        keys=kernels.registry.keys,
        consumer=f"gw-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
        handlers=handlers.table(),
        block_ms=500,
    )
    tasks: set[asyncio.Task[Any]] = set()
    app[K.TASKS] = tasks

    def start(coro: Coroutine[Any, Any, None], name: str) -> None:
        tasks.add(asyncio.create_task(coro, name=name))

    start(app[K.KEYPAIRS].run_flusher(settings.auth.usage_flush_s), "usage-flusher")
    start(liveness.run(), "liveness")
    start(consume(consumer), "events")
    try:
        yield
    finally:
        await cancel_all(tasks)


async def cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them; cancel again any that swallowed a cancellation
    (redis-py and asyncpg can, when it lands inside a read)."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task %s failed: %r", task.get_name(), task.exception())


async def render_metrics(app: web.Application) -> str:
    """The Prometheus text of this gateway."""
    live_kernels = live_agents = 0
    with contextlib.suppress(Exception):
        live_kernels = await app[K.DB].fetchval(  # type: ignore[attr-defined]
            "SELECT count(*) FROM kernels WHERE terminated_at IS NULL"
        )
    with contextlib.suppress(Exception):
        live_agents = sum(1 for a in await app[K.REGISTRY].agents() if a.alive and not a.lost)
    return app[K.METRICS].render(live_kernels=live_kernels, live_agents=live_agents)


async def metrics_response(app: web.Application) -> web.Response:
    """The ``/metrics`` answer of this gateway (unsigned, on whichever address serves it)."""
    return web.Response(text=await render_metrics(app), content_type="text/plain", charset="utf-8")


async def _metrics_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """Serve this app's ``/metrics``, and nothing else, on ``server.metrics_host``."""
    server = app[K.SETTINGS].server

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.path != "/metrics":
            return web.Response(status=404, text="404: Not Found")
        if request.method not in ("GET", "HEAD"):
            return web.Response(
                status=405, text="405: Method Not Allowed", headers={"Allow": "GET,HEAD"}
            )
        return await metrics_response(app)

    runner = web.ServerRunner(web.Server(handle), access_log=None)
    await runner.setup()
    try:
        # Every worker of `serve --workers N` binds it, as they all bind the API's port.
        await web.TCPSite(runner, server.metrics_host, server.metrics_port, reuse_port=True).start()
        yield
    finally:
        await runner.cleanup()


def create_app(settings: ManagerSettings) -> web.Application:
    """Build the gateway application for ``settings``."""
    app = web.Application(
        middlewares=MIDDLEWARES,
        client_max_size=settings.server.max_body_bytes,
        # aiohttp's documented way to size its HTTP parser: headers and request lines up to
        # this size reach the middlewares, which answer oversized ones with a problem.
        handler_args={
            "max_field_size": PARSER_MAX_FIELD_BYTES,
            "max_line_size": PARSER_MAX_FIELD_BYTES,
        },
    )
    app[K.SETTINGS] = settings
    app[K.METRICS] = Metrics()
    app.cleanup_ctx.extend([_redis_ctx, _db_ctx, _rpc_ctx, _manager_ctx, _tasks_ctx])
    app.on_response_prepare.append(set_server_header)
    add_routes(app, with_metrics=not settings.server.metrics_host)
    if settings.server.metrics_host:
        # Last in, first out: the listener closes before the resources it reads.
        app.cleanup_ctx.append(_metrics_listener_ctx)
    if settings.server.console_enabled:
        add_console(app)
    return app
