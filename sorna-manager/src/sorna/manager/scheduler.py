"""Placement: which agent a new kernel goes to (PROTOCOLS.md section 2).

What an agent offers is defined once, here, in Python: :func:`free_slots` (its ``max_kernels``
less the larger of the kernels it reports and the slots gateways have reserved on it, for an
agent that is alive, not lost, not leaving and reachable) and :func:`offers` (it lists the
language). A policy then ranks the agents that have a free slot (:func:`choose`):

- ``least-loaded`` (the default): the most free slots; a tie goes to the greatest agent id;
- ``pack``: the fewest free slots that still include one, so that agents fill in turn; a tie
  goes to the least agent id.

The reservation must be atomic across gateways, so it runs inside Valkey as one Lua script,
:data:`SCHEDULE_LUA`. Its field names, statuses and separator are filled in from
``sorna.common.keys`` and ``sorna.common.types``; its spelling of the rules above is checked
against these Python functions over many agent states, on real Valkey, by the manager's
``tests/test_mgr_scheduling.py``.

The per-language index (``sched:{lang}``, scored by free slots) is a hint: the script checks
the policy's first :data:`SCHEDULE_CANDIDATES` entries exactly, and scans every agent (which
also repairs the index) only when none of them has room.
"""

from __future__ import annotations

import re
import string
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from redis.asyncio import Redis

from sorna.common.ids import AgentId
from sorna.common.keys import FIELD_LIST_SEP, AgentField, RedisKeys
from sorna.common.types import AgentStatus

#: The placement policies (the manager setting ``scheduler.policy``).
PolicyName = Literal["least-loaded", "pack"]
POLICIES: Final[tuple[PolicyName, ...]] = typing.get_args(PolicyName)
DEFAULT_POLICY: Final[PolicyName] = "least-loaded"

#: Index entries checked exactly per scheduling decision before falling back to a full scan.
SCHEDULE_CANDIDATES: Final = 8

# Agents in these states take no new kernel, whatever their counts say.
_LEAVING: Final = (AgentStatus.LOST, AgentStatus.TERMINATED)
# A count is a decimal integer of at most 15 digits: Lua's numbers (doubles) hold it exactly.
_COUNT: Final = re.compile(r"-?([0-9]+)")
_COUNT_DIGITS: Final = 15


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a reserved slot is: the agent and its RPC address."""

    agent_id: AgentId
    addr: str


def parse_count(text: str | None) -> int | None:
    """Read a count field: absent is 0; anything but a decimal integer is unreadable (None)."""
    if text is None:
        return 0
    m = _COUNT.fullmatch(text)
    if m is None or len(m.group(1)) > _COUNT_DIGITS:
        return None
    return int(text)


def free_slots(fields: Mapping[str, str], *, alive: bool, lost: bool, reserved: int) -> int | None:
    """The kernels an agent can still take (may be 0 or less), or None if it takes none at all.

    ``fields`` is the agent's hash, ``alive`` whether its alive key exists, ``lost`` whether a
    gateway marked it lost, ``reserved`` the slots gateways reserved on it. None: it is gone,
    lost, leaving, has no address, or its counts are unreadable.
    """
    if not alive or lost or fields.get(AgentField.STATUS) in _LEAVING:
        return None
    if not fields.get(AgentField.ADDR):
        return None
    max_kernels = parse_count(fields.get(AgentField.MAX_KERNELS))
    num_kernels = parse_count(fields.get(AgentField.NUM_KERNELS))
    if max_kernels is None or num_kernels is None:
        return None
    # A kernel the agent runs was reserved by a gateway first, so the larger of the two counts
    # is what is taken: the agent's count lags new reservations, the reservations lag exits.
    return max_kernels - max(num_kernels, reserved)


def offered_langs(fields: Mapping[str, str]) -> list[str]:
    """The languages an agent's hash lists."""
    return [x for x in fields.get(AgentField.LANGS, "").split(FIELD_LIST_SEP) if x]


def offers(fields: Mapping[str, str], lang: str) -> bool:
    """Whether an agent's hash lists ``lang``."""
    return lang in offered_langs(fields)


def choose(policy: PolicyName, free: Mapping[AgentId, int]) -> AgentId | None:
    """The agent ``policy`` places the next kernel on, given each candidate's free slots."""
    # Ids compare as bytes, as the Lua script compares them (never by the server's locale).
    open_ = [(n, a.encode()) for a, n in free.items() if n >= 1]
    if not open_:
        return None
    best = min(open_) if policy == "pack" else max(open_)
    return AgentId(best[1].decode())


