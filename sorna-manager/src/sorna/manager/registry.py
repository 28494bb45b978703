"""The live state in Redis: agents (PROTOCOLS.md section 2), kernel routing and sessions.

Agents own their ``agent:{id}`` hash and ``alive`` key. Gateways own the kernel routing hashes,
the session mapping, each agent's ``reserved`` slot counter and its ``lost`` marker.
Placement (which agent a new kernel goes to, and the atomic reservation of its slot) is
:mod:`sorna.manager.scheduler`; this module keeps the slot counters and the index it reads.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from sorna.common.ids import AccessKey, AgentId, KernelId
from sorna.common.keys import FIELD_LIST_SEP, AgentField, RedisKeys
from sorna.common.langs import LanguageOffer, decode_aliases, decode_list
from sorna.manager.scheduler import (
    DEFAULT_POLICY,
    RELEASE_LUA,
    PolicyName,
    Scheduler,
    free_slots,
    offered_langs,
)
from sorna.manager.scheduler import Placement as Placement  # re-exported: callers reserve here

log = logging.getLogger(__name__)

# KEYS[1]: a key; ARGV[1]: the value it must hold to be deleted.
_DELETE_IF: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1]: a hash; ARGV: field, value, ... Set them only if the hash exists.
_HSET_IF_EXISTS: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 0
"""

# KEYS[1]: an agent's settled-boot key; ARGV[1]: the boot id it reports now.
# Record it; return the boot id recorded before ('' if none), or false if it was this one.
_ADVANCE_BOOT: Final = """
local old = redis.call('GET', KEYS[1])
if old == ARGV[1] then return false end
redis.call('SET', KEYS[1], ARGV[1])
return old or ''
"""

