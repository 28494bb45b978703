"""REST handlers of kernels: create, info, restart, destroy, execute, interrupt, complete,
upload, file listing and download."""

from __future__ import annotations

import posixpath
import urllib.parse
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from sorna.common import codec
from sorna.common.constants import KERNEL_WORK_DIR
from sorna.common.errors import CodecError
from sorna.common.ids import AccessKey
from sorna.common.messages import KernelLimits
from sorna.gateway import keys as K
from sorna.gateway.params import field, json_body
from sorna.manager.errors import InvalidAPIParams, PayloadTooLarge


def _owner(request: web.Request) -> AccessKey:
    return AccessKey(request[K.KEYPAIR].access_key)


def _kid(request: web.Request) -> str:
    return request.match_info["kernel_id"]


async def create(request: web.Request) -> web.Response:
    data = await json_body(request)
    lang = field(data, "lang", str)
    token = field(data, "clientSessionToken", str)
    limits_in = field(data, "limits", dict, default={})
    mem = field(limits_in, "maxMem", int, default=None)
    timeout = field(limits_in, "execTimeout", int, default=None)
    if (mem is not None and mem <= 0) or (timeout is not None and timeout < 0):
        raise InvalidAPIParams("limits must be positive")
    disk = _disk_limit(limits_in)
    field(data, "mounts", list, default=[])
    kernel_id, created = await request.app[K.KERNELS].get_or_create(
        _owner(request),
        lang,
        token,
        KernelLimits(mem_kib=mem, exec_timeout_ms=timeout, disk_kib=disk),
    )
    return web.json_response({"kernelId": kernel_id, "created": created}, status=201)


def _disk_limit(limits: dict[str, Any]) -> int | None:
    """``maxDisk`` (KiB; 0 or absent: the image's default; the agent clamps it to its cap)."""
    disk = field(limits, "maxDisk", int, default=None)
    if disk is not None and not 0 <= disk < 1 << 63:
        raise InvalidAPIParams("maxDisk must be a size in KiB, 0 (the default) or more")
    return disk or None


async def info(request: web.Request) -> web.Response:
    return web.json_response(await request.app[K.KERNELS].info(_owner(request), _kid(request)))


async def restart(request: web.Request) -> web.Response:
    await request.app[K.KERNELS].restart(_owner(request), _kid(request))
    return web.Response(status=204)


async def destroy(request: web.Request) -> web.Response:
    stats = await request.app[K.KERNELS].destroy(_owner(request), _kid(request))
    return web.json_response({"stats": stats})


def _exec_args(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": field(data, "mode", str, default="query"),
        "code": field(data, "code", str, default=""),
        "run_id": field(data, "runId", str, default=None),
        "options": _options(data),
    }


async def execute(request: web.Request) -> web.Response:
    data = await json_body(request)
    args = _exec_args(data)
    result = await request.app[K.KERNELS].execute(_owner(request), _kid(request), **args)
    if args["mode"] == "complete":
        return web.json_response({"result": result["completions"]})
    return web.json_response({"result": result})


async def interrupt(request: web.Request) -> web.Response:
    await request.app[K.KERNELS].interrupt(_owner(request), _kid(request))
    return web.Response(status=204)


async def complete(request: web.Request) -> web.Response:
    data = await json_body(request)
    code = field(data, "code", str, default="")
    options = _options(data)
    out = await request.app[K.KERNELS].complete(_owner(request), _kid(request), code, options)
    return web.json_response({"result": out})


def _options(data: dict[str, Any]) -> dict[str, Any] | None:
    """Return the ``options`` object; 400 if the RPC cannot carry it (e.g. ints past 64 bits)."""
    options: dict[str, Any] | None = field(data, "options", dict, default=None)
    try:
        codec.packb(options)
    except CodecError as e:
        raise InvalidAPIParams(f"field 'options' cannot be sent to the kernel: {e}") from None
    return options


def work_path(name: str) -> str:
    """Return ``name`` relative to /home/work; 400 if it leaves it."""
    if not name or "\x00" in name or "\\" in name:
        raise InvalidAPIParams(f"invalid file name {name!r}")
    if name.startswith("/"):
        norm = posixpath.normpath(name)
        if norm != KERNEL_WORK_DIR and not norm.startswith(KERNEL_WORK_DIR + "/"):
            raise InvalidAPIParams(f"{name!r} is outside {KERNEL_WORK_DIR}")
        name = norm[len(KERNEL_WORK_DIR) + 1 :]
    if any(part == ".." for part in name.split("/")):
        raise InvalidAPIParams(f"{name!r} may not contain '..'")
    rel = posixpath.normpath(name)
    if rel in (".", "") or rel.startswith("/"):
        raise InvalidAPIParams(f"invalid file name {name!r}")
    return rel


async def upload(request: web.Request) -> web.Response:
    limits = request.app[K.SETTINGS].limits
    if not request.content_type.startswith("multipart/"):
        raise InvalidAPIParams("upload takes a multipart/form-data body")
    # Check the kernel first: an unknown kernel is 404 whatever the body.
    await request.app[K.KERNELS].route(_owner(request), _kid(request))
    try:
        files = await _read_upload(request, limits)
    except (HttpProcessingError, ValueError) as e:  # malformed multipart framing or headers
        raise InvalidAPIParams(f"malformed multipart body: {e}") from None
    if not files:
        raise InvalidAPIParams("no 'src' file in the upload")
    await request.app[K.KERNELS].upload(_owner(request), _kid(request), files)
    return web.Response(status=204)


async def _read_upload(request: web.Request, limits: Any) -> list[tuple[str, bytes]]:
    reader = await request.multipart()
    files: list[tuple[str, bytes]] = []
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise InvalidAPIParams("nested multipart bodies are not accepted")
        if part.name != "src":
            await part.release()
            continue
        if len(files) >= limits.upload_max_files:
            raise PayloadTooLarge(f"at most {limits.upload_max_files} files per upload")
        # aiohttp clients percent-encode names in Content-Disposition ("sub%2Fb.txt").
        path = work_path(urllib.parse.unquote(part.filename or ""))
        data = bytearray()
        while chunk := await part.read_chunk(64 << 10):
            data += chunk
            if len(data) > limits.upload_max_file_bytes:
                raise PayloadTooLarge(f"{path}: larger than {limits.upload_max_file_bytes} bytes")
        files.append((path, bytes(data)))
    return files


async def list_files(request: web.Request) -> web.Response:
    path = request.query.get("path", "")
    rel = "" if path in ("", ".", "/", KERNEL_WORK_DIR, KERNEL_WORK_DIR + "/") else work_path(path)
    files = await request.app[K.KERNELS].list_files(_owner(request), _kid(request), rel)
    return web.json_response({"files": files})


async def download(request: web.Request) -> web.StreamResponse:
    name = request.query.get("file")
    if not name:
        raise InvalidAPIParams("missing query parameter 'file'")
    rel = work_path(name)
    chunks = await request.app[K.KERNELS].download(_owner(request), _kid(request), rel)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{posixpath.basename(rel)}"',
        }
    )
    response.headers.update(request.get(K.RATE_HEADERS) or {})
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
