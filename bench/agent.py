"""Agent overhead, each figure beside its baseline from the same run.

1. Warm round trip: ``execute`` of ``print(1)`` through the agent's RPC (agent in its own
   process, docker backend, python3 kernel) to the ``finished`` result, beside the raw REPL
   round trip of bench/repl.py (``code`` -> ``finished`` straight to a kernel container's
   sockets). Target: <= 1 ms added at p50.
2. Kernel creation: ``create_kernel`` through RPC (returns once the daemon listens) beside
   ``docker run -d`` of the same image (returns once the container started). Target ratio
   <= 1.3.
3. The disk cap's cost: ``create_kernel`` + ``destroy_kernel`` on an agent with disk caps
   (each kernel's /home/work a 1 GiB sparse ext4 image, loop-mounted) beside the same on an
   agent without (``caps.max_disk_mib = 0``), alternated, and the attach (mkfs, loop, mount)
   and release (unmount, remove) of one 1 GiB image alone.

3. ``--local``: instead of 1 and 2, create-to-first-output of a local-backend python3 kernel
   (``create_kernel`` then ``execute`` of ``print(1)`` until ``finished``), beside the same
   through the docker backend; the local kernel runs in its bubblewrap sandbox.

Usage: python bench/agent.py [--rounds 2000] [--creates 7] [--local]
Needs Docker and the sorna/kernel-python3 image (make image LANG=python3).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

from sorna.common.agentapi import AgentClient
from sorna.common.ids import KernelId, RunId
from sorna.common.keys import RedisKeys
from sorna.common.langs import image_name
from sorna.common.messages import CreateKernelParams, ExecuteParams, ExecuteResult, KernelRef
from sorna.common.rpc import RPCClient
from sorna.common.servers import ValkeyServer

AGENT_ID = "bench-agent"
NO_DISK_AGENT_ID = "bench-agent-nodisk"


def _load_repl_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_repl", Path(__file__).with_name("repl.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def start_agent(
    redis_url: str,
    scratch: Path,
    agent_id: str = AGENT_ID,
    backend: str = "docker",
    **settings: str,
) -> tuple[asyncio.subprocess.Process, str]:
    env = {
        **os.environ,
        **settings,
        "SORNA_AGENT_ID": agent_id,
        "SORNA_BACKEND": backend,
        "SORNA_RPC_HOST": "127.0.0.1",
        "SORNA_RPC_PORT": "0",
        "SORNA_SCRATCH_ROOT": str(scratch),
        "SORNA_REDIS_URL": redis_url,
        "SORNA_LOGGING_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "sorna.agent.cli", env=env)
    redis = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 60
        while True:
            addr = await redis.hget(RedisKeys().agent(agent_id), "addr")  # type: ignore[misc]
            if addr:
                return proc, addr.decode()
            if time.monotonic() > deadline or proc.returncode is not None:
                raise RuntimeError("the agent did not start")
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


async def create(client: RPCClient, kernel_id: str) -> None:
    params = CreateKernelParams(kernel_id=KernelId(kernel_id), lang="python3", owner="b")
    await AgentClient(client).create_kernel(params)


async def destroy(client: RPCClient, kernel_id: str) -> None:
    await AgentClient(client).destroy_kernel(KernelRef(KernelId(kernel_id)))


async def print_one(client: RPCClient, kernel_id: str, run_id: str) -> ExecuteResult:
    params = ExecuteParams(
        kernel_id=KernelId(kernel_id), run_id=RunId(run_id), mode="query", code="print(1)"
    )
    return await AgentClient(client).execute(params)


async def agent_round_trips(client: RPCClient, kernel_id: str, rounds: int) -> list[float]:
    times = []
    agent = AgentClient(client)
    for i in range(rounds + 50):
        params = ExecuteParams(
            kernel_id=KernelId(kernel_id), run_id=RunId(f"r{i}"), mode="query", code="print(1)"
        )
        t0 = time.perf_counter()
        result = await agent.execute(params)
        took = (time.perf_counter() - t0) * 1000
        assert result.status == "finished", result
        if i >= 50:
            times.append(took)
    return times


def docker_run_detached(ref: str) -> float:
    name = f"bench-run-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "none", ref],
        check=True,
        capture_output=True,
    )
    took = time.perf_counter() - t0
    subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
    return took


async def create_to_first_output(backend: str, creates: int) -> list[float]:
    """Seconds from ``create_kernel`` to the ``finished`` of a first ``print(1)``."""
    scratch = Path(tempfile.mkdtemp(prefix="sa-bench-", dir="/tmp"))
    times: list[float] = []
    with ValkeyServer() as valkey:
        proc, addr = await start_agent(valkey.url, scratch, backend=backend)
        client = RPCClient(addr, timeout=60)
        try:
            for i in range(creates + 1):
                kernel_id = f"f{i}"
                t0 = time.perf_counter()
                await create(client, kernel_id)
                result = await print_one(client, kernel_id, "r")
                took = time.perf_counter() - t0
                assert result.status == "finished", result
                await destroy(client, kernel_id)
                if i:  # the first one warms caches
                    times.append(took)
        finally:
            await client.close()
            proc.terminate()
            await proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)
    return times


async def local_main(creates: int) -> int:
    local = await create_to_first_output("local", creates)
    docker = await create_to_first_output("docker", creates)
    l50, d50 = statistics.median(local), statistics.median(docker)
    print(f"create to first output of a python3 kernel, median of {creates}:")
    print(f"  local backend:   {l50 * 1000:.0f} ms (min {min(local) * 1000:.0f})")
    print(f"  docker backend:  {d50 * 1000:.0f} ms (min {min(docker) * 1000:.0f})")
    print(f"  ratio local/docker {l50 / d50:.2f}")
    return 0


def disk_attach_release(scratch: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of attaching and of releasing one 1 GiB kernel disk, ``rounds`` times."""
    from sorna.agent.disk import DiskCaps

    disks = DiskCaps(scratch_root=scratch, work_root=scratch / "work")
    attach, release = [], []
    for i in range(rounds):
        folder = scratch / "work" / f"d{i}"
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        disks.attach(f"d{i}", folder, 1 << 20, 1000)
        t1 = time.perf_counter()
        disks.release(f"d{i}", folder)
        attach.append(t1 - t0)
        release.append(time.perf_counter() - t1)
        folder.rmdir()
    return attach, release


