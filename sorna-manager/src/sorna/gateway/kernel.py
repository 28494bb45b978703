"""REST handlers of kernels: create, info, restart, destroy, execute, interrupt, complete,
upload, file listing and download."""

from __future__ import annotations

import json
import posixpath
from typing import Any, Final

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from sorna.common import codec
from sorna.common.constants import KERNEL_WORK_DIR
from sorna.common.errors import CodecError
from sorna.common.ids import AccessKey
from sorna.common.messages import KernelLimits
from sorna.gateway import keys as K
from sorna.gateway.files import attachment, upload_name, work_path
from sorna.gateway.middlewares import rate_exempt
from sorna.gateway.params import field, json_body
from sorna.manager.errors import InvalidAPIParams, PayloadTooLarge

#: Largest integer a limit may be: the books keep limits as PostgreSQL ``bigint`` and the RPC
#: carries them as msgpack int64.
WIRE_INT_MAX: Final = 2**63 - 1


def json_safe(data: Any) -> Any:
    """``data`` (what an agent sent), made fit for JSON in valid UTF-8: bytes, or lone
    surrogates of file names that are not UTF-8, become U+FFFD. Unchanged when already fit."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return _clean(data)
    return data


def agent_reply(data: Any, status: int = 200) -> web.Response:
    """A JSON response of what an agent sent (see :func:`json_safe`): never a 500."""
    return web.json_response(json_safe(data), status=status)


def _clean(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode(errors="replace")
    if isinstance(value, str):
        try:
            raw = value.encode(errors="surrogateescape")  # the bytes a name really had
        except UnicodeEncodeError:
            raw = value.encode(errors="surrogatepass")
        return raw.decode(errors="replace")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


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
    if mem is not None and not 1 <= mem <= WIRE_INT_MAX:
        raise InvalidAPIParams(f"limits.maxMem must be between 1 and {WIRE_INT_MAX} (KiB)")
    if timeout is not None and not 0 <= timeout <= WIRE_INT_MAX:
        raise InvalidAPIParams(f"limits.execTimeout must be between 0 and {WIRE_INT_MAX} (ms)")
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
    if disk is not None and not 0 <= disk <= WIRE_INT_MAX:
        raise InvalidAPIParams(f"limits.maxDisk must be between 0 and {WIRE_INT_MAX} (KiB)")
    return disk or None


@rate_exempt
async def info(request: web.Request) -> web.Response:
    """Kernel information. Served even when the keypair's rate limit is spent (it counts while
    the limit lasts), so that a tenant can always see its kernels."""
    return web.json_response(await request.app[K.KERNELS].info(_owner(request), _kid(request)))


async def restart(request: web.Request) -> web.Response:
    await request.app[K.KERNELS].restart(_owner(request), _kid(request))
    return web.Response(status=204)


@rate_exempt
async def destroy(request: web.Request) -> web.Response:
    """Destroy the kernel. Served even when the keypair's rate limit is spent (it counts while
    the limit lasts), so that a tenant can always clean up."""
    stats = await request.app[K.KERNELS].destroy(_owner(request), _kid(request))
    return agent_reply({"stats": stats})


def exec_args(data: dict[str, Any]) -> dict[str, Any]:
    """The execute arguments of a request body (or a stream message), each field checked."""
    return {
        "mode": field(data, "mode", str, default="query"),
        "code": field(data, "code", str, default=""),
        "run_id": field(data, "runId", str, default=None),
        "options": _options(data),
    }


async def execute(request: web.Request) -> web.Response:
    data = await json_body(request)
    args = exec_args(data)
    result = await request.app[K.KERNELS].execute(_owner(request), _kid(request), **args)
    if args["mode"] == "complete":
        return agent_reply({"result": result["completions"]})
    return agent_reply({"result": result})


async def interrupt(request: web.Request) -> web.Response:
    await request.app[K.KERNELS].interrupt(_owner(request), _kid(request))
    return web.Response(status=204)


async def complete(request: web.Request) -> web.Response:
    data = await json_body(request)
    code = field(data, "code", str, default="")
    options = _options(data)
    out = await request.app[K.KERNELS].complete(_owner(request), _kid(request), code, options)
    return agent_reply({"result": out})


def _options(data: dict[str, Any]) -> dict[str, Any] | None:
    """Return the ``options`` object; 400 if the RPC cannot carry it (e.g. ints past 64 bits)."""
    options: dict[str, Any] | None = field(data, "options", dict, default=None)
    try:
        codec.packb(options)
    except CodecError as e:
        raise InvalidAPIParams(f"field 'options' cannot be sent to the kernel: {e}") from None
    return options


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
        path = upload_name(part.headers.get("Content-Disposition"))
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
    return agent_reply({"files": files})


async def download(request: web.Request) -> web.StreamResponse:
    name = request.query.get("file")
    if not name:
        raise InvalidAPIParams("missing query parameter 'file'")
    rel = work_path(name)
    chunks = await request.app[K.KERNELS].download(_owner(request), _kid(request), rel)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": attachment(posixpath.basename(rel)),
        }
    )
    response.headers.update(request.get(K.RATE_HEADERS) or {})
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
