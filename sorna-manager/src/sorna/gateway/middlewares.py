"""The middleware chain, outermost first: request id + access log -> problem+json errors ->
header limits -> API version -> auth -> rate limit."""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from typing import Any, Final

import redis.exceptions
from aiohttp import web
from aiohttp.typedefs import Handler

from sorna.common.ids import AccessKey
from sorna.gateway import keys as K
from sorna.gateway import signing
from sorna.gateway.problems import problem_response
from sorna.manager import errors as E
from sorna.manager.db import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)
access_log = logging.getLogger("sorna.gateway.access")

API_VERSION: Final = "v2.20170315"
PUBLIC_ATTR: Final = "__sorna_public__"
RATE_EXEMPT_ATTR: Final = "__sorna_rate_exempt__"
#: What a handler marked :func:`rate_exempt` says in the OpenAPI document.
RATE_EXEMPT_NOTE: Final = (
    "Served even when the keypair's rate limit is spent (it counts against the limit while the "
    "limit lasts), so that a keypair can always see and destroy its kernels."
)

#: The API's own header limits, checked before anything reads a header (the HTTP parser takes
#: up to PARSER_MAX_FIELD_BYTES so that these are answered as problems, not by the parser).
MAX_AUTHORIZATION_BYTES: Final = 1024
MAX_HEADER_BYTES: Final = 8190
PARSER_MAX_FIELD_BYTES: Final = 32 << 10


def public(handler: Handler) -> Handler:
    """Mark a handler as reachable without a signature."""
    setattr(handler, PUBLIC_ATTR, True)
    return handler


def rate_exempt(handler: Handler) -> Handler:
    """Mark a handler as served even when the keypair's rate limit is spent."""
    setattr(handler, RATE_EXEMPT_ATTR, True)
    return handler


def _handler_has(request: web.Request, attr: str) -> bool:
    try:
        return bool(getattr(request.match_info.handler, attr, False))
    except AttributeError:
        return False


def _is_public(request: web.Request) -> bool:
    try:
        handler = request.match_info.handler
    except AttributeError:
        return True
    return (
        bool(getattr(handler, PUBLIC_ATTR, False)) or request.match_info.http_exception is not None
    )


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    info = route.resource.canonical if route.resource is not None else ""
    return info or "unmatched"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")
    if not (0 < len(rid) <= 128 and rid.isascii() and rid.isprintable()):
        rid = secrets.token_hex(8)  # none, or not fit to echo and log: a fresh one
    request[K.REQUEST_ID] = rid
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - start
        request.app[K.METRICS].observe(request.method, _route_name(request), status, elapsed)
        access_log.info(
            "%s %s %s %.1fms rid=%s", request.method, request.path_qs, status, elapsed * 1000, rid
        )


def _problem_of(request: web.Request, exc: BaseException) -> E.ManagerError | None:
    if isinstance(exc, E.ManagerError):
        return exc
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return E.PayloadTooLarge("the request body is larger than allowed")
    if isinstance(exc, web.HTTPNotFound):
        return E.NotFound(f"no route {request.method} {request.path}")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return E.NotFound(f"{request.method} is not allowed on {request.path}")
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        log.warning("Redis unreachable during %s %s: %s", request.method, request.path, exc)
        return E.ServiceUnavailable("the registry (Redis) is unreachable")
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.warning("PostgreSQL unreachable during %s %s: %r", request.method, request.path, exc)
        return E.ServiceUnavailable("the database is unreachable")
    return None


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = _problem_of(request, exc)
        if problem is None:
            raise
    except Exception as exc:
        problem = _problem_of(request, exc)
        if problem is None:
            log.exception("unhandled error in %s %s", request.method, request.path)
            problem = E.ManagerError("an unexpected error occurred")
    headers: dict[str, str] = dict(request.get(K.RATE_HEADERS) or {})
    if isinstance(problem, E.ServiceUnavailable):
        headers["Retry-After"] = "1"
    return problem_response(problem, headers)


