"""Request-body helpers: parse and check JSON fields, raising InvalidAPIParams."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web

from sorna.gateway import keys as K
from sorna.manager.errors import InvalidAPIParams

T = TypeVar("T")


async def json_body(request: web.Request) -> dict[str, Any]:
    """Return the JSON object body ({} when empty)."""
    raw = request.get(K.BODY)
    if raw is None:
        raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidAPIParams("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidAPIParams("the body must be a JSON object")
    return data


def field(data: dict[str, Any], name: str, kind: type[T], *, default: Any = ...) -> T:
    """Return ``data[name]`` checked to be a ``kind``; a missing field takes ``default``."""
    if name not in data or data[name] is None:
        if default is ...:
            raise InvalidAPIParams(f"missing field {name!r}")
        return default  # type: ignore[no-any-return]
    value = data[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidAPIParams(f"field {name!r} must be an integer")
    if not isinstance(value, kind):
        raise InvalidAPIParams(f"field {name!r} must be of type {kind.__name__}")
    return value
