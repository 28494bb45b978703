"""The agent's entry in the Redis registry and its events (PROTOCOLS.md section 2).

Each start of an agent process has its own boot id, written in the agent hash with every
heartbeat, next to the kernels it runs: a gateway that sees the boot id change knows that the
process its calls went to is gone, at once, without waiting for the alive key to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis

from sorna.common.events import EventPublisher
from sorna.common.ids import AgentId, KernelId
from sorna.common.keys import FIELD_LIST_SEP, AgentField, RedisKeys
from sorna.common.langs import encode_aliases
from sorna.common.types import AgentStatus
from sorna.common.wire import WireMessage

from .errors import AgentIdInUse

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Load:
    """What the agent offers and what its kernels hold, for one heartbeat."""

    num_kernels: int
    mem_slots: int
    cpu_slots: int
    used_mem_slots: int
    used_cpu_slots: int
    langs: tuple[str, ...]
    kernels: tuple[KernelId, ...] = field(default_factory=tuple)
    #: Known languages without an image here, and ``{alias: language}`` of all of them.
    unbuilt_langs: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)


class Registry:
    """Write heartbeats into the agent hash and alive key; publish events."""

    def __init__(
        self,
        *,
        redis: Redis,
        keys: RedisKeys,
        agent_id: AgentId,
        addr: str,
        region: str,
        backend: str,
        max_kernels: int,
        interval: float,
        boot_id: str,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._agent_id = agent_id
        self._addr = addr
        self._region = region
        self._backend = backend
        self._max_kernels = max_kernels
        self._boot_id = boot_id
        self._interval = interval
        self._ttl_ms = max(1, math.ceil(3 * interval * 1000))
        self._started_at = time.time()
        self._events = EventPublisher(redis=redis, keys=keys)

    async def heartbeat(self, load: Load, status: AgentStatus = AgentStatus.ALIVE) -> None:
        """Refresh the agent hash, the alive key (TTL = 3 heartbeats) and the agents set."""
        now = time.time()
        f = AgentField
        fields = {
            f.ID: self._agent_id,
            f.ADDR: self._addr,
            f.REGION: self._region,
            f.BACKEND: self._backend,
            f.MAX_KERNELS: self._max_kernels,
            f.NUM_KERNELS: load.num_kernels,
            f.MEM_SLOTS: load.mem_slots,
            f.CPU_SLOTS: load.cpu_slots,
            f.USED_MEM_SLOTS: load.used_mem_slots,
            f.USED_CPU_SLOTS: load.used_cpu_slots,
            f.LANGS: FIELD_LIST_SEP.join(load.langs),
            f.UNBUILT_LANGS: FIELD_LIST_SEP.join(load.unbuilt_langs),
            f.ALIASES: encode_aliases(load.aliases),
            f.KERNELS: FIELD_LIST_SEP.join(load.kernels),
            f.BOOT_ID: self._boot_id,
            f.HEARTBEAT_INTERVAL: self._interval,
            f.STARTED_AT: self._started_at,
            f.LAST_HEARTBEAT: now,
            f.STATUS: str(status),
        }
        async with self._redis.pipeline(transaction=True) as tx:
            tx.hset(self._keys.agent(self._agent_id), mapping=fields)  # type: ignore[arg-type]
            if status == AgentStatus.ALIVE:
                tx.set(self._keys.agent_alive(self._agent_id), now, px=self._ttl_ms)
            tx.sadd(self._keys.agents(), self._agent_id)
            await tx.execute()

    async def publish(self, event: WireMessage) -> None:
        """Publish an event; a failure is logged, never raised (events are advisory here)."""
        try:
            await self._events.publish(event)
        except Exception as e:
            log.warning("publishing %s failed: %s", type(event).__name__, e)


async def claim_agent_id(
    *, redis: Redis, keys: RedisKeys, agent_id: AgentId, boot_id: str, interval: float
) -> None:
    """Make sure no other live process holds ``agent_id``; raise AgentIdInUse if one does.

    A previous process of this agent that died leaves its hash and a live alive key for up to
    three heartbeats. It is told from a live twin first by its RPC address (nothing listening
    there: it is gone), else by watching its heartbeats for two of its intervals.
    """
    hash_key = keys.agent(agent_id)
    alive_key = keys.agent_alive(agent_id)

    async def other() -> dict[str, str] | None:
        fields = await redis.hgetall(hash_key)
        if not await redis.exists(alive_key):
            return None
        got = {_s(k): _s(v) for k, v in fields.items()}
        if (
            got.get(AgentField.STATUS) != AgentStatus.ALIVE
            or got.get(AgentField.BOOT_ID, "") == boot_id
        ):
            return None
        return got

    first = await other()
    if first is None or not await _listening(first.get(AgentField.ADDR, "")):
        return
    try:
        theirs = float(first.get(AgentField.HEARTBEAT_INTERVAL) or interval)
    except ValueError:
        theirs = interval
    theirs = min(max(theirs, 0.1), 60.0)
    deadline = time.monotonic() + 2 * theirs
    while time.monotonic() < deadline:
        await asyncio.sleep(min(0.1, theirs / 4))
        now = await other()
        if now is None:
            return
        if (now.get(AgentField.BOOT_ID), now.get(AgentField.LAST_HEARTBEAT)) != (
            first.get(AgentField.BOOT_ID),
            first.get(AgentField.LAST_HEARTBEAT),
        ):
            raise AgentIdInUse(
                f"agent id {agent_id!r} is in use by a live agent at"
                f" {now.get(AgentField.ADDR, '?')}"
                " (it is still heartbeating): give this agent another agent_id, or leave"
                " agent_id empty and give it its own scratch_root"
            )
    log.info(
        "agent %s: taking over from a previous process (boot %s) that stopped heartbeating",
        agent_id,
        first.get(AgentField.BOOT_ID, "?"),
    )


async def _listening(addr: str) -> bool:
    """Whether something accepts TCP connections at an RPC address ``tcp://host:port``."""
    host, _, port = addr.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit():
        return False
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