@web.middleware
async def header_limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse oversized headers with a problem, before auth or a handler reads them."""
    for name, value in request.raw_headers:
        limit = MAX_AUTHORIZATION_BYTES if name.lower() == b"authorization" else MAX_HEADER_BYTES
        if len(value) > limit:
            header = name.decode("latin-1")[:64]
            error = E.InvalidAuthParams if limit == MAX_AUTHORIZATION_BYTES else E.InvalidAPIParams
            raise error(f"header {header} is {len(value)} bytes; the limit is {limit}")
    return await handler(request)


@web.middleware
async def version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_public(request):
        return await handler(request)
    version = request.headers.get("X-Sorna-Version", "")
    if not version:
        raise E.InvalidAuthParams("X-Sorna-Version is missing")
    major = version.split(".", 1)[0]
    prefix = request.path.split("/", 2)[1] if request.path.count("/") >= 1 else ""
    if major not in ("v1", "v2") or major != prefix:
        raise E.InvalidAuthParams(
            f"X-Sorna-Version {version!r} does not match the path prefix /{prefix}"
        )
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_public(request):
        return await handler(request)
    settings = request.app[K.SETTINGS]
    auth = request.headers.get("Authorization")
    date = request.headers.get("X-Sorna-Date") or request.headers.get("Date")
    if not auth or not date:
        raise E.InvalidAuthParams("Authorization and Date (or X-Sorna-Date) are required")
    try:
        sign_method, access_key, signature = signing.parse_authorization(auth)
        when = signing.parse_date(date)
    except signing.SigningError as e:
        raise E.InvalidAuthParams(str(e)) from None
    skew = abs((datetime.datetime.now(datetime.UTC) - when).total_seconds())
    if skew > settings.auth.max_skew_s:
        raise E.InvalidAuthParams("the request date is too far from the server clock")
    keypair = await request.app[K.KEYPAIRS].get(access_key)
    if keypair is None or not keypair.is_active:
        raise E.AuthFailed("unknown or inactive access key")
    content_type = request.headers.get("Content-Type", "")
    if content_type.lower().startswith("multipart/"):
        body = b""
    else:
        body = await request.read()
    request[K.BODY] = body
    try:
        expected = signing.sign(
            secret_key=keypair.secret_key,
            method=request.method,
            path_with_query=request.raw_path,
            date=date,
            host=request.headers.get("Host", ""),
            content_type=content_type,
            version=request.headers.get("X-Sorna-Version", ""),
            body=body,
            sign_method=sign_method,
        )
        verified = signing.verify(expected, signature)
    except UnicodeEncodeError:  # a signed header held bytes that are not UTF-8
        raise E.InvalidAuthParams("the signed headers must be UTF-8") from None
    if not verified:
        raise E.AuthFailed("signature mismatch")
    request[K.KEYPAIR] = keypair
    request.app[K.KEYPAIRS].record_use(keypair.access_key)
    return await handler(request)


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    keypair = request.get(K.KEYPAIR)
    if keypair is None:
        return await handler(request)
    verdict = await request.app[K.LIMITER].hit(
        AccessKey(keypair.access_key), keypair.rate_limit, request[K.REQUEST_ID]
    )
    request[K.RATE_HEADERS] = verdict.headers()
    if not verdict.allowed and not _handler_has(request, RATE_EXEMPT_ATTR):
        raise E.RateLimitExceeded("too many requests in the window")
    response = await handler(request)
    if not response.prepared:
        response.headers.update(verdict.headers())
    return response


async def set_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response says who it is."""
    response.headers["Server"] = f"Sorna-API/{API_VERSION}"
    rate: dict[str, Any] | None = request.get(K.RATE_HEADERS)
    if rate:
        for k, v in rate.items():
            response.headers.setdefault(k, v)


MIDDLEWARES: Final = [
    request_id_middleware,
    problem_middleware,
    header_limits_middleware,
    version_middleware,
    auth_middleware,
    ratelimit_middleware,
]
