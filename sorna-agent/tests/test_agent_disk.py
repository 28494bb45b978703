"""The disk cap of a kernel's /home/work: ENOSPC at the cap on both backends, uploads count,
defaults and the agent's cap, and nothing left behind (destroy, failed create, killed agent)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from sorna.agent.agent import Agent
from sorna.agent.config import CapsSettings
from sorna.agent.disk import DiskCaps, DiskCapsUnavailable, image_bytes
from sorna.agent.errors import KernelCreationFailed
from sorna.agent.images import ImageInfo
from sorna.agent.localbackend import LocalBackend
from sorna.common import messages as msg
from sorna.common.constants import (
    KERNEL_CONTAINER_PREFIX,
    LABEL_AGENT_ID,
    LABEL_LANG,
    LABEL_MAXDISK,
    LABEL_VERSION,
)
from sorna.common.errors import RemoteError
from sorna.common.keys import RedisKeys
from sorna.common.rpc import RPCClient
from sorna.common.testing.leftovers import kill_processes_under, mounts_under

pytestmark = pytest.mark.docker

MiB = 1 << 20

#: Writes {size} bytes to {name} in the kernel's folder; prints "ok n" or "<errno name> n".
FILL = """\
import errno, os
n = 0
try:
    with open({name!r}, 'wb', buffering=0) as f:
        chunk = b'x' * (1 << 20)
        while n < {size}:
            n += f.write(chunk[: min(len(chunk), {size} - n)])
        os.fsync(f.fileno())
    print('ok', n)
except OSError as e:
    print(errno.errorcode[e.errno], n)
"""
#: Fills the kernel's folder to the last block (a write larger than what is left fails whole).
BRIM = """\
import errno
with open('brim', 'wb', buffering=0) as f:
    for size in (1 << 20, 4096):
        try:
            while True:
                f.write(b'b' * size)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
