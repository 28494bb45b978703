"""PostgreSQL: the connection pool and the numbered schema migrations.

Migrations are the files ``migrations/NNNN_name.sql`` of this package, applied in order, each
in its own transaction, under a session advisory lock so that replicas starting together apply
each exactly once. The table ``schema_version`` records what was applied.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

#: Key of the advisory lock held while migrating ("sorna" as an int).
MIGRATION_LOCK_KEY: Final = 0x736F726E61

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")

#: asyncpg and socket errors meaning "PostgreSQL is unreachable right now".
UNAVAILABLE_ERRORS: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Return the packaged migrations in version order."""
    found: list[Migration] = []
    for entry in resources.files("sorna.manager.migrations").iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration numbers must run 1..N without gaps: {versions}")
    return found


async def migrate(conn: Any) -> list[int]:
    """Apply pending migrations on ``conn``; return the versions applied now."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
        for mig in migrations():
            if mig.version in done:
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                    mig.version,
                    mig.name,
                )
            log.info("applied migration %s", mig.name)
            applied_now.append(mig.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def migrate_url(url: str) -> list[int]:
    """Connect to ``url``, apply pending migrations, disconnect."""
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(url: str, size: int) -> Any:
    """Create the asyncpg pool (jsonb as Python objects)."""
    return await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        init=_init_connection,
        timeout=5.0,
        command_timeout=10.0,
    )
