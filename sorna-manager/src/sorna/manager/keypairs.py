"""Keypairs in PostgreSQL, a short in-process cache, and batched usage counters.

The cache keeps a keypair for ``cache_ttl`` seconds, so a deactivation made through any replica
takes effect everywhere within that time (and at once on the replica that made it). Request
counts and last-use times are summed in memory and written in one statement per flush.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sorna.common.ids import AccessKey

log = logging.getLogger(__name__)

_COLUMNS = (
    "access_key, secret_key, owner, is_active, is_admin, concurrency_limit, concurrency_used,"
    " rate_limit, num_queries, created_at, last_used"
)


@dataclass(frozen=True, slots=True)
class Keypair:
    access_key: AccessKey
    secret_key: str
    owner: str
    is_active: bool
    is_admin: bool
    concurrency_limit: int
    concurrency_used: int
    rate_limit: int
    num_queries: int
    created_at: datetime.datetime
    last_used: datetime.datetime | None

    def public(self) -> dict[str, Any]:
        """Return the API view (no secret)."""
        return {
            "accessKey": self.access_key,
            "owner": self.owner,
            "isActive": self.is_active,
            "isAdmin": self.is_admin,
            "concurrencyLimit": self.concurrency_limit,
            "concurrencyUsed": self.concurrency_used,
            "rateLimit": self.rate_limit,
            "numQueries": self.num_queries,
            "createdAt": self.created_at.isoformat(),
            "lastUsed": self.last_used.isoformat() if self.last_used else None,
        }


def generate_access_key() -> AccessKey:
    """Return ``AKIA`` and 16 base32 characters."""
    return AccessKey("AKIA" + base64.b32encode(secrets.token_bytes(10)).decode())


def plausible_access_key(text: str) -> bool:
    """Whether ``text`` could name a keypair at all: short, printable ASCII. Anything else
    (NUL, undecodable header bytes as surrogates) is unknown without asking PostgreSQL, whose
    text type refuses NUL and which cannot encode surrogates."""
    return 0 < len(text) <= 64 and text.isascii() and text.isprintable()


def generate_secret_key() -> str:
    """Return 40 url-safe characters."""
    return secrets.token_urlsafe(30)


def _row(r: Any) -> Keypair:
    return Keypair(**dict(r))


class KeypairStore:
    """Read and write keypairs; cache reads briefly; batch usage updates."""

    def __init__(self, pool: Any, *, cache_ttl: float = 2.0) -> None:
        self._pool = pool
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, Keypair | None]] = {}
        self._usage: dict[str, tuple[int, datetime.datetime]] = {}

    async def get(self, access_key: str) -> Keypair | None:
        """Return the keypair (active or not), from the cache if fresh."""
        if not plausible_access_key(access_key):
            return None
        now = time.monotonic()
        hit = self._cache.get(access_key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        r = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM keypairs WHERE access_key = $1", access_key
        )
        kp = _row(r) if r is not None else None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[access_key] = (now, kp)
        return kp

    def invalidate(self, access_key: str) -> None:
        self._cache.pop(access_key, None)

    async def create(
        self,
        *,
        concurrency_limit: int,
        rate_limit: int,
        is_admin: bool = False,
        owner: str = "",
    ) -> Keypair:
        r = await self._pool.fetchrow(
            "INSERT INTO keypairs (access_key, secret_key, owner, is_admin, concurrency_limit,"
            f" rate_limit) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            generate_access_key(),
            generate_secret_key(),
            owner,
            is_admin,
            concurrency_limit,
            rate_limit,
        )
        return _row(r)

    async def list(self) -> list[Keypair]:
        rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM keypairs ORDER BY created_at")
        return [_row(r) for r in rows]

    async def update(
        self,
        access_key: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: int | None = None,
        is_active: bool | None = None,
        is_admin: bool | None = None,
    ) -> Keypair | None:
        """Change limits or flags; return the new keypair, or None if there is none."""
        if not plausible_access_key(access_key):
            return None
        r = await self._pool.fetchrow(
            "UPDATE keypairs SET"
            " concurrency_limit = COALESCE($2, concurrency_limit),"
            " rate_limit = COALESCE($3, rate_limit),"
            " is_active = COALESCE($4, is_active),"
            " is_admin = COALESCE($5, is_admin)"
            f" WHERE access_key = $1 RETURNING {_COLUMNS}",
            access_key,
            concurrency_limit,
            rate_limit,
            is_active,
            is_admin,
        )
        self.invalidate(access_key)
        return _row(r) if r is not None else None

    async def deactivate(self, access_key: str) -> Keypair | None:
        return await self.update(access_key, is_active=False)

    # ------------------------------------------------------------ usage

    def record_use(self, access_key: str) -> None:
        """Count one request of ``access_key`` (written at the next flush)."""
        count, _ = self._usage.get(access_key, (0, datetime.datetime.min))
        self._usage[access_key] = (count + 1, datetime.datetime.now(datetime.UTC))

    async def flush_usage(self) -> int:
        """Write the counted usage in one statement; return how many keypairs it touched."""
        if not self._usage:
            return 0
        batch, self._usage = self._usage, {}
        keys = list(batch)
        try:
            await self._pool.execute(
                "UPDATE keypairs AS k SET num_queries = k.num_queries + u.n,"
                " last_used = GREATEST(k.last_used, u.t)"
                " FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS u(ak, n, t)"
                " WHERE k.access_key = u.ak",
                keys,
                [batch[k][0] for k in keys],
                [batch[k][1] for k in keys],
            )
        except Exception:
            # Put the counts back; they go out with the next flush.
            for k, (n, t) in batch.items():
                old_n, old_t = self._usage.get(k, (0, t))
                self._usage[k] = (old_n + n, max(old_t, t))
            raise
        return len(keys)

    async def run_flusher(self, period: float) -> None:
        """Flush usage every ``period`` seconds until cancelled (then flush once more)."""
        try:
            while True:
                await asyncio.sleep(period)
                try:
                    await self.flush_usage()
                except Exception as e:
                    log.warning("usage flush failed (retrying next period): %s", e)
        finally:
            try:
                await self.flush_usage()
            except Exception as e:
                log.warning("final usage flush failed: %s", e)
