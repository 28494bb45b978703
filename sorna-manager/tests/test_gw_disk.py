"""``limits.maxDisk`` through the API: the cap holds in the kernel and for uploads (413)."""

from __future__ import annotations

import io
from typing import Any

import aiohttp

from sorna.agent.config import CapsSettings
from sorna.gateway.testing import API, Gateway

PROB = "https://api.sorna.io/probs/"
MiB = 1 << 20
STATVFS = "import os\ns = os.statvfs('.')\nprint(s.f_bavail * s.f_frsize)"


async def _create(api: API, token: str, limits: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = {"lang": "python3", "clientSessionToken": token, "limits": limits}
    status, answer = await api.json("POST", "/v2/kernel/create", body)
    return status, dict(answer)


async def _stdout(api: API, kid: str, code: str) -> str:
    status, body = await api.json("POST", f"/v2/kernel/{kid}", {"mode": "query", "code": code})
    assert status == 200, body
    result = body["result"]
    out = [d for k, d in result["console"] if k == "stdout"]
    while result["status"] == "continued":
        status, body = await api.json(
            "POST", f"/v2/kernel/{kid}", {"mode": "continue", "runId": result["runId"]}
        )
        result = body["result"]
        out += [d for k, d in result["console"] if k == "stdout"]
    return "".join(out)


async def _upload(api: API, kid: str, name: str, data: bytes) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("src", io.BytesIO(data), filename=name, content_type="application/octet-stream")
    payload = form()
    path = f"/v2/kernel/{kid}/upload"
    headers = api.headers("POST", path, b"", content_type=payload.content_type)
    async with api.session.post(api.server.make_url(path), data=payload, headers=headers) as r:
        return r.status, (await r.json() if r.status != 204 else {})


async def test_max_disk_caps_the_kernel_and_its_uploads(gateway: Gateway, start_agent) -> None:
    await start_agent(caps=CapsSettings(max_disk_mib=32))
    api = await gateway.api()
    # Not a size: a clear 400, and no kernel.
    for bad in (-1, "16m", 1.5, 1 << 70):
        status, problem = await _create(api, "tok-bad", {"maxDisk": bad})
        assert status == 400, (bad, problem)
        assert problem["type"] == PROB + "invalid-api-params"
    # Above the agent's cap: clamped to it, as maxMem is.
    status, body = await _create(api, "tok-big", {"maxDisk": 1 << 30})
    assert status == 201, body
    free = int(await _stdout(api, body["kernelId"], STATVFS))
    assert 32 * MiB <= free <= 33 * MiB
    # 16 MiB asked: the kernel fills it, and an upload that does not fit is 413.
    status, body = await _create(api, "tok-16", {"maxDisk": 16 * 1024})
    assert status == 201, body
    kid = body["kernelId"]
    free = int(await _stdout(api, kid, STATVFS))
    assert 16 * MiB <= free <= 17 * MiB
    fill = f"open('filler', 'wb').write(b'f' * {free - 128 * 1024})\nprint('filled')"
    assert await _stdout(api, kid, fill) == "filled\n"
    status, problem = await _upload(api, kid, "late.bin", b"u" * (512 * 1024))
    assert status == 413, problem
    assert problem["type"] == PROB + "payload-too-large"
    assert (await _upload(api, kid, "small.txt", b"s" * 1024))[0] == 204
