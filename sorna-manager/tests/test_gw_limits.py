"""Rate and concurrency limits, keypair admin, and scheduling errors through the API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from sorna.common.keys import RedisKeys
from sorna.gateway import keys as K
from sorna.gateway.testing import Gateway

PROB = "https://api.sorna.io/probs/"
KEYS = RedisKeys()


async def put_agent(
    redis: Redis,
    agent_id: str,
    *,
    langs: str = "python3",
    aliases: str = "py=python3,py3=python3,python=python3",
    max_kernels: int = 4,
    alive: bool = True,
    addr: str = "tcp://127.0.0.1:0",  # no agent is ever called there
) -> None:
    """Register an agent the way PROTOCOLS section 2 says an agent does."""
    await redis.hset(
        KEYS.agent(agent_id),  # type: ignore[arg-type]
        mapping={
            "id": agent_id,
            "addr": addr,
            "region": "local",
            "backend": "local",
            "max_kernels": max_kernels,
            "num_kernels": 0,
            "mem_slots": 4,
            "cpu_slots": 4,
            "used_mem_slots": 0,
            "used_cpu_slots": 0,
            "langs": langs,
            "aliases": aliases,
            "started_at": time.time(),
            "last_heartbeat": time.time(),
            "status": "alive",
        },
    )
    if alive:
        await redis.set(KEYS.agent_alive(agent_id), b"1", px=60_000)  # type: ignore[arg-type]
    await redis.sadd(KEYS.agents(), agent_id)


async def test_rate_limit_n_plus_one_is_429(gateway: Gateway) -> None:
    api = await gateway.api(rate_limit=3)
    for i in range(3):
        async with await api.request("GET", "/v2/authorize") as r:
            assert r.status == 200
            assert r.headers["X-RateLimit-Remaining"] == str(2 - i)
    async with await api.request("GET", "/v2/authorize") as r:
        assert r.status == 429
        assert (await r.json())["type"] == PROB + "rate-limit-exceeded"
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert r.headers["X-RateLimit-Window"] == "900"
    other = await gateway.api(rate_limit=3)
    assert (await other.json("GET", "/v2/authorize"))[0] == 200


async def test_quota_exceeded_412(gateway: Gateway, redis: Redis) -> None:
    # An agent offers the language: without one the gateway cannot tell it is one (404).
    await put_agent(redis, "i-one")
    api = await gateway.api(concurrency_limit=0)
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": "tok-1"}
    )
    assert status == 412 and body["type"] == PROB + "quota-exceeded"


async def test_unsupported_lang_and_no_room(gateway: Gateway, redis: Redis) -> None:
    api = await gateway.api()
    create = {"lang": "python3", "clientSessionToken": "tok-1"}
    status, body = await api.json("POST", "/v2/kernel/create", create)
    assert status == 404 and body["type"] == PROB + "unsupported-lang"
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "cobol", "clientSessionToken": "tok-1"}
    )
    assert status == 404 and body["type"] == PROB + "unsupported-lang"
    await put_agent(redis, "i-full", max_kernels=0)
    status, body = await api.json("POST", "/v2/kernel/create", create)
    assert status == 503 and body["type"] == PROB + "instance-not-available"
    # Nothing was counted for the failed creations.
    kp = await gateway.app[K.KEYPAIRS].update(api.keypair.access_key)
    assert kp is not None and kp.concurrency_used == 0


async def test_languages_and_aliases_come_from_the_agents(gateway: Gateway, redis: Redis) -> None:
    """The gateway resolves names against the live agents' entries alone: an alias an agent
    publishes works, an unknown name lists what is served, and a language an agent knows (a
    kernel folder) but has no image of says how to build it."""
    api = await gateway.api()
    await put_agent(redis, "i-one", langs="python3", aliases="snek=python3", max_kernels=0)
    await redis.hset(KEYS.agent("i-one"), "unbuilt_langs", "nodejs")  # type: ignore[arg-type]
    # "snek" is nobody's alias but this agent's: it resolves (and the agent is full: 503).
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "SNEK", "clientSessionToken": "tok-1"}
    )
    assert status == 503 and body["type"] == PROB + "instance-not-available", body
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "cobol", "clientSessionToken": "tok-1"}
    )
    assert status == 404 and body["type"] == PROB + "unsupported-lang"
    assert body["languages"] == ["python3"]
    assert "unknown language 'cobol'" in body["detail"] and "python3" in body["detail"]
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "nodejs", "clientSessionToken": "tok-1"}
    )
    assert status == 404 and body["type"] == PROB + "unsupported-lang"
    assert "make image LANG=nodejs" in body["detail"]
    assert "python -m sorna.repl.imagebuild nodejs" in body["detail"]
    # A dead agent's entry offers nothing.
    await redis.delete(KEYS.agent_alive("i-one"))  # type: ignore[arg-type]
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "snek", "clientSessionToken": "tok-1"}
    )
    assert status == 404 and body["languages"] == []


async def test_an_unknown_language_is_404_even_while_the_registry_is_rebuilt(
    gateway: Gateway, redis: Redis
) -> None:
    """In the start-up grace period a language may yet arrive with an agent's heartbeat (503),
    but a name that no registered agent knows is bad input: 404 at once."""
    import dataclasses

    from sorna.manager.config import ManagerTimings

    kernels = gateway.app[K.KERNELS]
    kernels.settings = dataclasses.replace(
        kernels.settings, timings=ManagerTimings(startup_grace_s=3600.0)
    )
    api = await gateway.api()
    create = {"lang": "cobol", "clientSessionToken": "tok-1"}
    status, body = await api.json("POST", "/v2/kernel/create", create)
    assert status == 503 and body["type"] == PROB + "service-unavailable", body  # no agent yet
    await put_agent(redis, "i-one", langs="python3", max_kernels=1)
    await redis.hset(KEYS.agent("i-one"), "unbuilt_langs", "nodejs")  # type: ignore[arg-type]
    status, body = await api.json("POST", "/v2/kernel/create", create)
    assert status == 404 and body["type"] == PROB + "unsupported-lang", body
    # A language an agent knows but cannot serve may still come with another agent.
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "nodejs", "clientSessionToken": "tok-1"}
    )
    assert status == 503 and body["type"] == PROB + "service-unavailable", body


@pytest.fixture
def mute_address() -> Iterator[str]:
    """A loopback address that accepts connections and never answers (on a free port)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"


