"""API errors as RFC 7807 problem+json: the one table of statuses (API.md)."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from sorna.manager import errors as e

PROBLEM_BASE: Final = "https://api.sorna.io/probs/"
PROBLEM_CONTENT_TYPE: Final = "application/problem+json"

#: Error class -> HTTP status. The most specific class listed wins (checked in MRO order).
STATUS: Final[dict[type[e.ManagerError], int]] = {
    e.InvalidAPIParams: 400,
    e.InvalidAuthParams: 400,
    e.AuthFailed: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.QuotaExceeded: 412,
    e.PayloadTooLarge: 413,
    e.RateLimitExceeded: 429,
    e.AgentFailure: 500,
    e.ManagerError: 500,
    e.ServiceUnavailable: 503,
}


def status_of(error: e.ManagerError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def problem_body(error: e.ManagerError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_BASE + error.problem, "title": error.title}
    if error.detail:
        body["detail"] = error.detail
    for k, v in error.extra.items():
        body[k.replace("_", "-")] = v
    return body


def problem_response(error: e.ManagerError, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status_of(error),
        text=json.dumps(problem_body(error), default=str),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
