"""Placement (PROTOCOLS section 2, ``sorna.manager.scheduler``) on real Valkey.

Agents' entries are written by the agent's own registry (``sorna.agent.registry``), except in
the check of the Lua script against the Python definition, which also writes states no agent
writes (unreadable counts, missing fields) to hold the two spellings to the same answer there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from sorna.agent.registry import Load
from sorna.agent.registry import Registry as AgentRegistry
from sorna.common.config import load_settings
from sorna.common.ids import AgentId
from sorna.common.keys import AgentField, RedisKeys
from sorna.common.types import AgentStatus
from sorna.gateway import keys as K
from sorna.gateway.testing import Gateway
from sorna.manager import cli
from sorna.manager.config import ManagerSettings, SchedulerSettings
from sorna.manager.registry import Placement, Registry
from sorna.manager.scheduler import (
    POLICIES,
    SCHEDULE_CANDIDATES,
    PolicyName,
    choose,
    free_slots,
    offers,
)

KEYS = RedisKeys()


async def put_agent(
    redis: Redis,
    agent_id: str,
    *,
    langs: tuple[str, ...] = ("python3", "shell"),
    max_kernels: int = 4,
    num_kernels: int = 0,
    alive: bool = True,
) -> None:
    """Register an agent as its process does: one heartbeat of the agent's own registry."""
    registry = AgentRegistry(
        redis=redis,
        keys=KEYS,
        agent_id=AgentId(agent_id),
        addr="tcp://127.0.0.1:6001",
        region="local",
        backend="local",
        max_kernels=max_kernels,
        interval=60.0,
        boot_id=uuid.uuid4().hex,
    )
    await registry.heartbeat(
        Load(
            num_kernels=num_kernels,
            mem_slots=1024,
            cpu_slots=2,
            used_mem_slots=0,
            used_cpu_slots=0,
            langs=langs,
        )
    )
    # Kernels the gateways placed there are counted as reserved (normal operation).
    await redis.set(KEYS.agent_reserved(AgentId(agent_id)), num_kernels)
    if not alive:
        await redis.delete(KEYS.agent_alive(AgentId(agent_id)))  # as when its TTL runs out


async def placements(reg: Registry, n: int, lang: str = "python3") -> list[str]:
    out = []
    for _ in range(n):
        got = await reg.reserve(lang)
        assert isinstance(got, Placement), got
        out.append(got.agent_id)
    return out


async def test_least_loaded_live_agent_offering_the_lang(redis: Redis) -> None:
    reg = Registry(redis, KEYS)
    await put_agent(redis, "i-busy", num_kernels=3)
    await put_agent(redis, "i-idle", num_kernels=0)
    await put_agent(redis, "i-dead", num_kernels=0, alive=False)
    await put_agent(redis, "i-node", langs=("nodejs",), num_kernels=0)
    assert await reg.reserve("cobol") is False
    # i-idle has 4 free, i-busy 1: the first three go to i-idle; at 1 each, the tie goes to
    # the greater id.
    assert await placements(reg, 5) == ["i-idle"] * 3 + ["i-idle", "i-busy"]
    assert await reg.reserve("python3") is True  # offered, but no room
    await reg.release(AgentId("i-idle"))
    assert isinstance(await reg.reserve("python3"), Placement)
    assert await reg.reserve("python3") is True


async def test_pack_fills_agents_in_turn(redis: Redis) -> None:
    reg = Registry(redis, KEYS, "pack")
    await put_agent(redis, "i-b", max_kernels=3)
    await put_agent(redis, "i-a", max_kernels=3)
    await put_agent(redis, "i-c", max_kernels=3, num_kernels=1)
    await put_agent(redis, "i-dead", max_kernels=3, num_kernels=2, alive=False)
    await put_agent(redis, "i-node", langs=("nodejs",), max_kernels=3, num_kernels=2)
    # The started agent first (fewest free slots), then the idle ones by id, each until full.
    assert await placements(reg, 8) == ["i-c"] * 2 + ["i-a"] * 3 + ["i-b"] * 3
    assert await reg.reserve("python3") is True
    await reg.release(AgentId("i-a"))
    assert await placements(reg, 1) == ["i-a"]
    assert await reg.reserve("nodejs") == Placement(AgentId("i-node"), "tcp://127.0.0.1:6001")


async def test_unknown_policy_is_refused(redis: Redis) -> None:
    with pytest.raises(ValueError, match="unknown placement policy 'random'"):
        Registry(redis, KEYS, "random")  # type: ignore[arg-type]


