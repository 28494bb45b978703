"""An agent killed and restarted faster than its alive key expires: the runs in flight fail at
once with ``agent-restarted``, and the kernels the old process ran are settled."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from sorna.common.keys import RedisKeys
from sorna.common.servers import free_port
from sorna.common.testing.plugin import require_docker
from sorna.gateway import keys as K
from sorna.gateway.testing import (
    AgentProcesses,
    Gateway,
    agent_env,
    agent_settings,
    start_agent,
    until,
)
from sorna.manager.config import ManagerSettings

PROB = "https://api.sorna.io/probs/"
#: Far above the test's own waits: only the boot id path can answer in time.
RPC_TIMEOUT = 120.0

Spawn = Callable[[], "subprocess.Popen[bytes]"]


@pytest.fixture
def agent_id() -> str:
    return f"gw-reboot-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def spawn_agent(redis_url: str, scratch_root: Path, agent_id: str) -> Iterator[Spawn]:
    """Start agent processes that share one id, address and scratch root."""
    env = agent_env(
        agent_id=agent_id,
        scratch_root=scratch_root,
        redis_url=redis_url,
        # Alive for 3 x 3 s after the last heartbeat: a restart is seen by its boot id, not as
        # a lost agent. The run never reports `continued`: its one RPC stays in flight.
        SORNA_HEARTBEAT_INTERVAL="3",
        SORNA_FLUSH_INTERVAL="600",
    )
    agents = AgentProcesses(env, scratch_root)
    try:
        yield agents.start
    finally:
        agents.close()


@pytest.mark.slow
async def test_restarted_agent_fails_runs_in_flight_at_once(  # type: ignore[no-untyped-def]
    start_gateway, settings: ManagerSettings, spawn_agent, agent_id: str, redis: Redis, scratch_root
) -> None:
    timings = dataclasses.replace(
        settings.timings, rpc_timeout_s=RPC_TIMEOUT, execute_timeout_s=RPC_TIMEOUT
    )
    gw: Gateway = await start_gateway(dataclasses.replace(settings, timings=timings))
    other: Gateway = await start_gateway(dataclasses.replace(settings, timings=timings))
    keys = RedisKeys()

    async def boot() -> str:
        raw = await redis.hget(keys.agent(agent_id), "boot_id")  # type: ignore[arg-type]
        return raw.decode() if raw else ""

    first = spawn_agent()
    await until(boot)
    old_boot = await boot()
    kp = await gw.keypair()
    # One kernel per gateway, each with a run in flight: each gateway fails its own calls.
    apis = (gw.admin.with_keypair(kp), other.admin.with_keypair(kp))
    kids: list[str] = []
    for i, api in enumerate(apis):
        status, body = await api.json(
            "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": f"reboot-{i}"}
        )
        assert status == 201, body
        kids.append(body["kernelId"])
    code = "open('started', 'w').close()\nimport time\ntime.sleep(60)"
    in_flight = [
        asyncio.create_task(api.json("POST", f"/v2/kernel/{kid}", {"code": code}))
        for api, kid in zip(apis, kids, strict=True)
    ]
    markers = [scratch_root / "work" / kid / "started" for kid in kids]
    await until(lambda: asyncio.sleep(0, all(m.exists() for m in markers)))

    first.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.wait)
    spawn_agent()  # same id, same address, at once

    # Only the boot id path answers within this: the RPC timeout is 120 s, and the old
    # process's alive key lives 9 s after its last heartbeat (then it would be "lost").
    async with asyncio.timeout(60):
        answers = await asyncio.gather(*in_flight)
    for status, problem in answers:
        assert (status, problem["type"]) == (503, PROB + "agent-restarted"), problem
        assert agent_id in problem["detail"]
    new_boot = await boot()
    assert new_boot and new_boot != old_boot
    assert not await redis.exists(keys.agent_lost(agent_id))  # type: ignore[arg-type]

    async def settled() -> bool:
        row = await gw.app[K.KEYPAIRS].update(kp.access_key)
        return row is not None and row.concurrency_used == 0

    await until(settled)
    api = apis[0]
    for kid in kids:
        row = await gw.app[K.DB].fetchrow(  # type: ignore[attr-defined]
            "SELECT status, termination_reason FROM kernels WHERE id = $1::uuid", kid
        )
        assert (row["status"], row["termination_reason"]) == ("terminated", "agent-restarted")
        assert (await api.json("GET", f"/v2/kernel/{kid}"))[0] == 404
        assert not await redis.exists(keys.kernel(kid))  # type: ignore[arg-type]

    # The new process serves new kernels.
    status, body = await api.json(
        "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": "after"}
    )
    assert status == 201, body
    status, r = await api.json("POST", f"/v2/kernel/{body['kernelId']}", {"code": "print(3)"})
    assert status == 200 and r["result"]["console"] == [["stdout", "3\n"]], r


@pytest.mark.docker
async def test_kernels_kept_by_a_restarted_agent_stay(  # type: ignore[no-untyped-def]
    gateway: Gateway, redis_url: str, scratch_root: Path, redis: Redis
) -> None:
    require_docker()
    settings = agent_settings(
        redis_url=redis_url,
        scratch_root=scratch_root / "keep",
        rpc_port=free_port(),  # the restarted agent answers where the first did
        backend="docker",
        keep_kernels_on_shutdown=True,
    )
    keys = RedisKeys()
    agent = await start_agent(settings)
    try:
        api = await gateway.api()
        status, body = await api.json(
            "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": "kept"}
        )
        assert status == 201, body
        kid = body["kernelId"]
        assert (await api.json("POST", f"/v2/kernel/{kid}", {"code": "x = 41"}))[0] == 200
        await agent.close()  # its container keeps running
        agent = await start_agent(settings)
        assert agent.kernel_ids == [kid]
        boot = agent.boot_id

        async def recorded() -> bool:
            got = await redis.get(keys.agent_settled_boot(settings.agent_id))  # type: ignore[arg-type]
            return got is not None and got.decode() == boot

        await until(recorded)  # the gateway has seen the new boot and settled what was lost
        status, r = await api.json("POST", f"/v2/kernel/{kid}", {"code": "print(x + 1)"})
        assert status == 200 and r["result"]["console"] == [["stdout", "42\n"]], r
        assert (await api.json("GET", f"/v2/kernel/{kid}"))[0] == 200
        row = await gateway.app[K.KEYPAIRS].update(api.keypair.access_key)
        assert row is not None and row.concurrency_used == 1
        assert (await api.json("DELETE", f"/v2/kernel/{kid}"))[0] == 200
    finally:
        # Nothing left behind: the last agent destroys its kernels.
        agent.settings = dataclasses.replace(settings, keep_kernels_on_shutdown=False)
        await agent.close()