async def test_creation_failure_releases_reservation(
    gateway: Gateway, redis: Redis, mute_address: str
) -> None:
    # An agent whose RPC address answers nothing: the call times out -> 503, slot released.
    import dataclasses

    from sorna.manager.config import ManagerTimings

    settings = dataclasses.replace(
        gateway.app[K.SETTINGS],
        timings=ManagerTimings(startup_grace_s=0.0, create_timeout_s=0.5, liveness_interval_s=5),
    )
    gateway.app[K.KERNELS].settings = settings
    await put_agent(redis, "i-mute", max_kernels=1, addr=mute_address)
    api = await gateway.api()
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "python", "clientSessionToken": "tok-1"}
    )
    assert status == 503 and body["type"] == PROB + "instance-not-available", body
    assert int(await redis.get(KEYS.agent_reserved("i-mute")) or 0) == 0  # type: ignore[arg-type]
    kp = await gateway.app[K.KEYPAIRS].update(api.keypair.access_key)
    assert kp is not None and kp.concurrency_used == 0
    assert await redis.keys(KEYS.session(api.keypair.access_key, "python3", "*")) == []


async def test_invalid_params(gateway: Gateway) -> None:
    api = await gateway.api()
    for body in (
        {"lang": "python3"},
        {"lang": "python3", "clientSessionToken": "x"},
        {"lang": "python3", "clientSessionToken": "bad token!"},
        {"lang": 3, "clientSessionToken": "tok-1"},
        {"lang": "python3", "clientSessionToken": "tok-1", "limits": {"maxMem": "lots"}},
    ):
        status, problem = await api.json("POST", "/v2/kernel/create", body)
        assert status == 400 and problem["type"] == PROB + "invalid-api-params", body
    headers = api.headers("POST", "/v2/kernel/create", b"{nope")
    async with api.session.post(
        api.server.make_url("/v2/kernel/create"), data=b"{nope", headers=headers
    ) as r:
        assert r.status == 400
        assert (await r.json())["type"] == PROB + "invalid-api-params"


