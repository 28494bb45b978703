"""``sorna up`` without a Docker engine: the local backend, its notice, and a restart.

Runs the checkout's venv (editable install). The engine is hidden with a DOCKER_HOST that
points at a socket nobody listens on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import stat
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sorna.common.servers import PostgresServer
from sorna.singlepc import docs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def _db_url(output: str) -> str:
    """The embedded PostgreSQL's DSN: the address ``sorna up`` shows, the password its file."""
    m = re.search(
        r"^postgresql: (postgresql://postgres@\S+) \(embedded; password in (\S+)\)$", output, re.M
    )
    assert m, output
    password = Path(m.group(2)).read_text().strip()
    return m.group(1).replace("postgres@", f"postgres:{password}@", 1)


def _no_password_shown(stack: Any, *outputs: str) -> None:
    """Neither server's password is in what ``sorna`` printed, a log, or a command line."""
    passwords = {
        name: (stack.data_dir / name / "password").read_text().strip()
        for name in ("valkey", "postgres")
    }
    for name in passwords:
        assert stat.S_IMODE((stack.data_dir / name / "password").stat().st_mode) == 0o600
    files = [p for p in stack.data_dir.rglob("*") if p.is_file() and p.name != "password"]
    files = [p for p in files if "pgdata" not in p.parts]  # the server's own store
    files += [p for p in stack.home.rglob("*") if p.is_file() and stack.data_dir not in p.parents]
    assert any(p.name == "supervisor.log" for p in files)
    cmdlines = [Path(f"/proc/{pid}/cmdline") for pid in stack.pids]
    for name, password in passwords.items():
        for output in outputs:
            assert password not in output, name
        for path in files:
            assert password.encode() not in path.read_bytes(), (name, path)
        for path in cmdlines:
            with contextlib.suppress(OSError):
                assert password.encode() not in path.read_bytes(), (name, path)


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


def test_up_without_docker_runs_locally_and_a_restart_keeps_keys_and_history(
    stack_factory: type,
) -> None:
    stack = stack_factory(BIN, docker=False)
    up = stack.up()
    assert "backend: local (no Docker engine answers" in up.stdout
    assert "kernels run as sandboxed local processes" in up.stdout
    assert "Sorna is up." in up.stdout and f"http://127.0.0.1:{stack.port}" in up.stdout
    config_path = stack.home / ".config" / "sorna" / "client.toml"
    first = tomllib.loads(config_path.read_text())
    assert first["endpoint"] == f"http://127.0.0.1:{stack.port}"
    assert first["access_key"] in up.stdout and first["secret_key"] in up.stdout

    ran = stack.sorna("run", "python3", "-c", "print(6*7)")
    assert (ran.returncode, ran.stdout) == (0, "42\n"), ran.stderr

    # docs/api.md is in step with the OpenAPI document the running gateway serves.
    with urllib.request.urlopen(f"{first['endpoint']}/v2/openapi.json", timeout=10) as resp:
        served = json.load(resp)
    api_md = (ROOT / "docs" / "api.md").read_text()
    assert docs.replace_section(api_md, "endpoints", docs.api_reference(served)) == api_md

    status = stack.sorna("status")
    assert status.returncode == 0
    assert "Sorna is running" in status.stdout and "backend   local" in status.stdout
    _no_password_shown(stack, up.stdout, up.stderr, status.stdout, status.stderr)

    again = stack.sorna("up", "--port", str(stack.port))
    assert again.returncode == 1
    assert "already running" in again.stderr

    history = asyncio.run(_count(_db_url(up.stdout), "SELECT count(*) FROM kernels"))
    assert history >= 1
    down = stack.down()
    assert down.returncode == 0 and "Stopped." in down.stdout, down.stderr
    assert stack.leftovers() == []
    gone = stack.sorna("status")
    assert gone.returncode == 3 and "not running" in gone.stdout

    # Same data folder: the keypair, the client config and the kernel history survive.
    again = stack.up()
    assert "(created" not in again.stdout
    assert f"admin keypair: {first['access_key']} (kept" in again.stdout
    assert tomllib.loads(config_path.read_text()) == first
    url = _db_url(again.stdout)
    assert asyncio.run(_count(url, "SELECT count(*) FROM kernels")) == history
    assert asyncio.run(_count(url, "SELECT count(*) FROM keypairs")) == 1
    ran = stack.sorna("run", "python3", "-c", "print('again')")
    assert (ran.returncode, ran.stdout) == (0, "again\n"), ran.stderr
    assert stack.down().returncode == 0
    assert stack.leftovers() == []


def test_up_refuses_an_unsandboxed_local_backend_unless_asked_and_then_warns(
    stack_factory: type, open_tmp: Path
) -> None:
    stack = stack_factory(BIN, docker=False)
    stack.env["SORNA_BWRAP_PATH"] = str(open_tmp / "no-bwrap")
    refused = stack.sorna("up", "-d", "--port", str(stack.port), "--backend", "local")
    assert refused.returncode == 1
    errors = [line for line in refused.stdout.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--unsafe-local-backend" in errors[0], refused.stdout
    assert stack.sorna("status").returncode == 3

    up = stack.up("--backend", "local", "--unsafe-local-backend")
    assert "WARNING: local backend WITHOUT a sandbox" in up.stdout
    ran = stack.sorna("run", "python3", "-c", "print(6*7)")
    assert (ran.returncode, ran.stdout) == (0, "42\n"), ran.stderr
    assert stack.down().returncode == 0
    assert stack.leftovers() == []


def test_up_refuses_a_taken_port_and_says_so(stack_factory: type) -> None:
    stack = stack_factory(BIN, docker=False)
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", stack.port))
        taken.listen()
        done = stack.sorna("up", "-d", "--port", str(stack.port), "--backend", "local")
    assert done.returncode == 1
    assert f"port {stack.port} on 127.0.0.1 is taken" in done.stdout
    assert stack.sorna("status").returncode == 3


def test_postgres_server_keeps_its_data_across_restarts(open_tmp: Path) -> None:
    """The embedded PostgreSQL of a data folder, as ``sorna up`` uses it (also as root)."""

    async def roundtrip(url: str, write: bool) -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            if write:
                await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('x')")
            return [r["v"] for r in await conn.fetch("SELECT v FROM kept")]
        finally:
            await conn.close()

    for write in (True, False):
        with PostgresServer(data_dir=open_tmp / "postgres") as server:
            assert asyncio.run(roundtrip(server.url(), write)) == ["x"]
    assert (open_tmp / "postgres" / "pgdata" / "PG_VERSION").exists()
