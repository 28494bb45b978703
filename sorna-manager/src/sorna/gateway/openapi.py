"""The OpenAPI 3 document, generated from the app's real routes and the route table."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from sorna.gateway.middlewares import API_VERSION, PUBLIC_ATTR, RATE_EXEMPT_ATTR, RATE_EXEMPT_NOTE
from sorna.gateway.problems import STATUS
from sorna.gateway.routes import ROUTES, RouteSpec

_PARAM = re.compile(r"{(\w+)}")
_STR = {"type": "string"}


def _problem_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in sorted(set(STATUS.values())):
        out[str(status)] = {"$ref": "#/components/responses/Problem"}
    return out


def document(app: web.Application) -> dict[str, Any]:
    """Describe every route registered on ``app``."""
    summaries: dict[Any, RouteSpec] = {}
    for spec in ROUTES:
        summaries[spec.handler] = spec
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        found = summaries.get(route.handler)
        op: dict[str, Any] = {
            "operationId": f"{route.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}",
            "summary": found.summary if found else path,
            "responses": {
                str(found.success if found else 200): {"description": "success"},
                **_problem_responses(),
            },
        }
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in _PARAM.findall(path)
        ]
        if params:
            op["parameters"] = params
        if getattr(route.handler, PUBLIC_ATTR, False):
            op["security"] = []
        if getattr(route.handler, RATE_EXEMPT_ATTR, False):
            op["description"] = RATE_EXEMPT_NOTE
        if found is not None and found.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": found.body}},
            }
        elif path.endswith("/upload"):
            op["requestBody"] = {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "src": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                        }
                    }
                },
            }
        if path.endswith(("/files", "/download")):
            name = "path" if path.endswith("/files") else "file"
            op.setdefault("parameters", []).append(
                {"name": name, "in": "query", "required": name == "file", "schema": _STR}
            )
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "Sorna API", "version": API_VERSION},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "sorna": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
            "responses": {
                "Problem": {
                    "description": "RFC 7807 problem",
                    "content": {
                        "application/problem+json": {
                            "schema": {
                                "type": "object",
                                "required": ["type", "title"],
                                "properties": {
                                    "type": {"type": "string"},
                                    "title": {"type": "string"},
                                },
                            }
                        }
                    },
                }
            },
        },
        "security": [{"sorna": []}],
    }
