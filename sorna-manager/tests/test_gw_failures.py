"""Failures: two gateways, an agent killed mid-run, Redis flushed, PostgreSQL stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from sorna.agent.agent import Agent
from sorna.common.config import DatabaseSettings
from sorna.common.servers import PostgresServer
from sorna.gateway import keys as K
from sorna.gateway.testing import (
    API,
    AgentProcesses,
    Gateway,
    agent_env,
    until,
)
from sorna.manager.config import ManagerSettings

PROB = "https://api.sorna.io/probs/"


async def create(api: API, token: str) -> tuple[int, dict[str, object]]:
    return await api.json(
        "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": token}
    )


async def test_two_gateways_share_kernels_and_never_over_commit(
    start_gateway,
    start_agent,  # type: ignore[no-untyped-def]
) -> None:
    agent: Agent = await start_agent(max_kernels=5)
    gw1: Gateway = await start_gateway()
    gw2: Gateway = await start_gateway()
    kp = await gw1.keypair(concurrency_limit=100)
    a1, a2 = gw1.admin.with_keypair(kp), gw2.admin.with_keypair(kp)
    status, body = await create(a1, "shared")
    assert status == 201
    kid = body["kernelId"]
    status, r = await a2.json("POST", f"/v2/kernel/{kid}", {"mode": "query", "code": "print(7)"})
    assert status == 200 and r["result"]["console"] == [["stdout", "7\n"]]
    status, again = await create(a2, "shared")
    assert again == {"kernelId": kid, "created": False}

    results = await asyncio.gather(*(create((a1, a2)[i % 2], f"tok-{i:02d}") for i in range(50)))
    ok = [b for s, b in results if s == 201]
    refused = [b for s, b in results if s != 201]
    assert len(ok) == 4  # five slots, one taken by "shared"
    assert all(b["type"] == PROB + "instance-not-available" for b in refused)
    assert len(agent.kernel_ids) == 5
    row = await gw1.app[K.KEYPAIRS].update(kp.access_key)
    assert row is not None and row.concurrency_used == 5


# ------------------------------------------------------------------ agent killed


@pytest.fixture
def agent_process(redis_url: str, scratch_root: Path) -> Iterator[object]:
    """``start()`` agent processes that share one id, address and scratch root."""
    env = agent_env(agent_id="gw-killable", scratch_root=scratch_root, redis_url=redis_url)
    agents = AgentProcesses(env, scratch_root)
    try:
        yield agents.start
    finally:
        agents.close()


@pytest.mark.slow
async def test_agent_killed_mid_run(  # type: ignore[no-untyped-def]
    start_gateway, settings: ManagerSettings, agent_process, redis: Redis
) -> None:
    from sorna.common.keys import RedisKeys

    # RPC deadlines far beyond the test's own hang guard: the waiting request can only end
    # because the liveness sweep declared the agent lost (bench/deadlines.py times it).
    patient = dataclasses.replace(settings.timings, rpc_timeout_s=3600.0, execute_timeout_s=3600.0)
    gateway: Gateway = await start_gateway(dataclasses.replace(settings, timings=patient))
    keys = RedisKeys()
    proc = agent_process()

    async def agent_alive() -> bool:
        return bool(await redis.exists(keys.agent_alive("gw-killable")))  # type: ignore[arg-type]

    await until(agent_alive)
    api = await gateway.api()
    status, body = await create(api, "doomed")
    assert status == 201, body
    kid = body["kernelId"]
    assert (await api.json("POST", f"/v2/kernel/{kid}", {"code": "x = 1"}))[0] == 200

    async def long_run() -> tuple[int, object]:
        # A run that keeps the RPC busy (the agent answers `continued` every flush; keep going).
        status, r = await api.json(
            "POST", f"/v2/kernel/{kid}", {"code": "import time\ntime.sleep(60)"}
        )
        while status == 200 and r["result"]["status"] == "continued":
            status, r = await api.json(
                "POST",
                f"/v2/kernel/{kid}",
                {"mode": "continue", "code": "", "runId": r["result"]["runId"]},
            )
        return status, r

    waiting = asyncio.create_task(long_run())
    await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status, problem = await asyncio.wait_for(waiting, 120)  # a hang guard only
    assert (status, problem["type"]) in {
        (503, PROB + "instance-not-available"),
        (404, PROB + "kernel-not-found"),
    }, problem
    # In that order: the agent was declared lost, then the request was answered.
    assert await redis.exists(keys.agent_lost("gw-killable"))  # type: ignore[arg-type]

    async def settled() -> bool:
        kp = await gateway.app[K.KEYPAIRS].update(api.keypair.access_key)
        return kp is not None and kp.concurrency_used == 0

    await until(settled)
    row = await gateway.app[K.DB].fetchrow(  # type: ignore[attr-defined]
        "SELECT status, termination_reason FROM kernels WHERE id = $1::uuid", kid
    )
    assert (row["status"], row["termination_reason"]) == ("terminated", "agent-lost")
    status, problem = await api.json("GET", f"/v2/kernel/{kid}")
    assert status == 404

    # A restarted agent (same id) is taken back and serves new kernels.
    agent_process()

    async def taken_back() -> bool:
        return bool(await agent_alive()) and not await redis.exists(keys.agent_lost("gw-killable"))  # type: ignore[arg-type]

    await until(taken_back)
    status, body = await create(api, "reborn")
    assert status == 201, body
    status, r = await api.json("POST", f"/v2/kernel/{body['kernelId']}", {"code": "print(2)"})
    assert status == 200 and r["result"]["console"] == [["stdout", "2\n"]]


# ------------------------------------------------------------------ Redis flushed


async def test_redis_flushed_recovers(gateway: Gateway, agent: Agent, redis: Redis) -> None:
    api = await gateway.api()
    status, body = await create(api, "survivor")
    assert status == 201
    kid = body["kernelId"]
    await redis.flushall()
    # Routing comes back from the books; the registry from the next heartbeats.
    status, r = await api.json("POST", f"/v2/kernel/{kid}", {"code": "print('still')"})
    assert status == 200, r
    assert r["result"]["console"] == [["stdout", "still\n"]]

    async def creatable() -> bool:
        status, _ = await create(api, "after-flush")
        return status == 201

    await until(creatable, within=60.0)  # back with the next heartbeats (a hang guard)
    status, again = await create(api, "survivor")
    assert again == {"kernelId": kid, "created": False}
    # The event stream's consumer group is recreated: kernel_terminated still settles kernels.
    assert (await api.json("DELETE", f"/v2/kernel/{kid}"))[0] == 200


# ------------------------------------------------------------------ PostgreSQL stopped


@pytest.mark.slow
async def test_postgres_stopped_gives_503_then_recovers(  # type: ignore[no-untyped-def]
    start_gateway, settings: ManagerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A data folder PostgreSQL's unprivileged user can reach (pytest's tmp_path is 0700).
    data = Path(tempfile.mkdtemp(prefix="gw-pg-", dir="/tmp"))
    os.chmod(data, 0o755)
    pg = PostgresServer(data_dir=data)
    await asyncio.to_thread(pg.start)
    try:
        own = dataclasses.replace(settings, db=DatabaseSettings(url=pg.url(), pool_size=2))
        gw: Gateway = await start_gateway(own)
        api = await gw.api()
        assert (await api.json("GET", "/v2/authorize"))[0] == 200
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(own.auth.cache_ttl_s + 0.1)  # let the cached keypair expire
        for _ in range(3):
            status, problem = await api.json("GET", "/v2/authorize")
            assert status == 503, problem
            assert problem["type"] == PROB + "service-unavailable"
        async with api.session.get(api.server.make_url("/v2")) as r:
            assert r.status == 200  # the gateway itself is fine
        # The same server comes back on the same port: service resumes without a restart.
        import sorna.common.servers as servers

        port = pg.port
        monkeypatch.setattr(servers, "free_port", lambda host="127.0.0.1": port)
        await asyncio.to_thread(pg.start)

        async def back() -> bool:
            return (await api.json("GET", "/v2/authorize"))[0] == 200

        await until(back, within=30)
    finally:
        if pg.running:
            await asyncio.to_thread(pg.stop)
        shutil.rmtree(data, ignore_errors=True)