# KEYS[1]: a kernel hash; ARGV: now (ms), queries to add. Touch and return it, in one trip.
_TOUCH: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', KEYS[1], 'num_queries', ARGV[2]) end
return redis.call('HGETALL', KEYS[1])
"""


@dataclass(frozen=True, slots=True)
class AgentInfo:
    agent_id: AgentId
    fields: dict[str, str]
    alive: bool
    lost: bool
    reserved: int

    @property
    def boot_id(self) -> str:
        """The boot id of the agent's process ('' from an agent that does not report one)."""
        return self.fields.get(AgentField.BOOT_ID, "")

    @property
    def kernel_ids(self) -> frozenset[str]:
        """The kernels the agent's last heartbeat listed."""
        return frozenset(
            k for k in self.fields.get(AgentField.KERNELS, "").split(FIELD_LIST_SEP) if k
        )

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.fields)
        out.update(id=self.agent_id, alive=self.alive, lost=self.lost, reserved=self.reserved)
        return out


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Registry:
    """Gateway-side access to agents, kernel routing and sessions in Redis."""

    def __init__(self, redis: Redis, keys: RedisKeys, policy: PolicyName = DEFAULT_POLICY) -> None:
        self.redis = redis
        self.keys = keys
        self.scheduler = Scheduler(redis, keys, policy)
        self._release = redis.register_script(RELEASE_LUA)
        self._delete_if = redis.register_script(_DELETE_IF)
        self._touch = redis.register_script(_TOUCH)
        self._advance_boot = redis.register_script(_ADVANCE_BOOT)

    # ------------------------------------------------------------ agents

    async def reserve(self, lang: str) -> Placement | bool:
        """Reserve a slot for ``lang``; return the placement, or whether any agent offers it."""
        return await self.scheduler.reserve(lang)

    async def release(self, agent_id: AgentId) -> None:
        """Give back one reserved slot of ``agent_id``."""
        await self._release(
            keys=[self.keys.agent_reserved(agent_id), self.keys.agent(agent_id)],
            args=[self.keys.schedule_index("")],
        )

    def release_in(self, tx: Pipeline, agent_id: AgentId) -> None:
        """Queue the release of one slot on a transaction."""
        tx.eval(
            RELEASE_LUA,
            2,
            self.keys.agent_reserved(agent_id),
            self.keys.agent(agent_id),
            self.keys.schedule_index(""),
        )

    async def agent_ids(self) -> list[AgentId]:
        return sorted(AgentId(_s(a)) for a in await self.redis.smembers(self.keys.agents()))

    async def agent(self, agent_id: AgentId) -> AgentInfo | None:
        async with self.redis.pipeline(transaction=False) as p:
            p.hgetall(self.keys.agent(agent_id))
            p.exists(self.keys.agent_alive(agent_id))
            p.exists(self.keys.agent_lost(agent_id))
            p.get(self.keys.agent_reserved(agent_id))
            fields, alive, lost, reserved = await p.execute()
        if not fields:
            return None
        return AgentInfo(
            agent_id=agent_id,
            fields={_s(k): _s(v) for k, v in fields.items()},
            alive=bool(alive),
            lost=bool(lost),
            reserved=int(reserved or 0),
        )

    async def agents(self) -> list[AgentInfo]:
        """Every registered agent, read in one round trip."""
        ids = await self.agent_ids()
        async with self.redis.pipeline(transaction=False) as p:
            for agent_id in ids:
                p.hgetall(self.keys.agent(agent_id))
                p.exists(self.keys.agent_alive(agent_id))
                p.exists(self.keys.agent_lost(agent_id))
                p.get(self.keys.agent_reserved(agent_id))
            replies = await p.execute()
        out = []
        for i, agent_id in enumerate(ids):
            fields, alive, lost, reserved = replies[4 * i : 4 * i + 4]
            if fields:
                out.append(
                    AgentInfo(
                        agent_id=agent_id,
                        fields={_s(k): _s(v) for k, v in fields.items()},
                        alive=bool(alive),
                        lost=bool(lost),
                        reserved=int(reserved or 0),
                    )
                )
        return out

    async def offer(self) -> LanguageOffer:
        """What the live agents offer: their languages, the known ones unbuilt, the aliases."""
        offer = LanguageOffer()
        for a in await self.agents():
            if a.alive and not a.lost:
                offer.add(
                    offered_langs(a.fields),
                    decode_list(a.fields.get(AgentField.UNBUILT_LANGS, "")),
                    decode_aliases(a.fields.get(AgentField.ALIASES, "")),
                )
        return offer

    async def refresh_index(self, agents: list[AgentInfo]) -> None:
        """Rewrite the schedule index entries of ``agents`` from their current state."""
        async with self.redis.pipeline(transaction=False) as p:
            for a in agents:
                free = free_slots(a.fields, alive=a.alive, lost=a.lost, reserved=a.reserved)
                for lang in offered_langs(a.fields):
                    if free is None:
                        p.zrem(self.keys.schedule_index(lang), a.agent_id)
                    else:
                        p.zadd(self.keys.schedule_index(lang), {a.agent_id: free})
            await p.execute()

    async def mark_lost(self, agent_id: AgentId) -> bool:
        """Set the lost marker; return True for the one gateway that set it."""
        return bool(await self.redis.set(self.keys.agent_lost(agent_id), b"1", nx=True))

    async def advance_boot(self, agent_id: AgentId, boot_id: str) -> str | None:
        """Record that ``agent_id`` now runs as ``boot_id``.

        Return the boot id recorded before ('' if none) to the one gateway that recorded the
        change, None to every other (and when nothing changed).
        """
        old = await self._advance_boot(
            keys=[self.keys.agent_settled_boot(agent_id)], args=[boot_id]
        )
        return None if old is None else _s(old)

    async def take_back(self, agent_id: AgentId) -> bool:
        """Clear the lost marker and the reservations; True for the gateway that cleared it."""
        async with self.redis.pipeline(transaction=True) as tx:
            tx.delete(self.keys.agent_lost(agent_id))
            tx.delete(self.keys.agent_reserved(agent_id))
            deleted, _ = await tx.execute()
        return bool(deleted)

    # ------------------------------------------------------------ kernels

    async def put_kernel(self, kernel_id: KernelId, fields: dict[str, Any]) -> None:
        mapping = {k: str(v) for k, v in fields.items()}
        await self.redis.hset(self.keys.kernel(kernel_id), mapping=mapping)  # type: ignore[arg-type]

    async def kernel(self, kernel_id: KernelId) -> dict[str, str] | None:
        raw = await self.redis.hgetall(self.keys.kernel(kernel_id))
        if not raw:
            return None
        return {_s(k): _s(v) for k, v in raw.items()}

    async def touch_kernel(self, kernel_id: KernelId, queries: int) -> dict[str, str] | None:
        """Mark a kernel used (counting ``queries``) and return its fields; None if unrouted."""
        raw = await self._touch(keys=[self.keys.kernel(kernel_id)], args=[now_ms(), queries])
        if not raw:
            return None
        it = iter(raw)
        return {_s(k): _s(v) for k, v in zip(it, it, strict=True)}

    async def set_kernel_fields(self, kernel_id: KernelId, **fields: Any) -> None:
        """Update fields of a routed kernel; a settled kernel's hash is not recreated."""
        flat = [str(x) for kv in fields.items() for x in kv]
        await self.redis.eval(_HSET_IF_EXISTS, 1, self.keys.kernel(kernel_id), *flat)

    def set_kernel_fields_in(self, tx: Pipeline, kernel_id: KernelId, **fields: Any) -> None:
        flat = [str(x) for kv in fields.items() for x in kv]
        tx.eval(_HSET_IF_EXISTS, 1, self.keys.kernel(kernel_id), *flat)

    def forget_kernel_in(
        self, tx: Pipeline, kernel_id: KernelId, owner: str, lang: str, token: str
    ) -> None:
        """Queue the removal of a kernel's routing and session on a transaction."""
        tx.delete(self.keys.kernel(kernel_id))
        tx.eval(
            _DELETE_IF,
            1,
            self.keys.session(AccessKey(owner), lang, token),
            kernel_id,
        )

    # ------------------------------------------------------------ sessions

    async def session(self, owner: AccessKey, lang: str, token: str) -> KernelId | None:
        v = await self.redis.get(self.keys.session(owner, lang, token))
        return KernelId(_s(v)) if v is not None else None

    async def claim_session(
        self, owner: AccessKey, lang: str, token: str, kernel_id: KernelId
    ) -> bool:
        """Point the session at ``kernel_id`` unless it points elsewhere; True if it now does."""
        key = self.keys.session(owner, lang, token)
        return bool(await self.redis.set(key, kernel_id, nx=True))

    async def drop_session(
        self, owner: AccessKey, lang: str, token: str, kernel_id: KernelId
    ) -> None:
        await self._delete_if(keys=[self.keys.session(owner, lang, token)], args=[kernel_id])


def now_ms() -> int:
    return int(time.time() * 1000)
