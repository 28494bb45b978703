"""The typed application keys: every resource the gateway's handlers reach."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web
from redis.asyncio import Redis

from sorna.common.rpc import RPCClientPool
from sorna.gateway.metrics import Metrics
from sorna.gateway.ratelimit import RateLimiter
from sorna.manager.config import ManagerSettings
from sorna.manager.kernels import KernelManager
from sorna.manager.keypairs import Keypair, KeypairStore
from sorna.manager.registry import Registry

SETTINGS: Final = web.AppKey("settings", ManagerSettings)
REDIS: Final = web.AppKey("redis", Redis)
DB: Final = web.AppKey("db", object)  # an asyncpg.Pool (asyncpg ships no types)
RPC: Final = web.AppKey("rpc", RPCClientPool)
REGISTRY: Final = web.AppKey("registry", Registry)
KERNELS: Final = web.AppKey("kernels", KernelManager)
KEYPAIRS: Final = web.AppKey("keypairs", KeypairStore)
LIMITER: Final = web.AppKey("limiter", RateLimiter)
METRICS: Final = web.AppKey("metrics", Metrics)
TASKS: Final = web.AppKey("tasks", set[asyncio.Task[Any]])

#: Request keys.
KEYPAIR: Final = web.RequestKey("keypair", Keypair)
REQUEST_ID: Final = web.RequestKey("request_id", str)
RATE_HEADERS: Final = web.RequestKey("rate_headers", dict[str, str])
BODY: Final = web.RequestKey("body", bytes)