def test_policy_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_settings(ManagerSettings, env={}).scheduler.policy == "least-loaded"
    env = {"SORNA_SCHEDULER_POLICY": "pack"}
    assert load_settings(ManagerSettings, env=env).scheduler.policy == "pack"
    monkeypatch.setenv("SORNA_SCHEDULER_POLICY", "random")
    assert cli.main(["keypair", "list"]) == 2
    assert capsys.readouterr().err == (
        "sorna-manager: scheduler.policy: must be one of 'least-loaded', 'pack', got 'random'"
        " (from environment SORNA_SCHEDULER_POLICY)\n"
    )


async def test_lost_agent_is_not_chosen(redis: Redis) -> None:
    reg = Registry(redis, KEYS)
    await put_agent(redis, "i-a")
    assert await reg.mark_lost(AgentId("i-a"))
    assert not await reg.mark_lost(AgentId("i-a"))
    assert await reg.reserve("python3") is False
    assert await reg.take_back(AgentId("i-a"))
    assert isinstance(await reg.reserve("python3"), Placement)


@pytest.mark.parametrize("policy", POLICIES)
async def test_concurrent_reservations_never_over_commit(
    redis: Redis, redis_url: str, policy: PolicyName
) -> None:
    for i in range(3):
        await put_agent(redis, f"i-{i}", max_kernels=5, num_kernels=i)
    # Two registries on separate connections stand for two gateways.
    other = Redis.from_url(redis_url)
    try:
        regs = [Registry(redis, KEYS, policy), Registry(other, KEYS, policy)]
        results = await asyncio.gather(*(regs[i % 2].reserve("python3") for i in range(50)))
    finally:
        await other.aclose()
    placed = [r for r in results if isinstance(r, Placement)]
    assert len(placed) == 12 and results.count(True) == 38
    for i in range(3):
        assert sum(1 for p in placed if p.agent_id == f"i-{i}") == 5 - i
        assert int(await redis.get(KEYS.agent_reserved(AgentId(f"i-{i}"))) or 0) == 5


# ------------------------------------------------------------------ Lua against Python

_IDS = (
    *("i-a", "i-b", "i-aa", "I-b", "i-é", "i-z", "i-0", "i-9", "j", "i-bb", "i-ä", "k-1"),
    *(f"h-{n}" for n in range(8)),
)
_COUNTS = (None, "0", "1", "2", "3", "4", "5", "6", "-1", "-0", "007", "", "x", "2.5", " 3")
_COUNTS_RARE = ("1e2", "9" * 15, "9" * 16, "+3", "0x5", "٣")
_LANGS = (None, "", "python3", "python3,shell", "shell", ",python3,", "python3x", "nodejs,python3")


def _count(rng: random.Random) -> str | None:
    return rng.choice(_COUNTS_RARE) if rng.random() < 0.1 else rng.choice(_COUNTS)


@dataclasses.dataclass
class _State:
    """One agent as placement sees it; ``fields`` None: in the agents set but no hash."""

    agent_id: AgentId
    fields: dict[str, str] | None
    alive: bool
    lost: bool
    reserved: int | None

    def free(self, lang: str) -> int | None:
        fields = self.fields or {}
        if not offers(fields, lang):
            return None
        return free_slots(fields, alive=self.alive, lost=self.lost, reserved=self.reserved or 0)


