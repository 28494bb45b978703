"""The local backend's sandbox: the probe, and the kernels an earlier agent left running."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from sorna.agent.localbackend import LocalBackend
from sorna.agent.sandbox import DEFAULT_BWRAP, local_sandbox_problem

UID_BASE = 200_500


def test_probe_names_a_missing_bubblewrap(tmp_path: Path) -> None:
    missing = tmp_path / "bwrap"
    problem = local_sandbox_problem(missing)
    assert problem is not None and str(missing) in problem and "bubblewrap" in problem


def test_probe_accepts_this_host() -> None:
    if not DEFAULT_BWRAP.exists():
        pytest.skip("bubblewrap is not installed")
    assert local_sandbox_problem() is None


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def _spawn(uid: int, marker: str) -> subprocess.Popen[bytes]:
    """A process of ``uid`` whose command line names ``marker``, with a child of its own."""
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    return subprocess.Popen([*drop, "sh", "-c", "sleep 600 & wait", marker], start_new_session=True)


def _gone(pid: int) -> bool:
    """No such process, or only a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


async def test_processes_of_an_earlier_agents_kernels_are_ended(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run processes as the kernels' uids")
    ipc_root, state_root = tmp_path / "ipc", tmp_path / "local"
    (state_root / "k1").mkdir(parents=True)
    orphan = _spawn(UID_BASE + 3, f"{ipc_root}/k1/repl-in.sock")
    stranger = _spawn(65534, f"{ipc_root}/k2/repl-in.sock")  # not one of our uids
    try:
        deadline = time.monotonic() + 10
        while not (_children(orphan.pid) and _children(stranger.pid)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        grandchild = _children(orphan.pid)[0]
        backend = LocalBackend(ipc_root=ipc_root, state_root=state_root, uid_base=UID_BASE)
        await backend.start(lambda kernel_id, reason: None)
        orphan.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(grandchild):
            assert time.monotonic() < deadline, "the orphan's child survived"
            await asyncio.sleep(0.05)
        assert _alive(stranger)
        assert await backend.adoptable() == ([], ["k1"])
        await backend.remove_leftover("k1")
        assert not (state_root / "k1").exists()
        await backend.close()
    finally:
        for proc in (orphan, stranger):
            for pid in [*_children(proc.pid), proc.pid] if _alive(proc) else []:
                os.kill(pid, 9)
            proc.wait()
