"""The embedded Valkey and PostgreSQL ask for a password; no local user gets in without it.

The password is made on the first start and kept in ``<data dir>/password`` (mode 0600); a
PostgreSQL data folder made with trust logins by an earlier Sorna is moved over on start.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import sorna.common.servers as servers
from sorna.common.servers import PostgresServer, ValkeyServer

AS_ROOT = os.geteuid() == 0
#: Where the README says each server's password is kept (in its data folder).
PASSWORD_FILE = "password"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _resp(port: int, *commands: bytes) -> list[bytes]:
    """First reply line of each command, sent as a plain client would."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        for command in commands:
            s.sendall(command + b"\r\n")
            replies.append(f.readline().rstrip())
    return replies


def _psql(
    server: PostgresServer, host: str, password: str | None, *, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Log in as the superuser with psql (never prompting) and run a query."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = "/"  # no ~/.pgpass of the developer
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        [
            *(server._bin("psql"), "-h", host, "-p", str(server.port), "-U", "postgres"),
            *("-d", "postgres", "-w", "-At", "-c", "SELECT current_user"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        user=user,
        cwd="/",
    )


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder in /tmp that PostgreSQL's unprivileged user can reach (as root)."""
    path = Path(tempfile.mkdtemp(prefix="sorna-auth-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_password_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    server_password = servers.server_password
    assert servers.PASSWORD_FILE == PASSWORD_FILE
    password, new = server_password(tmp_path)
    assert new and len(password) >= 32
    path = tmp_path / PASSWORD_FILE
    assert _mode(path) == 0o600 and stat.S_ISREG(path.lstat().st_mode)
    assert path.read_text().strip() == password
    assert server_password(tmp_path) == (password, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PASSWORD_FILE]  # no temporary left

    path.chmod(0o644)
    with pytest.raises(servers.ServerError, match="readable by others"):
        server_password(tmp_path)
    path.unlink()
    path.symlink_to("/etc/passwd")
    with pytest.raises(servers.ServerError, match="cannot read"):
        server_password(tmp_path)


def test_valkey_answers_noauth_without_the_password() -> None:
    with ValkeyServer() as server:
        assert _resp(server.port, b"PING", b"GET x") == [
            b"-NOAUTH Authentication required.",
            b"-NOAUTH Authentication required.",
        ]
        password = (server.data_dir / PASSWORD_FILE).read_text().strip()
        assert _mode(server.data_dir / PASSWORD_FILE) == 0o600
        assert _mode(server.data_dir) == 0o700
        assert _resp(server.port, b"AUTH wrong") == [
            b"-WRONGPASS invalid username-password pair or user is disabled."
        ]
        assert _resp(server.port, f"AUTH {password}".encode(), b"PING") == [b"+OK", b"+PONG"]
        assert server.url == f"redis://:{password}@127.0.0.1:{server.port}/0"
        assert password not in server.endpoint
        # Not on its command line either, where every local user can read it.
        assert server._proc is not None
        assert password.encode() not in Path(f"/proc/{server._proc.pid}/cmdline").read_bytes()


def test_valkey_keeps_its_password_across_restarts(tmp_path: Path) -> None:
    with ValkeyServer(data_dir=tmp_path / "valkey") as server:
        assert _resp(server.port, b"PING") == [b"-NOAUTH Authentication required."]
        first = server.password
    with ValkeyServer(data_dir=tmp_path / "valkey") as server:
        assert server.password == first
        assert _resp(server.port, b"PING") == [b"-NOAUTH Authentication required."]
        assert _resp(server.port, f"AUTH {first}".encode(), b"PING") == [b"+OK", b"+PONG"]


def _assert_password_required(server: PostgresServer) -> None:
    socket_dir = server.data_dir / "sock"
    hosts = (str(socket_dir), server.host)  # the unix socket, then TCP
    for host in hosts:
        refused = _psql(server, host, None)
        assert refused.returncode != 0 and "no password supplied" in refused.stderr, refused
        wrong = _psql(server, host, "not-the-password")
        assert wrong.returncode != 0
        assert "password authentication failed" in wrong.stderr, wrong
        if AS_ROOT:  # another local user: the server's own, even (nobody)
            other = _psql(server, host, None, user="nobody")
            assert other.returncode != 0 and "no password supplied" in other.stderr, other
    password = (server.data_dir / PASSWORD_FILE).read_text().strip()
    assert _mode(server.data_dir / PASSWORD_FILE) == 0o600
    for host in hosts:
        ok = _psql(server, host, password)
        assert (ok.returncode, ok.stdout) == (0, "postgres\n"), ok.stderr
    assert _mode(socket_dir) == 0o700
    assert _mode(server.data_dir / "pgdata") == 0o700
    assert _mode(server.data_dir) == (0o711 if AS_ROOT else 0o700)
    assert server.url() == f"postgresql://postgres:{password}@127.0.0.1:{server.port}/postgres"
    assert password not in server.endpoint()


def test_postgres_refuses_logins_without_the_password() -> None:
    with PostgresServer() as server:
        _assert_password_required(server)
        assert server.socket_dir == server.data_dir / "sock"
        assert server._proc is not None
        cmdline = Path(f"/proc/{server._proc.pid}/cmdline").read_bytes()
        assert server.password.encode() not in cmdline


def _old_trust_folder(data: Path) -> tuple[Path, str | None]:
    """A data folder as an earlier Sorna made it: trust logins, open folders, a table."""
    user = "nobody" if AS_ROOT else None
    probe = PostgresServer(data_dir=data)
    pgdata, sock = data / "pgdata", data / "sock"
    for d in (pgdata, sock):
        d.mkdir(mode=0o755)
        if user is not None:
            shutil.chown(d, user)
    subprocess.run(
        [
            *(probe._bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"),
            *("--encoding=UTF8", "--locale=C", "--no-sync"),
        ],
        capture_output=True,
        user=user,
        check=True,
    )
    subprocess.run(
        [probe._bin("postgres"), "--single", "-D", str(pgdata), "postgres"],
        input=b"CREATE TABLE kept (v text);\nINSERT INTO kept VALUES ('from before');\n",
        capture_output=True,
        user=user,
        check=True,
    )
    return pgdata, user


def test_a_trust_data_folder_of_an_earlier_version_is_moved_over(open_dir: Path) -> None:
    data = open_dir / "postgres"
    data.mkdir(mode=0o755)
    pgdata, _ = _old_trust_folder(data)
    assert "trust" in (pgdata / "pg_hba.conf").read_text()
    assert not (data / PASSWORD_FILE).exists()
    for _ in range(2):  # moved over once, then kept as it is
        with PostgresServer(data_dir=data) as server:
            _assert_password_required(server)
            env = {**os.environ, "PGPASSWORD": server.password}
            kept = subprocess.run(
                [
                    *(server._bin("psql"), "-h", server.host, "-p", str(server.port)),
                    *("-U", "postgres", "-d", "postgres", "-w", "-At", "-c", "TABLE kept"),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert (kept.returncode, kept.stdout) == (0, "from before\n"), kept.stderr
            log = server.log_path.read_text()
            assert server.password not in log
            assert _mode(server.log_path) == 0o600
    assert "trust" not in (pgdata / "pg_hba.conf").read_text()


def test_a_lost_password_file_gets_a_new_password(open_dir: Path) -> None:
    with PostgresServer(data_dir=open_dir / "postgres") as server:
        _assert_password_required(server)
        first = server.password
    (open_dir / "postgres" / PASSWORD_FILE).unlink()
    with PostgresServer(data_dir=open_dir / "postgres") as server:
        assert server.password != first
        assert _psql(server, server.host, first).returncode != 0
        _assert_password_required(server)