print('full')
"""
#: Prints the size and the free space of the kernel's folder, in bytes.
STATVFS = "import os\ns = os.statvfs('.')\nprint(s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize)"


async def _create(client: RPCClient, kernel_id: str = "k", **limits: Any) -> dict[str, Any]:
    params = {"kernel_id": kernel_id, "lang": "python3", "owner": "AK", "limits": limits}
    result: dict[str, Any] = await client.call(msg.CREATE_KERNEL.name, params)
    return result


async def _fill(run: Any, client: RPCClient, kid: str, name: str, size: int) -> tuple[str, int]:
    result = await run(client, kid, FILL.format(name=name, size=size))
    status, written = result["stdout"].split()
    return status, int(written)


async def _statvfs(run: Any, client: RPCClient, kid: str) -> tuple[int, int]:
    size, free = (await run(client, kid, STATVFS))["stdout"].split()
    return int(size), int(free)


def _host_bytes(root: Path) -> int:
    """Bytes allocated on the host's filesystem under ``root``, not counting what is mounted."""
    dev = root.stat().st_dev
    total = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(folder, d)).st_dev == dev]
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def _loops_of(images: Path) -> list[str]:
    """Loop devices whose backing file is under ``images``."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().startswith(str(images.resolve()) + "/"):
                found.append(backing.parent.parent.name)
        except OSError:
            continue
    return found


def _docker(*args: str) -> list[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    return done.stdout.split()


def _disk_state(scratch_root: Path, kid: str) -> tuple[bool, bool, bool]:
    """(mounted, image present, loop device bound) for kernel ``kid``."""
    work = str((scratch_root / "work" / kid).resolve())
    image = scratch_root / "disk" / f"{kid}.img"
    loops = [
        name
        for name in _loops_of(scratch_root / "disk")
        if Path(f"/sys/block/{name}/loop/backing_file").read_text().strip().startswith(str(image))
    ]
    return work in mounts_under(scratch_root), image.exists(), bool(loops)


# ------------------------------------------------------------------ enforcement


async def test_writes_past_the_cap_fail_with_enospc(
    make_agent, rpc, run, backend_name, scratch_root
) -> None:
    agent = await make_agent(backend=backend_name)
    client = rpc(agent)
    created = await _create(client, disk_kib=64 * 1024)
    assert created["limits"]["disk_kib"] == 64 * 1024
    before = _host_bytes(scratch_root)
    status, written = await _fill(run, client, "k", "big", 100 * MiB)
    assert status in ("ENOSPC", "EDQUOT"), (status, written)
    assert 63 * MiB <= written <= 64 * MiB + 256 * 1024
    # The host's filesystem took no more than the image, whatever the kernel tried.
    grown = _host_bytes(scratch_root) - before
    assert grown <= image_bytes(64 * 1024), grown
    # The kernel is fine, and can free what it wrote.
    result = await run(client, "k", "import os\nos.remove('big')\nprint('removed')")
    assert result["stdout"] == "removed\n"
    status, _ = await _fill(run, client, "k", "again", 32 * MiB)
    assert status == "ok"


async def test_the_cap_is_the_bound(make_agent, rpc, run, backend_name) -> None:
    cap = 32 * MiB
    agent = await make_agent(backend=backend_name)
    client = rpc(agent)
    await _create(client, disk_kib=cap // 1024)
    size, free = await _statvfs(run, client, "k")
    assert cap <= free <= cap + 256 * 1024, (size, free)
    # A file of the cap itself fits (and so does anything smaller) ...
    assert await _fill(run, client, "k", "exact", cap) == ("ok", cap)
    assert (await run(client, "k", "import os\nos.remove('exact')"))["stderr"] == ""
    assert await _fill(run, client, "k", "under", cap - 4096) == ("ok", cap - 4096)
    assert (await run(client, "k", "import os\nos.remove('under')"))["stderr"] == ""
    # ... and the cap plus half a MiB does not.
    status, written = await _fill(run, client, "k", "over", cap + 512 * 1024)
    assert status in ("ENOSPC", "EDQUOT"), (status, written)
    assert written < cap + 512 * 1024


async def test_uploads_count_against_the_cap(make_agent, rpc, run, backend_name) -> None:
    agent = await make_agent(backend=backend_name)
    client = rpc(agent)
    await _create(client, disk_kib=16 * 1024)
    _, free = await _statvfs(run, client, "k")
    assert (await _fill(run, client, "k", "filler", free - 128 * 1024))[0] == "ok"
    big = {"kernel_id": "k", "path": "up/big.bin", "data": b"u" * (512 * 1024)}
    with pytest.raises(RemoteError) as info:
        await client.call(msg.UPLOAD_FILE.name, big)
    assert info.value.type == "payload-too-large", info.value
    # No partial upload is kept, and what fits still goes in.
    listing = await client.call(msg.LIST_FILES.name, {"kernel_id": "k", "path": "up"})
    assert [f["size"] for f in listing["files"] if f["name"] == "big.bin"] in ([], [0])
    await client.call(
        msg.UPLOAD_FILE.name, {"kernel_id": "k", "path": "small.txt", "data": b"s" * 4096}
    )
    result = await run(client, "k", "print(len(open('small.txt', 'rb').read()))")
    assert result["stdout"] == "4096\n"
    # Full to the last block: not even a new folder or a one-byte file goes in.
    result = await run(client, "k", BRIM)
    assert result["stdout"] == "full\n", result
    for path in ("one.txt", "new/folder/one.txt"):
        with pytest.raises(RemoteError) as info:
            await client.call(msg.UPLOAD_FILE.name, {"kernel_id": "k", "path": path, "data": b"1"})
        assert info.value.type == "payload-too-large", (path, info.value)


# ------------------------------------------------------------------ limits


def test_the_label_gives_the_image_default() -> None:
    base = {LABEL_LANG: "python3", LABEL_VERSION: "2"}
    assert ImageInfo.from_labels("x", base).disk_kib == 1024 * 1024  # no label: 1 GiB
    assert ImageInfo.from_labels("x", {**base, LABEL_MAXDISK: "2g"}).disk_kib == 2 * 1024 * 1024
    assert ImageInfo.from_labels("x", {**base, LABEL_MAXDISK: "512m"}).disk_kib == 512 * 1024


async def test_default_request_and_agent_cap(make_agent, rpc, run) -> None:
    agent = await make_agent(backend="local", caps=CapsSettings(max_disk_mib=48))
    client = rpc(agent)
    asked = {"none": {}, "zero": {"disk_kib": 0}, "small": {"disk_kib": 20 * 1024}}
    asked["huge"] = {"disk_kib": 1 << 40}
    for kid, limits in asked.items():
        await _create(client, kid, **limits)
    got = {}
    for kid in asked:
        created = await client.call(msg.LIST_FILES.name, {"kernel_id": kid, "path": ""})
        assert created["files"] == []  # a fresh, empty disk
        got[kid] = (await _statvfs(run, client, kid))[1] // MiB
    # The image's default (1 GiB) and anything above the agent's cap are clamped to the cap.
    assert got == {"none": 48, "zero": 48, "small": 20, "huge": 48}


async def test_the_image_default_is_one_gib(make_agent, rpc, run) -> None:
    agent = await make_agent(backend="local")
    client = rpc(agent)
    created = await _create(client)
    assert created["limits"]["disk_kib"] == 1024 * 1024
    _, free = await _statvfs(run, client, "k")
    assert 1024 * MiB <= free <= 1024 * MiB + 256 * 1024


async def test_no_disk_caps_when_disabled(make_agent, rpc, run, scratch_root, caplog) -> None:
    agent = await make_agent(backend="local", caps=CapsSettings(max_disk_mib=0))
    assert "no disk caps" in caplog.text
    client = rpc(agent)
    created = await _create(client, disk_kib=16 * 1024)
    assert created["limits"]["disk_kib"] == 0
    assert mounts_under(scratch_root) == []
    await client.call(msg.DESTROY_KERNEL.name, {"kernel_id": "k"})


async def test_an_agent_that_cannot_mount_refuses_to_start(
    make_agent, monkeypatch, scratch_root
) -> None:
    monkeypatch.setenv("PATH", str(scratch_root))  # no mkfs.ext4 to be found
    with pytest.raises(DiskCapsUnavailable, match=r"mkfs\.ext4.*max_disk_mib = 0"):
        await make_agent(backend="local")


def test_a_non_root_agent_refuses_disk_caps(scratch_root) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child probes as nobody and reports the error's text
        try:
            os.setuid(65534)
            DiskCaps(scratch_root=scratch_root, work_root=scratch_root / "work").probe()
            os.write(write, b"no error")
        except BaseException as e:
            os.write(write, f"{type(e).__name__}: {e}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode()
    os.waitpid(pid, 0)
    assert said.startswith("DiskCapsUnavailable: disk caps need the agent to run as root"), said
    assert "caps.max_disk_mib = 0" in said


# ------------------------------------------------------------------ nothing left behind


async def test_destroy_removes_mount_image_and_loop(make_agent, rpc, backend_name, scratch_root):
    agent = await make_agent(backend=backend_name)
    client = rpc(agent)
    await _create(client, disk_kib=16 * 1024)
    assert _disk_state(scratch_root, "k") == (True, True, True)
    await client.call(msg.DESTROY_KERNEL.name, {"kernel_id": "k"})
    assert _disk_state(scratch_root, "k") == (False, False, False)
    assert not (scratch_root / "work" / "k").exists()


class _FailingBackend(LocalBackend):
    """A local backend whose kernels never start (after the agent made their folders)."""

    async def create(self, spec):  # type: ignore[no-untyped-def]
        assert _disk_state(spec.scratch.root.parent.parent, spec.kernel_id)[0]
        raise KernelCreationFailed("this backend starts nothing")


async def test_a_failed_create_leaves_no_disk(redis_url, scratch_root) -> None:
    from sorna.agent.config import AgentSettings
    from sorna.common.config import RedisSettings

    settings = AgentSettings(
        agent_id=f"fail-{uuid.uuid4().hex[:6]}",
        rpc_host="127.0.0.1",
        rpc_port=0,
        backend="local",
        scratch_root=scratch_root,
        redis=RedisSettings(url=redis_url),
    )
    backend = _FailingBackend(ipc_root=scratch_root / "ipc", state_root=scratch_root / "local")
    agent = Agent(settings=settings, backend=backend)
    await agent.start()
    client = RPCClient(agent.address, timeout=60)
    try:
        with pytest.raises(RemoteError) as info:
            await _create(client, disk_kib=16 * 1024)
        assert info.value.type == "kernel-creation-failed"
        assert _disk_state(scratch_root, "k") == (False, False, False)
        assert mounts_under(scratch_root) == []
    finally:
        await client.close()
        await agent.close()


async def _cli_agent(agent_id: str, backend: str, redis_url: str, scratch_root: Path):  # type: ignore[no-untyped-def]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SORNA_")},
        "SORNA_AGENT_ID": agent_id,
        "SORNA_BACKEND": backend,
        "SORNA_RPC_HOST": "127.0.0.1",
        "SORNA_RPC_PORT": "0",
        "SORNA_SCRATCH_ROOT": str(scratch_root),
        "SORNA_REDIS_URL": redis_url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sorna.agent.cli", env=env, stderr=subprocess.DEVNULL
    )
    redis = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 60
        while not (addr := await redis.hget(RedisKeys().agent(agent_id), "addr")):  # type: ignore[misc]
            assert proc.returncode is None, "the agent exited"
            assert time.monotonic() < deadline, "the agent did not start"
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    return proc, addr.decode()


def _kill_local_kernels(root: Path) -> None:
    """End the orphaned local kernels of a SIGKILLed agent (their cwd is under ``root``),
    and remove their socket folders: the dead agent never ran its clean-up."""
    kill_processes_under(root)
    for sockdir in Path(tempfile.gettempdir()).glob("sorna-local-*"):
        try:
            if str(root) in (sockdir / "policy.json").read_text():
                shutil.rmtree(sockdir, ignore_errors=True)
        except OSError:
            continue


async def test_a_killed_agents_disks_are_cleaned_by_the_next(
    make_agent, rpc, run, redis_url, scratch_root, backend_name
) -> None:
    agent_id = f"disk-{uuid.uuid4().hex[:8]}"
    proc, addr = await _cli_agent(agent_id, backend_name, redis_url, scratch_root)
    client = RPCClient(addr, timeout=60)
    second = None
    try:
        for kid in ("keep", "gone"):
            await _create(client, kid, disk_kib=16 * 1024)
        await client.call(
            msg.UPLOAD_FILE.name, {"kernel_id": "keep", "path": "kept.txt", "data": b"K"}
        )
    finally:
        await client.close()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    try:
        # What a killed agent leaves: its mounts, images and loop devices.
        assert _disk_state(scratch_root, "gone") == (True, True, True)
        if backend_name == "docker":  # "keep" lives on; "gone" died while no agent watched
            await asyncio.to_thread(_docker, "rm", "-f", f"{KERNEL_CONTAINER_PREFIX}gone")
        else:  # local kernels do not outlive their agent
            await asyncio.to_thread(_kill_local_kernels, scratch_root)
        second = await make_agent(backend=backend_name, agent_id=agent_id)
        assert _disk_state(scratch_root, "gone") == (False, False, False)
        if backend_name == "docker":
            # A re-adopted kernel keeps its disk, its files and its cap.
            assert second.kernel_ids == ["keep"]
            assert _disk_state(scratch_root, "keep") == (True, True, True)
            client = rpc(second)
            result = await run(client, "keep", "print(open('kept.txt').read())")
            assert result["stdout"] == "K\n"
            assert (await _fill(run, client, "keep", "big", 32 * MiB))[0] == "ENOSPC"
        else:
            assert second.kernel_ids == []
            assert _disk_state(scratch_root, "keep") == (False, False, False)
            assert mounts_under(scratch_root) == []
    finally:
        if second is None and backend_name == "docker":  # else the second agent removes them
            label = f"label={LABEL_AGENT_ID}={agent_id}"
            for cid in await asyncio.to_thread(_docker, "ps", "-aq", "--filter", label):
                await asyncio.to_thread(_docker, "rm", "-f", cid)
        await asyncio.to_thread(_kill_local_kernels, scratch_root)
