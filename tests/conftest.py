"""Fixtures of the single-PC tests: an isolated home, data folder and port per stack.

A :class:`Stack` runs ``sorna`` commands of one venv with ``HOME`` (and so the client's
``~/.config/sorna/client.toml``) redirected to a temporary folder, and always ends with
``sorna down`` plus a check that every process of the stack is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sorna.common.constants import AGENT_ID_FILE, LABEL_AGENT_ID
from sorna.common.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo.extend(children.get(p, []))
    return found


def _stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def start_time(pid: int) -> str:
    """The start time of ``pid`` (with the pid, an identity that survives pid reuse)."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


def alive(pid: int, started: str | None = None) -> bool:
    fields = _stat(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return started is None or fields[19] == started


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections in TIME_WAIT do not count, as for a server)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def kernel_containers(agent_id: str) -> set[str]:
    """Ids of the kernel containers of agent ``agent_id`` on this host (empty without a Docker
    engine): only this stack's, as other tests on the same engine start kernels of their own."""
    try:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={LABEL_AGENT_ID}={agent_id}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return set()
    return set(out.stdout.split()) if out.returncode == 0 else set()


class Stack:
    """``sorna`` commands of one venv against one isolated data folder and port."""

    def __init__(self, bin_dir: Path, home: Path, *, docker: bool = True) -> None:
        self.bin_dir = bin_dir
        self.home = home
        self.data_dir = home / "data"
        self.port = free_port()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SORNA_") and k not in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")
        }
        self.env.update(HOME=str(home), SORNA_UP_DATA_DIR=str(self.data_dir))
        self.env["PATH"] = f"{bin_dir}:{self.env.get('PATH', '')}"
        if not docker:  # an engine that never answers: the stack must fall back to local
            self.env["DOCKER_HOST"] = f"unix://{home}/no-docker.sock"
        self.pids: dict[int, str] = {}

    def sorna(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "sorna"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.home,
        )

    def up(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``sorna up -d`` on this stack's port; note the processes it started."""
        done = self.sorna("up", "-d", "--port", str(self.port), *args, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr
        self._note_processes()
        return done

    def _note_processes(self) -> None:
        for pid in descendants(self.supervisor_pid()):
            self.pids.setdefault(pid, start_time(pid))

    def supervisor_pid(self) -> int:
        import json

        state = json.loads((self.data_dir / "run" / "state.json").read_text())
        pid: int = state["pid"]
        return pid

    def down(self) -> subprocess.CompletedProcess[str]:
        if (self.data_dir / "run" / "state.json").exists():
            self._note_processes()
        return self.sorna("down", timeout=200)

    def containers(self) -> set[str]:
        """The kernel containers of this stack's agent (whose id its scratch folder keeps)."""
        id_file = self.data_dir / "scratch" / AGENT_ID_FILE
        if not id_file.exists():  # no agent ever started: no kernel either
            return set()
        return kernel_containers(id_file.read_text().strip())

    def leftovers(self) -> list[str]:
        """What the stack left behind: processes, kernel containers, the gateway port."""
        found = [
            f"process {pid} ({cmdline(pid)})"
            for pid, t in sorted(self.pids.items())
            if alive(pid, t)
        ]
        found += [f"container {c}" for c in sorted(self.containers())]
        if not port_free(self.port):
            found.append(f"port {self.port}")
        return found

    def cleanup(self) -> None:
        """Stop the stack whatever state it is in; kill what ``sorna down`` missed."""
        try:
            self.down()
        finally:
            deadline = time.monotonic() + 10
            while any(alive(*p) for p in self.pids.items()) and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid, started in self.pids.items():
                if alive(pid, started):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary folder other users can reach: as root, the embedded PostgreSQL runs as
    ``nobody`` below it (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="su-", dir="/tmp"))  # short: kernel sockets live below
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stack_factory(open_tmp: Path) -> Iterator[type[Stack]]:
    """Make :class:`Stack` objects that are brought down at the end of the test."""
    made: list[Stack] = []

    class _Stack(Stack):
        def __init__(self, bin_dir: Path, **kw: bool) -> None:
            home = open_tmp / f"home{len(made)}"
            home.mkdir()
            super().__init__(bin_dir, home, **kw)
            made.append(self)

    try:
        yield _Stack
    finally:
        for stack in made:
            stack.cleanup()