async def test_unknown_kernel_404(gateway: Gateway) -> None:
    api = await gateway.api()
    kid = "6c4a1a4e-0000-4000-8000-000000000001"
    for method, path, body in (
        ("GET", f"/v2/kernel/{kid}", None),
        ("DELETE", f"/v2/kernel/{kid}", None),
        ("PATCH", f"/v2/kernel/{kid}", None),
        ("POST", f"/v2/kernel/{kid}", {"mode": "query", "code": "1"}),
        ("POST", f"/v2/kernel/{kid}/interrupt", None),
        ("POST", f"/v2/kernel/{kid}/complete", {"code": "pri"}),
        ("GET", f"/v2/kernel/{kid}/files", None),
        ("GET", f"/v2/kernel/{kid}/download?file=a.txt", None),
        ("GET", "/v2/kernel/not-a-uuid", None),
    ):
        status, problem = await api.json(method, path, body)
        assert status == 404 and problem["type"] == PROB + "kernel-not-found", (method, path)


async def test_admin_keypairs(gateway: Gateway) -> None:
    admin = gateway.admin
    status, created = await admin.json(
        "POST", "/v2/admin/keypairs", {"concurrencyLimit": 2, "rateLimit": 7}
    )
    assert status == 201
    assert created["accessKey"].startswith("AKIA") and len(created["accessKey"]) == 20
    assert len(created["secretKey"]) == 40
    assert (created["concurrencyLimit"], created["rateLimit"], created["isAdmin"]) == (2, 7, False)
    status, listing = await admin.json("GET", "/v2/admin/keypairs")
    assert status == 200
    assert created["accessKey"] in {k["accessKey"] for k in listing["keypairs"]}
    assert all("secretKey" not in k for k in listing["keypairs"])
    ak = created["accessKey"]
    status, changed = await admin.json("PATCH", f"/v2/admin/keypairs/{ak}", {"rateLimit": 9})
    assert status == 200 and changed["rateLimit"] == 9
    status, gone = await admin.json("DELETE", f"/v2/admin/keypairs/{ak}")
    assert status == 200 and gone["isActive"] is False
    status, problem = await admin.json("DELETE", "/v2/admin/keypairs/AKIANOPE")
    assert status == 404 and problem["type"] == PROB + "not-found"
    user = await gateway.api()
    for method, path in (
        ("GET", "/v2/admin/keypairs"),
        ("POST", "/v2/admin/keypairs"),
        ("GET", "/v2/admin/agents"),
        ("GET", "/v2/admin/kernels"),
        ("DELETE", f"/v2/admin/keypairs/{ak}"),
    ):
        status, problem = await user.json(method, path)
        assert status == 403 and problem["type"] == PROB + "forbidden", path


async def test_admin_agents_and_kernels(gateway: Gateway, redis: Redis) -> None:
    await put_agent(redis, "i-one")
    status, body = await gateway.admin.json("GET", "/v2/admin/agents")
    assert status == 200
    (agent,) = body["agents"]
    assert agent["id"] == "i-one" and agent["alive"] is True and agent["langs"] == "python3"
    status, body = await gateway.admin.json("GET", "/v2/admin/kernels")
    assert status == 200 and body == {"kernels": []}


async def test_payload_too_large(start_gateway, settings) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    small = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, max_body_bytes=1000)
    )
    gw = await start_gateway(small)
    api = await gw.api()
    big = {"echo": "x" * 2000}
    status, problem = await api.json("GET", "/v2/authorize", big)
    assert status == 413 and problem["type"] == PROB + "payload-too-large"


async def test_metrics(gateway: Gateway) -> None:
    api = await gateway.api()
    await api.json("GET", "/v2/authorize")
    async with api.session.get(api.server.make_url("/metrics")) as r:
        assert r.status == 200
        text = await r.text()
    assert 'sorna_http_requests_total{method="GET",route="/v2/authorize",status="200"} 1' in text
    assert "sorna_http_request_duration_seconds_bucket" in text
    assert "sorna_live_kernels 0" in text and "sorna_live_agents 0" in text
    await asyncio.sleep(0)
