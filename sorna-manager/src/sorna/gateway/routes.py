"""The route table: registered on the app and described in the OpenAPI document from one list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from sorna.gateway import admin, kernel, stream
from sorna.gateway.middlewares import API_VERSION, public
from sorna.gateway.params import json_body


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str  # under the version prefix
    handler: Handler
    summary: str
    success: int = 200
    v1: bool = True  # also served under /v1
    body: dict[str, Any] | None = None  # JSON schema of the request body


_STR = {"type": "string"}
_INT = {"type": "integer"}
_OPTIONS = {"type": "object", "nullable": True}
CREATE_BODY: Final = {
    "type": "object",
    "required": ["lang", "clientSessionToken"],
    "properties": {
        "lang": _STR,
        "clientSessionToken": {"type": "string", "pattern": "^[A-Za-z0-9._-]{4,64}$"},
        "limits": {
            "type": "object",
            "properties": {
                "maxMem": _INT,
                "execTimeout": _INT,
                "maxDisk": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "cap of the kernel's /home/work in KiB (writes past it fail"
                    " with ENOSPC, uploads with 413); 0 or absent: the image's default (1 GiB"
                    " unless its io.sorna.maxdisk label says otherwise); clamped to the agent's"
                    " caps.max_disk_mib",
                },
            },
        },
        "mounts": {"type": "array", "items": _STR},
    },
}
EXECUTE_BODY: Final = {
    "type": "object",
    "properties": {
        "mode": {"type": "string", "enum": ["query", "batch", "complete", "continue", "input"]},
        "code": _STR,
        "runId": _STR,
        "options": _OPTIONS,
    },
}
COMPLETE_BODY: Final = {"type": "object", "properties": {"code": _STR, "options": _OPTIONS}}
KEYPAIR_BODY: Final = {
    "type": "object",
    "properties": {
        "concurrencyLimit": _INT,
        "rateLimit": _INT,
        "isAdmin": {"type": "boolean"},
        "isActive": {"type": "boolean"},
    },
}


@public
async def root(request: web.Request) -> web.Response:
    return web.json_response({"version": API_VERSION})


async def authorize(request: web.Request) -> web.Response:
    data = await json_body(request)
    return web.json_response({"authorized": "yes", "echo": data.get("echo")})


@public
async def openapi_doc(request: web.Request) -> web.Response:
    from sorna.gateway.openapi import document

    return web.json_response(document(request.app))


@public
async def metrics(request: web.Request) -> web.Response:
    from sorna.gateway.app import metrics_response

    return await metrics_response(request.app)


KID = "/kernel/{kernel_id}"
ROUTES: Final = (
    RouteSpec("GET", "", root, "API version (unsigned)"),
    RouteSpec("GET", "/openapi.json", openapi_doc, "This document (unsigned)", v1=False),
    RouteSpec("GET", "/authorize", authorize, "Check a signature; echo the body's echo"),
    RouteSpec(
        "POST",
        "/kernel/create",
        kernel.create,
        "Get or create a session's kernel",
        201,
        body=CREATE_BODY,
    ),
    RouteSpec("GET", KID, kernel.info, "Kernel information"),
    RouteSpec("PATCH", KID, kernel.restart, "Restart the kernel", 204),
    RouteSpec("DELETE", KID, kernel.destroy, "Destroy the kernel; return its final usage"),
    RouteSpec(
        "POST",
        KID,
        kernel.execute,
        "Execute (query, batch, continue, input, complete)",
        body=EXECUTE_BODY,
    ),
    RouteSpec("POST", KID + "/interrupt", kernel.interrupt, "Interrupt the current run", 204),
    RouteSpec(
        "POST",
        KID + "/complete",
        kernel.complete,
        "Code completion candidates",
        body=COMPLETE_BODY,
    ),
    RouteSpec("POST", KID + "/upload", kernel.upload, "Upload files (multipart, field src)", 204),
    RouteSpec("GET", KID + "/files", kernel.list_files, "List files under /home/work"),
    RouteSpec("GET", KID + "/download", kernel.download, "Download one file (streamed)"),
    RouteSpec("GET", "/stream" + KID + "/pty", stream.pty_stream, "PTY WebSocket", 101, False),
    RouteSpec(
        "GET", "/stream" + KID + "/execute", stream.execute_stream, "Execute WebSocket", 101, False
    ),
    RouteSpec("GET", "/admin/keypairs", admin.list_keypairs, "List keypairs", v1=False),
    RouteSpec(
        "POST",
        "/admin/keypairs",
        admin.create_keypair,
        "Create a keypair",
        201,
        False,
        body=KEYPAIR_BODY,
    ),
    RouteSpec(
        "PATCH",
        "/admin/keypairs/{access_key}",
        admin.modify_keypair,
        "Modify a keypair",
        v1=False,
        body=KEYPAIR_BODY,
    ),
    RouteSpec(
        "DELETE",
        "/admin/keypairs/{access_key}",
        admin.deactivate_keypair,
        "Deactivate a keypair",
        v1=False,
    ),
    RouteSpec("GET", "/admin/agents", admin.list_agents, "Agent registry", v1=False),
    RouteSpec("GET", "/admin/kernels", admin.list_kernels, "Live kernels", v1=False),
)


def add_routes(app: web.Application, *, with_metrics: bool) -> None:
    for spec in ROUTES:
        for prefix in ("/v2", "/v1") if spec.v1 else ("/v2",):
            app.router.add_route(spec.method, prefix + spec.path, spec.handler)
    if with_metrics:
        app.router.add_route("GET", "/metrics", metrics)
