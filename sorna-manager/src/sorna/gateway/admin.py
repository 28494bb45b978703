"""Admin handlers (admin keypair only): keypairs, agents, live kernels."""

from __future__ import annotations

from aiohttp import web

from sorna.gateway import keys as K
from sorna.gateway.params import field, json_body
from sorna.manager.errors import Forbidden, InvalidAPIParams, NotFound


def _require_admin(request: web.Request) -> None:
    if not request[K.KEYPAIR].is_admin:
        raise Forbidden("this endpoint needs an admin keypair")


# The limits are PostgreSQL ``integer`` columns: larger values would fail in the database (a 500).
_MAX_LIMIT = 2**31 - 1


def _check_limits(*values: int | None) -> None:
    if any(v is not None and not 0 <= v <= _MAX_LIMIT for v in values):
        raise InvalidAPIParams(f"limits must be between 0 and {_MAX_LIMIT}")


async def list_keypairs(request: web.Request) -> web.Response:
    _require_admin(request)
    keypairs = await request.app[K.KEYPAIRS].list()
    return web.json_response({"keypairs": [kp.public() for kp in keypairs]})


async def create_keypair(request: web.Request) -> web.Response:
    _require_admin(request)
    data = await json_body(request)
    limits = request.app[K.SETTINGS].limits
    conc = field(data, "concurrencyLimit", int, default=limits.default_concurrency_limit)
    rate = field(data, "rateLimit", int, default=limits.default_rate_limit)
    _check_limits(conc, rate)
    owner = field(data, "owner", str, default="")
    if "\x00" in owner:  # PostgreSQL text cannot hold NUL
        raise InvalidAPIParams("field 'owner' must not contain NUL characters")
    kp = await request.app[K.KEYPAIRS].create(
        concurrency_limit=conc,
        rate_limit=rate,
        is_admin=field(data, "isAdmin", bool, default=False),
        owner=owner,
    )
    return web.json_response(
        {
            "accessKey": kp.access_key,
            "secretKey": kp.secret_key,
            "concurrencyLimit": kp.concurrency_limit,
            "rateLimit": kp.rate_limit,
            "isAdmin": kp.is_admin,
        },
        status=201,
    )


async def modify_keypair(request: web.Request) -> web.Response:
    _require_admin(request)
    data = await json_body(request)
    conc = field(data, "concurrencyLimit", int, default=None)
    rate = field(data, "rateLimit", int, default=None)
    _check_limits(conc, rate)
    kp = await request.app[K.KEYPAIRS].update(
        request.match_info["access_key"],
        concurrency_limit=conc,
        rate_limit=rate,
        is_active=field(data, "isActive", bool, default=None),
        is_admin=field(data, "isAdmin", bool, default=None),
    )
    if kp is None:
        raise NotFound("no such keypair")
    return web.json_response(kp.public())


async def deactivate_keypair(request: web.Request) -> web.Response:
    _require_admin(request)
    kp = await request.app[K.KEYPAIRS].deactivate(request.match_info["access_key"])
    if kp is None:
        raise NotFound("no such keypair")
    return web.json_response(kp.public())


async def list_agents(request: web.Request) -> web.Response:
    _require_admin(request)
    agents = await request.app[K.REGISTRY].agents()
    return web.json_response({"agents": [a.public() for a in agents]})


async def list_kernels(request: web.Request) -> web.Response:
    _require_admin(request)
    return web.json_response({"kernels": await request.app[K.KERNELS].live_kernels()})
