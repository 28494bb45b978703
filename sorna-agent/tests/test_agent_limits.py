"""Container limits hold: memory (OOM kill), no network, pids limit."""

from __future__ import annotations

import pytest

from sorna.agent.config import CapsSettings
from sorna.common import messages as msg

pytestmark = pytest.mark.docker


async def test_oom_kill_is_reported_and_the_agent_is_fine(
    make_agent, rpc, run, redis, events
) -> None:
    agent = await make_agent()
    client = rpc(agent)
    created = await client.call(
        msg.CREATE_KERNEL.name,
        {"kernel_id": "big", "lang": "python3", "owner": "AK", "limits": {"mem_kib": 128 * 1024}},
    )
    assert created["limits"]["mem_kib"] == 128 * 1024
    result = await run(client, "big", "x = 'x' * (1 << 30)\nprint(len(x))")
    assert result["status"] == "finished"
    assert "oom-killed" in result["stderr"]
    event = await events.wait(
        redis, "kernel_terminated", lambda body: body.kernel_id == "big", within=60
    )
    assert event.body.reason == "oom-killed"
    assert event.body.stats.mem_max_bytes > 64 << 20
    assert agent.kernel_ids == []
    assert await client.call(msg.PING.name, {"echo": "ok"}) == {"echo": "ok"}
    await client.call(
        msg.CREATE_KERNEL.name, {"kernel_id": "next", "lang": "python3", "owner": "AK"}
    )
    assert (await run(client, "next", "print('fine')"))["stdout"] == "fine\n"


async def test_no_network(make_agent, rpc, run) -> None:
    agent = await make_agent()
    client = rpc(agent)
    await client.call(msg.CREATE_KERNEL.name, {"kernel_id": "k", "lang": "python3", "owner": "AK"})
    code = (
        "import socket\n"
        "try:\n"
        "    s = socket.socket()\n"
        "    s.settimeout(3)\n"
        "    s.connect(('1.1.1.1', 53))\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print('refused', type(e).__name__)\n"
        "import os\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
    )
    result = await run(client, "k", code)
    assert "connected" not in result["stdout"]
    assert "refused" in result["stdout"], result
    assert "['lo']" in result["stdout"]


async def test_pids_limit_holds(make_agent, rpc, run) -> None:
    agent = await make_agent(caps=CapsSettings(pids_limit=40))
    client = rpc(agent)
    await client.call(msg.CREATE_KERNEL.name, {"kernel_id": "k", "lang": "python3", "owner": "AK"})
    code = (
        "import threading, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 500:\n"
        "        threading.Thread(target=time.sleep, args=(10,), daemon=True).start()\n"
        "        n += 1\n"
        "except RuntimeError as e:\n"
        "    print('stopped at', n)\n"
    )
    result = await run(client, "k", code)
    assert result["stdout"].startswith("stopped at"), result
    assert int(result["stdout"].split()[-1]) < 40


async def test_core_count_env_and_cpuset(make_agent, rpc, run) -> None:
    agent = await make_agent()
    client = rpc(agent)
    await client.call(
        msg.CREATE_KERNEL.name,
        {"kernel_id": "k", "lang": "python3", "owner": "AK", "limits": {"cpus": 1}},
    )
    code = "import os\nprint(os.environ['NPROC'], len(os.sched_getaffinity(0)))"
    assert (await run(client, "k", code))["stdout"] == "1 1\n"
    result = await run(client, "k", "open('/etc/x', 'w')")
    assert "Error" in result["stderr"]  # read-only root
