"""The pty stream on the shell kernel, and the end-to-end path on the docker backend."""

from __future__ import annotations

import base64
import io

import aiohttp
import pytest

from sorna.agent.agent import Agent
from sorna.gateway.testing import API, Gateway


async def create(api: API, lang: str, token: str = "tok-1") -> str:
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": lang, "clientSessionToken": token}
    )
    assert status == 201, body
    return str(body["kernelId"])


async def test_pty_echoes_input_on_the_shell_kernel(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api, "shell")
    path = f"/v2/stream/kernel/{kid}/pty"
    headers = api.headers("GET", path, b"")
    async with api.session.ws_connect(api.server.make_url(path), headers=headers) as ws:
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json(timeout=10) == {"type": "pong"}
        await ws.send_json({"type": "resize", "rows": 24, "cols": 80})
        chars = base64.b64encode(b"echo sorna-$((40+2))\n").decode()
        await ws.send_json({"type": "stdin", "chars": chars})
        got = b""
        while b"sorna-42" not in got:
            msg = await ws.receive_json(timeout=20)
            assert msg["type"] == "out"
            got += base64.b64decode(msg["data"])


@pytest.mark.docker
@pytest.mark.slow
async def test_docker_backend_end_to_end(
    gateway: Gateway,
    start_agent,  # type: ignore[no-untyped-def]
) -> None:
    await start_agent(backend="docker")
    api = await gateway.api()
    kid = await create(api, "python3")
    status, r = await api.json("POST", f"/v2/kernel/{kid}", {"mode": "query", "code": "v = 6 * 7"})
    assert status == 200 and r["result"]["status"] == "finished", r
    status, r = await api.json("POST", f"/v2/kernel/{kid}", {"mode": "query", "code": "print(v)"})
    assert status == 200 and r["result"]["console"] == [["stdout", "42\n"]], r
    form = aiohttp.FormData()
    form.add_field("src", io.BytesIO(b"data!"), filename="in.txt")
    payload = form()
    upath = f"/v2/kernel/{kid}/upload"
    headers = api.headers("POST", upath, b"", content_type=payload.content_type)
    async with api.session.post(api.server.make_url(upath), data=payload, headers=headers) as resp:
        assert resp.status == 204, await resp.text()
    code = "open('out.txt', 'w').write(open('in.txt').read().upper())"
    status, r = await api.json("POST", f"/v2/kernel/{kid}", {"mode": "query", "code": code})
    assert status == 200
    assert "out.txt" in [f["name"] for f in r["result"]["files"]], r
    async with await api.request("GET", f"/v2/kernel/{kid}/download?file=out.txt") as resp:
        assert resp.status == 200 and await resp.read() == b"DATA!"
    status, body = await api.json("DELETE", f"/v2/kernel/{kid}")
    assert status == 200 and isinstance(body["stats"], dict)
    assert (await api.json("GET", f"/v2/kernel/{kid}"))[0] == 404
