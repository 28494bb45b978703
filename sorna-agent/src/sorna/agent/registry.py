"""The agent's entry in the Redis registry and its events (PROTOCOLS.md section 2)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from sorna.common.events import EventPublisher
from sorna.common.ids import AgentId
from sorna.common.keys import RedisKeys
from sorna.common.types import AgentStatus
from sorna.common.wire import WireMessage

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
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._agent_id = agent_id
        self._addr = addr
        self._region = region
        self._backend = backend
        self._max_kernels = max_kernels
        self._ttl_ms = max(1, math.ceil(3 * interval * 1000))
        self._started_at = time.time()
        self._events = EventPublisher(redis=redis, keys=keys)

    async def heartbeat(self, load: Load, status: AgentStatus = AgentStatus.ALIVE) -> None:
        """Refresh the agent hash, the alive key (TTL = 3 heartbeats) and the agents set."""
        now = time.time()
        fields = {
            "id": self._agent_id,
            "addr": self._addr,
            "region": self._region,
            "backend": self._backend,
            "max_kernels": self._max_kernels,
            "num_kernels": load.num_kernels,
            "mem_slots": load.mem_slots,
            "cpu_slots": load.cpu_slots,
            "used_mem_slots": load.used_mem_slots,
            "used_cpu_slots": load.used_cpu_slots,
            "langs": ",".join(load.langs),
            "started_at": self._started_at,
            "last_heartbeat": now,
            "status": str(status),
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
