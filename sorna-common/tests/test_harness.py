"""The harness really starts servers, and isolates each test."""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from sorna.common.servers import PG_INSTALL_CACHE
from sorna.common.testing.plugin import S3Bucket


async def test_redis_is_real_and_starts_empty(redis: Redis) -> None:
    assert await redis.dbsize() == 0
    await redis.set("leftover", "x")
    info = await redis.info("server")
    assert "valkey_version" in info or "redis_version" in info


async def test_redis_is_flushed_between_tests(redis: Redis) -> None:
    assert await redis.get("leftover") is None


async def test_postgres_gives_a_fresh_database(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        version = await conn.fetchval("SHOW server_version")
        assert version.startswith("16")
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
        await conn.execute("CREATE TABLE leftover (x int)")
    finally:
        await conn.close()


async def test_postgres_databases_are_separate(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.leftover') IS NOT NULL")
        assert exists is False
    finally:
        await conn.close()


def test_s3_bucket_is_fresh_and_usable(s3_bucket: S3Bucket) -> None:
    client = s3_bucket.client()
    try:
        listing = client.list_objects_v2(Bucket=s3_bucket.name)
        assert listing.get("KeyCount", 0) == 0
        client.put_object(Bucket=s3_bucket.name, Key="k/run/out.txt", Body=b"hello")
        body = client.get_object(Bucket=s3_bucket.name, Key="k/run/out.txt")["Body"].read()
        assert body == b"hello"
    finally:
        client.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as nobody")
def test_postgres_starts_from_a_private_install_as_root(tmp_path: Path) -> None:
    # A checkout under a 0700 home (as CI may clone) hides the wheel's programs from nobody.
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.origin is not None
    site = Path(spec.origin).parent.parent
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    shutil.copytree(site / "pgserver", private / "pgserver", symlinks=True)
    shutil.copytree(site / "pgserver.libs", private / "pgserver.libs", symlinks=True)
    code = (
        "from sorna.common.servers import PostgresServer\n"
        "with PostgresServer() as p:\n"
        "    print(p._install)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(private)}
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-1500:]
    install = Path(run.stdout.strip().splitlines()[-1])
    try:
        assert install.parents[2] == PG_INSTALL_CACHE
        assert (install / "bin" / "postgres").exists()
    finally:
        if install.parents[2] == PG_INSTALL_CACHE:  # the copy of this test's private tree
            shutil.rmtree(install.parents[1], ignore_errors=True)


# ------------------------------------------------------------------ a session of its own


def started_with() -> dict[str, str]:
    """The environment this process was started with, before the plugin isolated it."""
    raw = Path("/proc/self/environ").read_bytes().decode(errors="replace")
    return dict(entry.split("=", 1) for entry in raw.split("\0") if "=" in entry)


def developer_homes() -> set[Path]:
    """The HOME pytest was started with, and the user's home in the password database."""
    homes = {Path(pwd.getpwuid(os.getuid()).pw_dir)}
    if started_with().get("HOME"):
        homes.add(Path(started_with()["HOME"]))
    return {h for h in homes if h != Path("/")}


XDG = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")


def test_the_session_and_its_children_have_a_home_of_their_own() -> None:
    # What a child process (a `sorna` CLI, an agent, a gateway) is started with.
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for env in (dict(os.environ), json.loads(done.stdout)):
        home = Path(env["HOME"])
        assert home.is_dir() and home not in developer_homes(), home
        assert not any(home.is_relative_to(h) for h in developer_homes()), home
        for name in XDG:
            # Each folder is the session's (under its temporary root), none the developer's.
            assert Path(env[name]).is_relative_to(home.parent), (name, env[name])
            assert Path(env[name]) != Path(started_with().get(name, "/nonexistent")), name
    assert Path(os.path.expanduser("~")) == Path(os.environ["HOME"])


def test_the_developers_sorna_settings_do_not_reach_the_tests() -> None:
    kept = {"SORNA_REQUIRE_DOCKER", "SORNA_SCREENSHOTS"}  # the harness's own switches
    assert [name for name in os.environ if name.startswith("SORNA_") and name not in kept] == []
