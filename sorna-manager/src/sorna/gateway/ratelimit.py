"""Sliding-window rate limit per access key: one atomic Lua script on a sorted set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from sorna.common.ids import AccessKey
from sorna.common.keys import RedisKeys

# KEYS[1]: the window's sorted set. ARGV: limit, window (ms), a unique member suffix.
# Uses the server clock so that every gateway shares one time line.
_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1}
end
return {0, 0}
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    window_s: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Window": str(self.window_s),
        }


class RateLimiter:
    def __init__(self, redis: Redis, keys: RedisKeys, window_s: int) -> None:
        self._keys = keys
        self._window_s = window_s
        self._script = redis.register_script(_SCRIPT)
        self._seq = 0

    async def hit(self, access_key: AccessKey, limit: int, unique: str) -> Verdict:
        """Count one request; say whether it is within the limit."""
        self._seq += 1
        allowed, remaining = await self._script(
            keys=[self._keys.rate_limit(access_key)],
            args=[limit, self._window_s * 1000, f"{unique}-{self._seq}"],
        )
        return Verdict(bool(allowed), limit, int(remaining), self._window_s)
