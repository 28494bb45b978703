"""End to end through the gateway and a real agent (local backend)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from typing import Any

import aiohttp

from sorna.agent.agent import Agent
from sorna.gateway import keys as K
from sorna.gateway.testing import API, Gateway

PROB = "https://api.sorna.io/probs/"


async def create(api: API, token: str = "tok-1", lang: str = "python3", **extra: Any) -> str:
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": lang, "clientSessionToken": token, **extra}
    )
    assert status == 201, body
    return str(body["kernelId"])


async def run(api: API, kid: str, code: str, mode: str = "query", **extra: Any) -> dict[str, Any]:
    status, body = await api.json(
        "POST", f"/v2/kernel/{kid}", {"mode": mode, "code": code, **extra}
    )
    assert status == 200, body
    return dict(body["result"])


async def run_to_end(api: API, kid: str, code: str) -> tuple[str, dict[str, Any]]:
    """Run ``code`` and continue until it finishes; return all stdout and the last result."""
    result = await run(api, kid, code)
    out = []
    while True:
        out += [d for k, d in result["console"] if k == "stdout"]
        if result["status"] != "continued":
            return "".join(out), result
        result = await run(api, kid, "", "continue", runId=result["runId"])


def stdout(result: dict[str, Any]) -> str:
    return "".join(d for k, d in result["console"] if k == "stdout")


async def test_get_or_create_and_state(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "python", "clientSessionToken": "tok-1"}
    )
    assert status == 201 and body["created"] is True
    kid = body["kernelId"]
    status, again = await api.json(
        "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": "tok-1"}
    )
    assert status == 201 and again == {"kernelId": kid, "created": False}
    other = await gateway.api()
    other_kid = await create(other, "tok-1")
    assert other_kid != kid
    # Another keypair's kernel is 404 (not 403).
    status, problem = await other.json("GET", f"/v2/kernel/{kid}")
    assert status == 404 and problem["type"] == PROB + "kernel-not-found"

    r = await run(api, kid, "x = 41")
    assert r["status"] == "finished"
    r = await run(api, kid, "print(x + 1)")
    assert r["status"] == "finished" and stdout(r) == "42\n" and r["runId"]
    status, info = await api.json("GET", f"/v2/kernel/{kid}")
    assert status == 200
    assert info["lang"] == "python3" and info["numQueriesExecuted"] == 2
    assert set(info) >= {"age", "memoryLimit", "idle", "memoryUsed", "cpuCreditUsed", "execTimeout"}


async def test_concurrent_creates_yield_one_kernel(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    bodies = await asyncio.gather(
        *(
            api.json("POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": "same"})
            for _ in range(5)
        )
    )
    assert all(status == 201 for status, _ in bodies), bodies
    assert len({b["kernelId"] for _, b in bodies}) == 1
    assert sum(1 for _, b in bodies if b["created"]) == 1
    assert len(agent.kernel_ids) == 1
    kp = await gateway.app[K.KEYPAIRS].update(api.keypair.access_key)
    assert kp is not None and kp.concurrency_used == 1


async def test_continue_input_complete(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api)
    out, last = await run_to_end(
        api, kid, "import time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(0.4)"
    )
    assert out == "0\n1\n2\n3\n" and last["status"] == "finished"
    r = await run(api, kid, "name = input('who? ')\nprint('hi', name)")
    assert r["status"] == "waiting-input"
    r = await run(api, kid, "bob", "input")
    assert r["status"] == "finished" and "hi bob" in stdout(r)
    # Compatibility: a query with code while waiting for input is the input line.
    r = await run(api, kid, "name = input()\nprint('again', name)")
    assert r["status"] == "waiting-input"
    r = await run(api, kid, "ann")
    assert r["status"] == "finished" and "again ann" in stdout(r)
    status, body = await api.json(
        "POST", f"/v2/kernel/{kid}/complete", {"code": "impo", "options": {}}
    )
    assert status == 200 and "import" in body["result"], body
    status, body = await api.json("POST", f"/v2/kernel/{kid}", {"mode": "complete", "code": "pri"})
    assert status == 200 and "print" in body["result"], body
    status, problem = await api.json("POST", f"/v2/kernel/{kid}", {"mode": "nope", "code": ""})
    assert status == 400 and problem["type"] == PROB + "invalid-api-params"


async def test_user_errors_are_not_api_errors(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api)
    r = await run(api, kid, "1/0")
    assert r["status"] == "finished"
    assert "ZeroDivisionError" in "".join(d for k, d in r["console"] if k == "stderr")


async def test_interrupt(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api)
    r = await run(api, kid, "import time\nprint('start', flush=True)\ntime.sleep(60)")
    assert r["status"] == "continued"
    async with await api.request("POST", f"/v2/kernel/{kid}/interrupt") as resp:
        assert resp.status == 204
    for _ in range(20):
        r = await run(api, kid, "", "continue", runId=r["runId"])
        if r["status"] != "continued":
            break
    assert r["status"] == "finished"
    assert "KeyboardInterrupt" in "".join(d for k, d in r["console"] if k == "stderr")


async def upload(api: API, kid: str, files: list[tuple[str, bytes]]) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    for name, data in files:
        form.add_field(
            "src", io.BytesIO(data), filename=name, content_type="application/octet-stream"
        )
    payload = form()
    ctype = payload.content_type
    path = f"/v2/kernel/{kid}/upload"
    headers = api.headers("POST", path, b"", content_type=ctype)
    return await api.session.post(api.server.make_url(path), data=payload, headers=headers)


async def test_files_restart_destroy(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api)
    async with await upload(api, kid, [("a.txt", b"hello"), ("sub/b.txt", b"x" * 1000)]) as r:
        assert r.status == 204, await r.text()
    status, listing = await api.json("GET", f"/v2/kernel/{kid}/files")
    assert status == 200
    assert {"a.txt", "sub"} <= {f["name"] for f in listing["files"]}
    async with await api.request("GET", f"/v2/kernel/{kid}/download?file=sub/b.txt") as r:
        assert r.status == 200 and r.content_type == "application/octet-stream"
        assert await r.read() == b"x" * 1000
    for bad in ("../evil.txt", "/etc/passwd", "a/../../b"):
        async with await upload(api, kid, [(bad, b"no")]) as r:
            assert r.status == 400, bad
            assert (await r.json())["type"] == PROB + "invalid-api-params"
    async with await upload(api, kid, [(f"f{i}", b"1") for i in range(21)]) as r:
        assert r.status == 413
    async with await upload(api, kid, [("big", b"x" * ((1 << 20) + 1))]) as r:
        assert r.status == 413 and (await r.json())["type"] == PROB + "payload-too-large"

    await run(api, kid, "state = 'kept?'")
    async with await api.request("PATCH", f"/v2/kernel/{kid}") as r:
        assert r.status == 204
    r2 = await run(api, kid, "print(state)")
    assert "NameError" in "".join(d for k, d in r2["console"] if k == "stderr")
    r3 = await run(api, kid, "print(open('a.txt').read())")
    assert stdout(r3) == "hello\n"

    status, body = await api.json("DELETE", f"/v2/kernel/{kid}")
    assert status == 200 and isinstance(body["stats"], dict)
    status, problem = await api.json("GET", f"/v2/kernel/{kid}")
    assert status == 404 and problem["type"] == PROB + "kernel-not-found"
    kp = await gateway.app[K.KEYPAIRS].update(api.keypair.access_key)
    assert kp is not None and kp.concurrency_used == 0
    row = await gateway.app[K.DB].fetchrow(  # type: ignore[attr-defined]
        "SELECT status, termination_reason, num_queries FROM kernels WHERE id = $1::uuid", kid
    )
    assert row["status"] == "terminated" and row["termination_reason"] == "destroyed"
    assert row["num_queries"] == 3


async def test_concurrency_limit_with_real_kernels(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api(concurrency_limit=1)
    kid = await create(api, "tok-a")
    status, problem = await api.json(
        "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": "tok-b"}
    )
    assert status == 412 and problem["type"] == PROB + "quota-exceeded"
    # The same session is not a new kernel: still fine at the limit.
    assert (
        await api.json(
            "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": "tok-a"}
        )
    )[0] == 201
    assert (await api.json("DELETE", f"/v2/kernel/{kid}"))[0] == 200
    await create(api, "tok-b")


async def test_websocket_execute_streams(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api)
    path = f"/v2/stream/kernel/{kid}/execute"
    headers = api.headers("GET", path, b"")
    async with api.session.ws_connect(api.server.make_url(path), headers=headers) as ws:
        await ws.send_json(
            {
                "mode": "query",
                "code": "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('last')",
            }
        )
        first = await ws.receive_json(timeout=30)
        assert first == {"type": "stdout", "data": "first\n"}
        # The first item arrives before the run ends: the next message is the rest.
        items = [first]
        while items[-1]["type"] != "finished":
            items.append(await ws.receive_json(timeout=30))
        assert "last\n" in [i["data"] for i in items if i["type"] == "stdout"]
        await ws.send_json({"mode": "query", "code": "x = input('q')\nprint('got', x)"})
        items = []
        while not items or items[-1]["type"] != "waiting-input":
            items.append(await ws.receive_json(timeout=30))
        await ws.send_json({"mode": "input", "code": "zed"})
        items = []
        while not items or items[-1]["type"] != "finished":
            items.append(await ws.receive_json(timeout=30))
        assert "got zed\n" in [i["data"] for i in items if i["type"] == "stdout"]


async def test_kernel_terminated_event_settles_books(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api)
    await run(api, kid, "import os\nos._exit(3)")
    for _ in range(100):
        status, _ = await api.json("GET", f"/v2/kernel/{kid}")
        if status == 404:
            break
        await asyncio.sleep(0.1)
    assert status == 404
    kp = await gateway.app[K.KEYPAIRS].update(api.keypair.access_key)
    assert kp is not None and kp.concurrency_used == 0


async def test_batch_and_compat_continue(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api)
    async with await upload(api, kid, [("main.py", b"print('batch ran')")]) as r:
        assert r.status == 204
    r = await run(api, kid, "", "batch", options={"build": "", "exec": "python3 main.py"})
    out = stdout(r)
    while r["status"] == "continued":
        r = await run(api, kid, "", "continue", runId=r["runId"])
        out += stdout(r)
    assert r["status"] == "finished" and "batch ran" in out, r
    # Compatibility: an empty query while a run is pending means continue.
    r = await run(api, kid, "import time\nprint('a', flush=True)\ntime.sleep(1.2)\nprint('b')")
    assert r["status"] == "continued"
    out = stdout(r)
    while r["status"] == "continued":
        r = await run(api, kid, "")
        out += stdout(r)
    assert out == "a\nb\n" and r["status"] == "finished"


async def test_startup_grace_is_503(start_gateway, settings) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    graceful = dataclasses.replace(
        settings, timings=dataclasses.replace(settings.timings, startup_grace_s=60.0)
    )
    gw = await start_gateway(graceful)
    api = await gw.api()
    body = {"lang": "python3", "clientSessionToken": "tok-1"}
    # No agent has heartbeated yet: during the grace period that is "not yet", not "never".
    status, problem = await api.json("POST", "/v2/kernel/create", body)
    assert status == 503 and problem["type"] == PROB + "service-unavailable"
    gw2 = await start_gateway()
    status, problem = await gw2.admin.with_keypair(api.keypair).json(
        "POST", "/v2/kernel/create", body
    )
    assert status == 404 and problem["type"] == PROB + "unsupported-lang"


async def test_live_stats_and_final_usage(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api)
    await run(api, kid, "blob = bytearray(8 << 20)\nsum(range(2_000_000))")
    for _ in range(100):
        status, info = await api.json("GET", f"/v2/kernel/{kid}")
        if info["memoryUsed"] > 0:
            break
        await asyncio.sleep(0.1)
    assert info["memoryUsed"] > 0  # from kernel_stats events
    status, body = await api.json("DELETE", f"/v2/kernel/{kid}")
    assert status == 200
    row = await gateway.app[K.DB].fetchrow(  # type: ignore[attr-defined]
        "SELECT max_mem_kib, stats FROM kernels WHERE id = $1::uuid", kid
    )
    assert row["max_mem_kib"] > 0 and row["stats"] == body["stats"]


async def test_the_upload_cap_is_the_gateways_one_setting(
    start_gateway: Any, settings: Any, agent: Agent
) -> None:
    # One setting caps an upload (limits.upload_max_file_bytes), enforced by the gateway: a
    # cap raised there holds end to end, and past it the answer is 413, never an agent's 500.
    cap = 3 << 20
    limits = dataclasses.replace(settings.limits, upload_max_file_bytes=cap)
    gateway = await start_gateway(dataclasses.replace(settings, limits=limits))
    api = await gateway.api()
    kid = await create(api)
    async with await upload(api, kid, [("at-cap.bin", b"c" * cap)]) as r:
        assert r.status == 204, await r.text()
    status, listing = await api.json("GET", f"/v2/kernel/{kid}/files")
    assert status == 200
    assert [f["size"] for f in listing["files"] if f["name"] == "at-cap.bin"] == [cap]
    async with await upload(api, kid, [("past-cap.bin", b"c" * (cap + 1))]) as r:
        assert r.status == 413
        assert (await r.json())["type"] == PROB + "payload-too-large"


async def test_shell_kernel_keeps_state_through_the_api(gateway: Gateway, agent: Agent) -> None:
    """A variable, a function and $$ survive between runs, an interrupt, and a read."""
    api = await gateway.api()
    kid = await create(api, lang="shell")
    first = await run(api, kid, "total=41\nbump() { total=$((total + 1)); }\necho $$")
    assert first["status"] == "finished", first
    r = await run(api, kid, "echo looping\nwhile true; do :; done")
    async with await api.request("POST", f"/v2/kernel/{kid}/interrupt") as resp:
        assert resp.status == 204
    for _ in range(20):
        if r["status"] == "finished":
            break
        r = await run(api, kid, "", "continue", runId=r["runId"])
    assert r["status"] == "finished"
    r = await run(api, kid, 'read -r who\nbump\necho "$total $who $$"')
    assert r["status"] == "waiting-input", r
    r = await run(api, kid, "Ada", "input", runId=r["runId"])
    assert r["status"] == "finished"
    assert stdout(r) == f"42 Ada {stdout(first).strip()}\n"


async def test_nodejs_readline_through_the_api(gateway: Gateway, agent: Agent) -> None:
    api = await gateway.api()
    kid = await create(api, lang="nodejs")
    code = (
        "const rl = require('readline').createInterface({ input: process.stdin });\n"
        "rl.on('line', (line) => { console.log(`hi ${line}`); rl.close(); });"
    )
    r = await run(api, kid, code)
    assert r["status"] == "waiting-input", r
    r = await run(api, kid, "Grace", "input", runId=r["runId"])
    assert r["status"] == "finished"
    assert stdout(r) == "hi Grace\n"
