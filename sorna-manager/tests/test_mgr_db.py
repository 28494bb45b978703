"""Migrations under the advisory lock, and the keypair command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import asyncpg  # type: ignore[import-untyped]

from sorna.manager import db


async def test_concurrent_migrations_apply_once(postgres_url: str) -> None:
    results = await asyncio.gather(*(db.migrate_url(postgres_url) for _ in range(4)))
    applied = [v for r in results for v in r]
    assert sorted(applied) == [m.version for m in db.migrations()]
    assert await db.migrate_url(postgres_url) == []
    conn = await asyncpg.connect(postgres_url)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_version")]
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert versions == [m.version for m in db.migrations()]
    assert {"keypairs", "kernels", "schema_version"} <= tables


def _cli(postgres_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sorna.manager.cli", *args],
        env={
            "SORNA_DB_URL": postgres_url,
            "PATH": "/usr/bin:/bin",
            "SORNA_LOGGING_LEVEL": "WARNING",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_db_and_keypairs(postgres_url: str) -> None:
    r = _cli(postgres_url, "db", "migrate")
    assert r.returncode == 0, r.stderr
    r = _cli(postgres_url, "keypair", "create", "--admin", "--concurrency", "3", "--rate", "10")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    ak = created["accessKey"]
    assert created["isAdmin"] and len(created["secretKey"]) == 40
    r = _cli(postgres_url, "keypair", "set-limits", ak, "--concurrency", "4")
    assert r.returncode == 0 and json.loads(r.stdout)["concurrencyLimit"] == 4
    r = _cli(postgres_url, "keypair", "deactivate", ak)
    assert r.returncode == 0, r.stderr
    r = _cli(postgres_url, "keypair", "list")
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["accessKey"] == ak and row["isActive"] is False and "secretKey" not in row
    assert _cli(postgres_url, "keypair", "deactivate", "AKIANOPE").returncode == 1
