"""Scheduling per PROTOCOLS section 2 against registry entries written into Redis."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from sorna.common.ids import AgentId
from sorna.common.keys import RedisKeys
from sorna.manager.registry import Placement, Registry

KEYS = RedisKeys()


async def put_agent(
    redis: Redis,
    agent_id: str,
    *,
    langs: str = "python3,shell",
    max_kernels: int = 4,
    num_kernels: int = 0,
    alive: bool = True,
) -> None:
    await redis.hset(
        KEYS.agent(AgentId(agent_id)),
        mapping={
            "id": agent_id,
            "addr": f"tcp://10.0.0.1:{6001}",
            "max_kernels": max_kernels,
            "num_kernels": num_kernels,
            "langs": langs,
            "last_heartbeat": time.time(),
            "status": "alive",
        },
    )
    # Kernels the gateways placed there are counted as reserved (normal operation).
    await redis.set(KEYS.agent_reserved(AgentId(agent_id)), num_kernels)
    if alive:
        await redis.set(KEYS.agent_alive(AgentId(agent_id)), b"1", px=60_000)
    await redis.sadd(KEYS.agents(), agent_id)


async def test_least_loaded_live_agent_offering_the_lang(redis: Redis) -> None:
    reg = Registry(redis, KEYS)
    await put_agent(redis, "i-busy", num_kernels=3)
    await put_agent(redis, "i-idle", num_kernels=0)
    await put_agent(redis, "i-dead", num_kernels=0, alive=False)
    await put_agent(redis, "i-node", langs="nodejs", num_kernels=0)
    assert await reg.reserve("cobol") is False
    chosen = []
    for _ in range(5):
        got = await reg.reserve("python3")
        assert isinstance(got, Placement)
        chosen.append(got.agent_id)
    # i-idle has 4 free, i-busy 1: the first three go to i-idle, then one each.
    assert chosen[:3] == ["i-idle"] * 3
    assert sorted(chosen[3:]) == ["i-busy", "i-idle"]
    assert await reg.reserve("python3") is True  # offered, but no room
    await reg.release(AgentId("i-idle"))
    assert isinstance(await reg.reserve("python3"), Placement)
    assert await reg.reserve("python3") is True


async def test_lost_agent_is_not_chosen(redis: Redis) -> None:
    reg = Registry(redis, KEYS)
    await put_agent(redis, "i-a")
    assert await reg.mark_lost(AgentId("i-a"))
    assert not await reg.mark_lost(AgentId("i-a"))
    assert await reg.reserve("python3") is False
    assert await reg.take_back(AgentId("i-a"))
    assert isinstance(await reg.reserve("python3"), Placement)


async def test_concurrent_reservations_never_over_commit(redis: Redis, redis_url: str) -> None:
    for i in range(3):
        await put_agent(redis, f"i-{i}", max_kernels=5)
    # Two registries on separate connections stand for two gateways.
    other = Redis.from_url(redis_url)
    try:
        regs = [Registry(redis, KEYS), Registry(other, KEYS)]
        results = await asyncio.gather(*(regs[i % 2].reserve("python3") for i in range(50)))
    finally:
        await other.aclose()
    placed = [r for r in results if isinstance(r, Placement)]
    assert len(placed) == 15
    for i in range(3):
        assert sum(1 for p in placed if p.agent_id == f"i-{i}") == 5
        assert int(await redis.get(KEYS.agent_reserved(AgentId(f"i-{i}"))) or 0) == 5
