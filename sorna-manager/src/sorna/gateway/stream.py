"""WebSocket streams: execute (console items as they happen) and pty."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

from aiohttp import WSMsgType, web

from sorna.common.ids import AccessKey
from sorna.common.types import RunStatus
from sorna.gateway import keys as K
from sorna.gateway.kernel import exec_args, json_safe
from sorna.gateway.params import loads
from sorna.gateway.problems import problem_body
from sorna.manager.errors import InvalidAPIParams, ManagerError

log = logging.getLogger(__name__)

_FINAL = {RunStatus.FINISHED, RunStatus.BUILD_FINISHED, RunStatus.EXEC_TIMEOUT}


async def execute_stream(request: web.Request) -> web.WebSocketResponse:
    owner = AccessKey(request[K.KEYPAIR].access_key)
    kernel_id = request.match_info["kernel_id"]
    kernels = request.app[K.KERNELS]
    await kernels.route(owner, kernel_id)  # 404 before the upgrade
    ws = web.WebSocketResponse(heartbeat=30.0)
    ws.headers.update(request.get(K.RATE_HEADERS) or {})
    await ws.prepare(request)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = loads(msg.data)
                if not isinstance(data, dict):
                    raise InvalidAPIParams("messages must be JSON objects")
                await _run(ws, kernels, owner, kernel_id, data)
            except ManagerError as e:
                await ws.send_json({"type": "error", "data": problem_body(e)})
    finally:
        await ws.close()
    return ws


async def _run(
    ws: web.WebSocketResponse, kernels: Any, owner: AccessKey, kernel_id: str, data: dict[str, Any]
) -> None:
    args = exec_args(data)
    mode, code, run_id, options = args["mode"], args["code"], args["run_id"], args["options"]
    while True:
        result = json_safe(
            await kernels.execute(
                owner, kernel_id, mode=mode, code=code, run_id=run_id, options=options
            )
        )
        run_id = result.get("runId", run_id)
        for item in result.get("console", []):
            if isinstance(item, list | tuple) and len(item) == 2:
                await ws.send_json({"type": item[0], "data": item[1]})
        status = result.get("status")
        if status == RunStatus.CONTINUED:
            mode, code = "continue", ""
            continue
        if status == RunStatus.WAITING_INPUT:
            await ws.send_json({"type": "waiting-input", "data": result.get("options") or {}})
            return
        await ws.send_json(
            {"type": status, "data": {"runId": run_id, "files": result.get("files", [])}}
        )
        if status in _FINAL:
            return
        return


async def pty_stream(request: web.Request) -> web.WebSocketResponse:
    """Relay a tty kernel's terminal: stdin in, output out (through execute RPCs)."""
    owner = AccessKey(request[K.KEYPAIR].access_key)
    kernel_id = request.match_info["kernel_id"]
    kernels = request.app[K.KERNELS]
    await kernels.route(owner, kernel_id)
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = loads(msg.data)
            except ManagerError:
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            try:
                if kind == "ping":
                    await ws.send_json({"type": "pong"})
                elif kind == "restart":
                    await kernels.restart(owner, kernel_id)
                elif kind == "resize":
                    continue
                elif kind == "stdin":
                    try:
                        raw = base64.b64decode(str(data.get("chars", "")))
                    except (binascii.Error, ValueError):
                        raise InvalidAPIParams("stdin chars must be base64") from None
                    chars = raw.decode(errors="replace")
                    result = await kernels.execute(
                        owner, kernel_id, mode="query", code=chars, run_id=None, options=None
                    )
                    for item in result.get("console", []):
                        if item[0] in ("stdout", "stderr") and isinstance(item[1], str):
                            out = base64.b64encode(item[1].encode()).decode()
                            await ws.send_json({"type": "out", "data": out})
            except ManagerError as e:
                await ws.send_json({"type": "error", "data": problem_body(e)})
            await asyncio.sleep(0)
    finally:
        await ws.close()
    return ws