async def create_destroy(client: RPCClient, kernel_id: str) -> float:
    t0 = time.perf_counter()
    await create(client, kernel_id)
    took = time.perf_counter() - t0
    await destroy(client, kernel_id)
    return took


async def disk_cost(redis_url: str, capped: RPCClient, creates: int) -> tuple[list[float], ...]:
    """Creation times with and without the disk cap, alternated, and attach/release alone."""
    scratch = Path(tempfile.mkdtemp(prefix="sa-bench-nd-", dir="/tmp"))
    proc, addr = await start_agent(
        redis_url, scratch, NO_DISK_AGENT_ID, SORNA_CAPS_MAX_DISK_MIB="0"
    )
    uncapped = RPCClient(addr, timeout=60)
    with_cap, without = [], []
    try:
        for i in range(creates):
            without.append(await create_destroy(uncapped, f"n{i}"))
            with_cap.append(await create_destroy(capped, f"d{i}"))
    finally:
        await uncapped.close()
        proc.terminate()
        await proc.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    alone = Path(tempfile.mkdtemp(prefix="sa-bench-disk-", dir="/tmp"))
    try:
        attach, release = await asyncio.to_thread(disk_attach_release, alone, 4 * creates)
    finally:
        shutil.rmtree(alone, ignore_errors=True)
    return with_cap, without, attach, release


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--creates", type=int, default=7)
    parser.add_argument("--local", action="store_true", help="create-to-first-output only")
    args = parser.parse_args()
    if args.local:
        return await local_main(args.creates)
    repl_bench = _load_repl_bench()
    ref = image_name("python3")
    scratch = Path(tempfile.mkdtemp(prefix="sa-bench-", dir="/tmp"))
    with ValkeyServer() as valkey:
        proc, addr = await start_agent(valkey.url, scratch)
        client = RPCClient(addr, timeout=60)
        try:
            raw = await repl_bench.kernel_round_trips("python3", args.rounds, "print(1)")
            await create(client, "warm")
            via = await agent_round_trips(client, "warm", args.rounds)
            await destroy(client, "warm")

            creates, runs = [], []
            for i in range(args.creates):
                runs.append(await asyncio.to_thread(docker_run_detached, ref))
                t0 = time.perf_counter()
                await create(client, f"c{i}")
                creates.append(time.perf_counter() - t0)
                await destroy(client, f"c{i}")
            with_cap, without, attach, release = await disk_cost(valkey.url, client, args.creates)
        finally:
            await client.close()
            proc.terminate()
            await proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)
    r50, r99 = repl_bench.percentile(raw, 0.5), repl_bench.percentile(raw, 0.99)
    a50, a99 = repl_bench.percentile(via, 0.5), repl_bench.percentile(via, 0.99)
    print(f"warm round trip, {args.rounds} rounds of `print(1)` (python3 container):")
    print(f"  raw REPL (bench/repl.py):  p50 {r50:.3f} ms  p99 {r99:.3f} ms")
    print(f"  through the agent's RPC:   p50 {a50:.3f} ms  p99 {a99:.3f} ms")
    added = a50 - r50
    print(f"  added at p50: {added:.3f} ms (target <= 1 ms: {'OK' if added <= 1 else 'over'})")
    c50, d50 = statistics.median(creates), statistics.median(runs)
    print(f"kernel creation, median of {args.creates}:")
    print(f"  docker run -d {ref}:  {d50 * 1000:.0f} ms")
    print(f"  create_kernel via RPC:     {c50 * 1000:.0f} ms")
    ratio = c50 / d50
    print(f"  ratio {ratio:.2f} (target <= 1.3: {'OK' if ratio <= 1.3 else 'over'})")
    w50, n50 = statistics.median(with_cap), statistics.median(without)
    print(f"disk cap (1 GiB loop-mounted ext4), median of {args.creates} alternated creates:")
    print(f"  create_kernel without disk caps: {n50 * 1000:.0f} ms")
    print(f"  create_kernel with the cap:      {w50 * 1000:.0f} ms")
    print(f"  ratio {w50 / n50:.2f}, added {(w50 - n50) * 1000:.1f} ms")
    a50, l50 = statistics.median(attach), statistics.median(release)
    print(f"  attach alone (mkfs + loop + mount), median of {len(attach)}: {a50 * 1000:.1f} ms")
    print(f"  release alone (unmount + remove):                 {l50 * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