def _random_states(rng: random.Random) -> list[_State]:
    """Agents of one round: each well-formed (as agents write it) or, at the round's rate, in
    any state at all."""
    odd = rng.choice((0.05, 0.3, 0.7, 1.0))
    states = []
    for agent_id in rng.sample(_IDS, rng.randint(1, len(_IDS))):
        if rng.random() >= odd:
            fields: dict[str, str] | None = {
                AgentField.ID: agent_id,
                AgentField.ADDR: f"tcp://127.0.0.1:{rng.randint(1, 65535)}",
                AgentField.STATUS: AgentStatus.ALIVE,
                AgentField.LANGS: rng.choice(("python3", "python3,shell", "shell,python3")),
                AgentField.MAX_KERNELS: str(cap := rng.randint(0, 8)),
                AgentField.NUM_KERNELS: str(rng.randint(0, cap) // rng.choice((1, 4))),
            }
            reserved = rng.randint(0, cap) // rng.choice((1, 4))
            states.append(_State(AgentId(agent_id), fields, True, False, reserved))
            continue
        fields = None
        if rng.random() > 0.05:
            picks: dict[str, str | None] = {
                AgentField.ID: agent_id,
                AgentField.ADDR: rng.choice((None, "", "tcp://127.0.0.1:7000", "tcp://[::1]:1")),
                AgentField.STATUS: rng.choice((None, "alive", "alive", "lost", "terminated", "?")),
                AgentField.LANGS: rng.choice(_LANGS),
                AgentField.MAX_KERNELS: _count(rng),
                AgentField.NUM_KERNELS: _count(rng),
            }
            fields = {k: v for k, v in picks.items() if v is not None}
        states.append(
            _State(
                agent_id=AgentId(agent_id),
                fields=fields,
                alive=rng.random() < 0.85,
                lost=rng.random() < 0.1,
                reserved=rng.choice((None, 0, 1, 2, 3, 5, 7)),
            )
        )
    return states


async def _write(redis: Redis, states: list[_State]) -> None:
    await redis.flushdb()
    for s in states:
        if s.fields:
            await redis.hset(KEYS.agent(s.agent_id), mapping=s.fields)  # type: ignore[arg-type]
        if s.alive:
            await redis.set(KEYS.agent_alive(s.agent_id), b"1")
        if s.lost:
            await redis.set(KEYS.agent_lost(s.agent_id), b"1")
        if s.reserved is not None:
            await redis.set(KEYS.agent_reserved(s.agent_id), s.reserved)
        await redis.sadd(KEYS.agents(), s.agent_id)


async def test_the_lua_script_agrees_with_the_python_definition(redis: Redis) -> None:
    """Over many agent states, both policies, from an empty index (the script scans every agent)
    and from one just rewritten by ``refresh_index`` (it reads the index's first candidates),
    the script reserves on the agent :func:`choose` names, and scores the index entries it
    visits with :func:`free_slots`."""
    rng = random.Random(20261201)
    lang = "python3"
    seen = {"placed": 0, "full": 0, "none": 0, "over_candidates": 0}
    for _ in range(150):
        states = _random_states(rng)
        free = {s.agent_id: f for s in states if (f := s.free(lang)) is not None}
        seen["over_candidates"] += sum(n >= 1 for n in free.values()) > SCHEDULE_CANDIDATES
        for policy in POLICIES:
            expected = choose(policy, free)
            for from_index in (False, True):
                await _write(redis, states)
                reg = Registry(redis, KEYS, policy)
                if from_index:
                    await reg.refresh_index(await reg.agents())
                got = await reg.reserve(lang)
                where = f"{policy}, from index: {from_index}, states: {states}"
                if expected is None:
                    assert got is bool(free), where
                    seen["full" if free else "none"] += 1
                    continue
                seen["placed"] += 1
                assert got == Placement(expected, _addr_of(states, expected)), where
                reserved = next(s.reserved or 0 for s in states if s.agent_id == expected)
                assert await redis.get(KEYS.agent_reserved(expected)) == b"%d" % (reserved + 1)
                if not from_index:
                    index = await redis.zrange(KEYS.schedule_index(lang), 0, -1, withscores=True)
                    want = {a: n - (a == expected) for a, n in free.items()}
                    assert {AgentId(a.decode()): s for a, s in index} == want, where
    # The states cover every outcome, and more open agents than the candidates read.
    assert min(seen.values()) >= 10, seen


def _addr_of(states: list[_State], agent_id: AgentId) -> str:
    """The address of ``agent_id`` in ``states``."""
    fields = next(s.fields for s in states if s.agent_id == agent_id)
    assert fields is not None
    return fields[AgentField.ADDR]


# ------------------------------------------------------------------ through the gateway


@pytest.mark.parametrize("policy", POLICIES)
async def test_gateway_places_kernels_by_its_policy(
    start_gateway: Any, start_agent: Any, settings: ManagerSettings, policy: PolicyName
) -> None:
    """Two real agents, two slots each: ``pack`` fills the first before using the second,
    ``least-loaded`` spreads the kernels."""
    prefix = f"gw-sched-{uuid.uuid4().hex[:6]}"
    first, second = f"{prefix}-a", f"{prefix}-b"
    for agent_id in (first, second):
        await start_agent(agent_id=agent_id, max_kernels=2)
    gw: Gateway = await start_gateway(
        dataclasses.replace(settings, scheduler=SchedulerSettings(policy=policy))
    )
    api = await gw.api()
    registry = gw.app[K.REGISTRY]
    agents = {a.agent_id: a for a in await registry.agents()}
    assert agents[AgentId(first)].fields[AgentField.STATUS] == AgentStatus.ALIVE
    assert agents[AgentId(second)].alive
    placed = []
    for i in range(3):
        status, body = await api.json(
            "POST", "/v2/kernel/create", {"lang": "python3", "clientSessionToken": f"tok-{i}"}
        )
        assert status == 201, body
        route = await registry.kernel(body["kernelId"])
        assert route is not None
        placed.append(route["agent"])
    if policy == "pack":
        assert placed == [first, first, second]
    else:
        assert placed == [second, first, second]
