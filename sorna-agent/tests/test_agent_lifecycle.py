"""Kernel deaths, re-adoption, idle reaping, reset, heartbeats and shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from sorna.common import messages as msg
from sorna.common.constants import KERNEL_CONTAINER_PREFIX
from sorna.common.keys import RedisKeys
from sorna.common.langs import decode_aliases, decode_list
from sorna.repl.kernelspec import kernel_specs

pytestmark = pytest.mark.docker
KEYS = RedisKeys()


async def test_container_killed_from_outside(make_agent, rpc, redis, events) -> None:
    agent = await make_agent()
    client = rpc(agent)
    await client.call(
        msg.CREATE_KERNEL.name, {"kernel_id": "victim", "lang": "python3", "owner": "AK"}
    )
    proc = await asyncio.create_subprocess_exec(
        "docker", "kill", f"{KERNEL_CONTAINER_PREFIX}victim", stdout=subprocess.DEVNULL
    )
    assert await proc.wait() == 0
    # Docker's "die" event ends the kernel (bench/deadlines.py times it); 60 s guard a hang.
    event = await events.wait(
        redis, "kernel_terminated", lambda body: body.kernel_id == "victim", within=60
    )
    assert event.body.reason == "killed"
    assert agent.kernel_ids == []


async def test_restarted_agent_readopts_kernels(make_agent, rpc, run) -> None:
    first = await make_agent(keep_kernels_on_shutdown=True)
    client = rpc(first)
    for kid in ("a", "b"):
        await client.call(
            msg.CREATE_KERNEL.name, {"kernel_id": kid, "lang": "python3", "owner": "AK"}
        )
        await run(client, kid, f"state = '{kid}' * 2")
    await first.close()
    second = await make_agent()
    assert sorted(second.kernel_ids) == ["a", "b"]
    client = rpc(second)
    for kid in ("a", "b"):
        assert (await run(client, kid, "print(state)"))["stdout"] == f"{kid * 2}\n"


async def test_idle_kernels_are_reaped(make_agent, rpc, redis, events) -> None:
    agent = await make_agent(backend="local", idle_timeout=1.0)
    client = rpc(agent)
    await client.call(
        msg.CREATE_KERNEL.name, {"kernel_id": "idle", "lang": "python3", "owner": "AK"}
    )
    event = await events.wait(
        redis, "kernel_terminated", lambda body: body.kernel_id == "idle", within=60
    )
    assert event.body.reason == "idle-timeout"
    assert agent.kernel_ids == []


async def test_reset_destroys_everything(make_agent, rpc) -> None:
    agent = await make_agent()
    client = rpc(agent)
    for kid in ("x", "y"):
        await client.call(
            msg.CREATE_KERNEL.name, {"kernel_id": kid, "lang": "python3", "owner": "AK"}
        )
    result = await client.call(msg.RESET.name, {})
    assert sorted(result["destroyed"]) == ["x", "y"]
    assert agent.kernel_ids == []


async def test_registry_entry_names_the_languages_and_their_aliases(make_agent, rpc, redis) -> None:
    """The agent publishes what a gateway resolves names against: the languages of its images,
    the known ones (kernel folders) it has no image of, and every alias of them."""
    agent = await make_agent(backend="local")
    raw = await redis.hgetall(KEYS.agent(agent.agent_id))
    entry = {k.decode(): v.decode() for k, v in raw.items()}
    served = set(decode_list(entry["langs"]))
    unbuilt = set(decode_list(entry["unbuilt_langs"]))
    specs = kernel_specs()
    assert "python3" in served and served | unbuilt == set(specs) and not served & unbuilt
    aliases = decode_aliases(entry["aliases"])
    assert aliases == {a: lang for lang, spec in specs.items() for a in spec.aliases}
    client_lang = next(iter(specs["python3"].aliases))
    created = await rpc(agent).call(
        msg.CREATE_KERNEL.name, {"kernel_id": "k", "lang": client_lang.upper(), "owner": "AK"}
    )
    assert created["lang"] == "python3"


async def test_heartbeats_keep_the_alive_key(make_agent, rpc, redis, events) -> None:
    agent = await make_agent(backend="local", stats_interval=0.3)
    client = rpc(agent)
    await client.call(msg.CREATE_KERNEL.name, {"kernel_id": "k", "lang": "python3", "owner": "AK"})
    alive = KEYS.agent_alive(agent.agent_id)
    for _ in range(4):  # several TTLs' worth of heartbeats
        await asyncio.sleep(0.6)
        assert await redis.exists(alive)
    entry = {
        k.decode(): v.decode() for k, v in (await redis.hgetall(KEYS.agent(agent.agent_id))).items()
    }
    assert entry["addr"] == agent.address
    assert entry["num_kernels"] == "1"
    assert "python3" in entry["langs"].split(",")
    assert int(entry["used_mem_slots"]) > 0
    assert await redis.sismember(KEYS.agents(), agent.agent_id)
    stats = await events.wait(redis, "kernel_stats", lambda body: "k" in body.stats, within=60)
    assert stats.body.stats["k"].cpu_ms >= 0
    names = {e.name for e in await events.read(redis)}
    assert {"instance_started", "instance_heartbeat", "kernel_started"} <= names
    await client.call(msg.DESTROY_KERNEL.name, {"kernel_id": "k"})
    await agent.close()
    await events.wait(redis, "instance_terminated", lambda body: True, within=60)
    assert await redis.pttl(alive) != -1, "the alive key outlives its agent (no TTL)"
    deadline = time.monotonic() + 60  # a hang guard: the key expires after its TTL
    while await redis.exists(alive):
        assert time.monotonic() < deadline, "the alive key did not expire"
        await asyncio.sleep(0.1)


async def test_cli_sigterm_shutdown(redis_url, redis, scratch_root, events) -> None:
    env = {
        **os.environ,
        "SORNA_AGENT_ID": "cli-agent",
        "SORNA_BACKEND": "local",
        "SORNA_RPC_PORT": "0",
        "SORNA_RPC_HOST": "127.0.0.1",
        "SORNA_SCRATCH_ROOT": str(scratch_root),
        "SORNA_REDIS_URL": redis_url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sorna.agent.cli", env=env, stderr=subprocess.PIPE
    )
    try:
        await events.wait(redis, "instance_started", lambda b: b.agent_id == "cli-agent", 30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await events.wait(redis, "instance_terminated", lambda b: b.agent_id == "cli-agent", 1)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        assert proc.stderr is not None
        await proc.stderr.read()


async def test_cli_bad_config_exits_2(tmp_path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("idle_timeout = 'soon'\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sorna.agent.cli",
        "--config",
        str(bad),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "idle_timeout" in lines[0]