# KEYS[1]: the agents set; KEYS[2]: the language's schedule index.
# ARGV: agent-key prefix, alive suffix, lost suffix, reserved suffix, language, candidates,
# policy. Returns {1, agent id, addr} or {0, 1 if some live agent offers the language}.
_SCHEDULE_TEMPLATE: Final = string.Template("""
local function count(s)
  if not s then return 0 end
  local digits = string.match(s, '^%-?(%d+)$$')
  if not digits or #digits > $count_digits then return nil end
  return tonumber(s)
end
local function free_slots(id)
  local base = ARGV[1] .. id
  if redis.call('EXISTS', base .. ARGV[2]) == 0 or redis.call('EXISTS', base .. ARGV[3]) == 1 then
    return nil
  end
  local f = redis.call('HMGET', base, '$langs', '$max_kernels', '$num_kernels', '$status', '$addr')
  if f[4] == '$lost' or f[4] == '$terminated' or not f[5] or f[5] == '' then return nil end
  if ARGV[5] == '' or not string.find(
      '$sep' .. (f[1] or '') .. '$sep', '$sep' .. ARGV[5] .. '$sep', 1, true) then
    return nil
  end
  local max_kernels, num_kernels = count(f[2]), count(f[3])
  local reserved = count(redis.call('GET', base .. ARGV[4]))
  if not (max_kernels and num_kernels and reserved) then return nil end
  return max_kernels - math.max(num_kernels, reserved), f[5]
end
-- Byte-wise, as sorted sets order members (Lua's own < on strings follows the locale).
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local pack = ARGV[7] == 'pack'
local best, best_free, best_addr = nil, 0, nil
local function better(id, free)
  if best == nil then return true end
  if free ~= best_free then
    if pack then return free < best_free end
    return free > best_free
  end
  if pack then return before(id, best) end
  return before(best, id)
end
local function consider(id)
  local free, addr = free_slots(id)
  if free == nil then
    redis.call('ZREM', KEYS[2], id)
    return false
  end
  redis.call('ZADD', KEYS[2], free, id)
  if free >= 1 and better(id, free) then best, best_free, best_addr = id, free, addr end
  return true
end
local limit = tonumber(ARGV[6])
local candidates
if pack then
  candidates = redis.call('ZRANGEBYSCORE', KEYS[2], 1, '+inf', 'LIMIT', 0, limit)
else
  candidates = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', 1, 'LIMIT', 0, limit)
end
for _, id in ipairs(candidates) do consider(id) end
if not best then
  local offered = 0
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if consider(id) then offered = 1 end
  end
  if not best then return {0, offered} end
end
redis.call('INCR', ARGV[1] .. best .. ARGV[4])
redis.call('ZADD', KEYS[2], best_free - 1, best)
return {1, best, best_addr}
""")

#: The reservation script: choose by the policy and reserve one slot, atomically.
SCHEDULE_LUA: Final = _SCHEDULE_TEMPLATE.substitute(
    count_digits=_COUNT_DIGITS,
    langs=AgentField.LANGS,
    max_kernels=AgentField.MAX_KERNELS,
    num_kernels=AgentField.NUM_KERNELS,
    status=AgentField.STATUS,
    addr=AgentField.ADDR,
    lost=AgentStatus.LOST,
    terminated=AgentStatus.TERMINATED,
    sep=FIELD_LIST_SEP,
)

# KEYS[1]: a reserved counter; KEYS[2]: the agent hash. ARGV[1]: schedule index prefix.
# Decrement (never below zero) and give the slot back in the agent's index entries.
_RELEASE_TEMPLATE: Final = string.Template("""
local n = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if n <= 0 then return 0 end
redis.call('DECR', KEYS[1])
local langs = redis.call('HGET', KEYS[2], '$langs') or ''
local id = redis.call('HGET', KEYS[2], '$id')
if id then
  for lang in string.gmatch(langs, '[^$sep]+') do
    if redis.call('ZSCORE', ARGV[1] .. lang, id) then
      redis.call('ZINCRBY', ARGV[1] .. lang, 1, id)
    end
  end
end
return n - 1
""")

#: The release script: give back one reserved slot (the inverse of :data:`SCHEDULE_LUA`).
RELEASE_LUA: Final = _RELEASE_TEMPLATE.substitute(
    langs=AgentField.LANGS, id=AgentField.ID, sep=FIELD_LIST_SEP
)


class Scheduler:
    """Reserve slots on agents by one policy, in Valkey."""

    def __init__(self, redis: Redis, keys: RedisKeys, policy: PolicyName = DEFAULT_POLICY) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown placement policy {policy!r} (one of {', '.join(POLICIES)})")
        self.policy: PolicyName = policy
        self._keys = keys
        self._script = redis.register_script(SCHEDULE_LUA)
        probe = AgentId("x")
        base = keys.agent(probe)
        self._args: tuple[str, ...] = (
            keys.agent(AgentId("")),
            keys.agent_alive(probe)[len(base) :],
            keys.agent_lost(probe)[len(base) :],
            keys.agent_reserved(probe)[len(base) :],
        )

    async def reserve(self, lang: str) -> Placement | bool:
        """Reserve a slot for ``lang``; return the placement, or whether any agent offers it."""
        reply = await self._script(
            keys=[self._keys.agents(), self._keys.schedule_index(lang)],
            args=[*self._args, lang, SCHEDULE_CANDIDATES, self.policy],
        )
        if int(reply[0]) == 1:
            return Placement(AgentId(_s(reply[1])), _s(reply[2]))
        return bool(int(reply[1]))


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
