"""Request-body helpers: parse and check JSON fields, raising InvalidAPIParams."""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

from aiohttp import web

from sorna.gateway import keys as K
from sorna.manager.errors import InvalidAPIParams

T = TypeVar("T")

#: Deepest nesting of arrays and objects a request may hold (no API body needs more; deeper
#: values would overflow the recursion of json, msgpack or the response encoder later).
MAX_JSON_DEPTH: Final = 32


def loads(raw: bytes | str) -> Any:
    """Parse a JSON document from a client: 400 unless it is valid JSON, nested at most
    MAX_JSON_DEPTH deep, with every string (keys too) encodable as UTF-8 (JSON escapes can
    spell lone surrogates such as ``"\\ud800"``, which no later step could encode)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidAPIParams(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidAPIParams("the body is not valid JSON") from None
    _check_tree(data)
    return data


def _check_tree(data: Any) -> None:
    # Iterative, so that the check itself cannot overflow the stack.
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidAPIParams(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(value, dict):
                for key in value:
                    _check_text(key)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidAPIParams(
            "the JSON holds a string that is not valid Unicode (a lone surrogate)"
        ) from None


async def json_body(request: web.Request) -> dict[str, Any]:
    """Return the JSON object body ({} when empty), checked by :func:`loads`."""
    raw = request.get(K.BODY)
    if raw is None:
        raw = await request.read()
    if not raw.strip():
        return {}
    data = loads(raw)
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
