"""Execution through the agent's RPC, on both backends: results, FIFO, input, batch, timeout."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from sorna.common import messages as msg
from sorna.common.errors import MethodNotFound, RemoteError

pytestmark = pytest.mark.docker


async def _kernel(make_agent, rpc, backend: str, lang: str = "python3", **limits: Any):
    agent = await make_agent(backend=backend)
    client = rpc(agent)
    await client.call(
        msg.CREATE_KERNEL.name, {"kernel_id": "k1", "lang": lang, "owner": "AK", "limits": limits}
    )
    return agent, client


async def test_continued_then_finished_with_merged_chunks(make_agent, rpc, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name)
    code = "import time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(0.3)\n"
    params = {"kernel_id": "k1", "run_id": "r1", "mode": "query", "code": code}
    results = [await client.call(msg.EXECUTE.name, params)]
    while results[-1]["status"] == "continued":
        params = {**params, "mode": "continue", "code": ""}
        results.append(await client.call(msg.EXECUTE.name, params))
    assert results[0]["status"] == "continued"
    assert results[-1]["status"] == "finished"
    assert all(r["runId"] == "r1" for r in results)
    for r in results:  # adjacent chunks of one stream are merged
        streams = [item[0] for item in r["console"]]
        assert all(a != b for a, b in itertools.pairwise(streams)), r
    stdout = "".join(i[1] for r in results for i in r["console"] if i[0] == "stdout")
    assert stdout == "0\n1\n2\n3\n"


async def test_errors_go_to_stderr_and_state_survives(make_agent, rpc, run, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name)
    first = await run(client, "k1", "x = 41\nraise ValueError('boom')")
    assert first["status"] == "finished"
    assert "ValueError: boom" in first["stderr"]
    second = await run(client, "k1", "print(x + 1)")
    assert second["stdout"] == "42\n"


async def test_waiting_input(make_agent, rpc, run, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name)
    result = await run(client, "k1", "name = input('name? ')\nprint('hi', name)", inputs=["Ada"])
    assert "waiting-input" in result["statuses"]
    assert result["stdout"] == "name? hi Ada\n"


async def test_runs_are_served_fifo(make_agent, rpc, run, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name)
    first = asyncio.create_task(
        run(client, "k1", "import time\ntime.sleep(0.6)\nx = 'a'", run_id="a")
    )
    await asyncio.sleep(0.1)
    second = await run(client, "k1", "print(x)", run_id="b")
    assert second["stdout"] == "a\n"
    assert (await first)["status"] == "finished"


async def test_exec_timeout_restarts_the_kernel(make_agent, rpc, run, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name, exec_timeout_ms=1500)
    await run(client, "k1", "x = 1\nopen('kept.txt', 'w').write('kept')")
    result = await run(client, "k1", "while True:\n    pass")
    assert result["status"] == "exec-timeout"
    again = await run(client, "k1", "print(open('kept.txt').read()); print(x)")
    assert again["stdout"] == "kept\n"  # the kernel answers, scratch kept, state gone
    assert "NameError" in again["stderr"]


async def test_restart_keeps_scratch(make_agent, rpc, run, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name)
    await run(client, "k1", "y = 5\nopen('data.txt', 'w').write('scratch')")
    assert await client.call(msg.RESTART_KERNEL.name, {"kernel_id": "k1"}) == {}
    result = await run(client, "k1", "print(open('data.txt').read())\nprint(y)")
    assert result["stdout"] == "scratch\n"
    assert "NameError" in result["stderr"]


async def test_batch_build_and_exec(make_agent, rpc, run, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name, lang="c")
    source = b'#include <stdio.h>\nint main(void) { printf("built %d\\n", 6 * 7); return 0; }\n'
    await client.call(msg.UPLOAD_FILE.name, {"kernel_id": "k1", "path": "main.c", "data": source})
    result = await run(client, "k1", "", mode="batch", options={"build": "*", "exec": "*"})
    assert "build-finished" in result["statuses"]
    assert result["statuses"][-1] == "finished"
    assert result["stdout"] == "built 42\n"


async def test_interrupt_and_completions(make_agent, rpc, run, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name)
    task = asyncio.create_task(run(client, "k1", "import time\ntime.sleep(30)"))
    await asyncio.sleep(0.5)
    assert await client.call(msg.INTERRUPT_KERNEL.name, {"kernel_id": "k1"}) == {}
    result = await task
    assert result["status"] == "finished"
    assert "KeyboardInterrupt" in result["stderr"]
    found = await client.call(msg.GET_COMPLETIONS.name, {"kernel_id": "k1", "code": "pri"})
    assert "print" in "".join(found["completions"])


async def test_rpc_errors(make_agent, rpc, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name)
    with pytest.raises(RemoteError) as info:
        await client.call(msg.EXECUTE.name, {"kernel_id": "nope", "run_id": "r", "mode": "query"})
    assert info.value.type == "kernel-not-found"
    with pytest.raises(RemoteError) as info:
        await client.call(
            msg.CREATE_KERNEL.name, {"kernel_id": "k2", "lang": "cobol", "owner": "AK"}
        )
    assert info.value.type == "unsupported-lang"
    with pytest.raises(RemoteError) as info:
        await client.call(msg.CREATE_KERNEL.name, {"kernel_id": "k3", "lang": 5, "owner": "AK"})
    assert info.value.type == "invalid-api-params"
    # The agent takes modes literally: completions are get_completions (the gateway's call),
    # and the original client's query habits are read by the gateway, not here.
    for mode in ("complete", "nope"):
        with pytest.raises(RemoteError) as info:
            await client.call(
                msg.EXECUTE.name,
                {"kernel_id": "k1", "run_id": "r", "mode": mode, "code": "pri"},
            )
        assert info.value.type == "invalid-api-params", mode
    with pytest.raises(MethodNotFound):
        await client.call("launch_missiles", {})
    assert await client.call(msg.PING.name, {"echo": [1, "x"]}) == {"echo": [1, "x"]}


async def test_shell_keeps_its_state_and_reads_input(make_agent, rpc, run, backend_name) -> None:
    """One bash per kernel on both backends: a variable, a function and $$ last; read works."""
    _, client = await _kernel(make_agent, rpc, backend_name, lang="shell")
    first = await run(client, "k1", 'n=41\nnext() { echo $((n + 1)); }\necho "$$"')
    assert first["stderr"] == "", first
    second = await run(client, "k1", 'read -r who\necho "$(next) $who $$"', inputs=["Ada ✓"])
    assert "waiting-input" in second["statuses"]
    assert second["stdout"] == f"42 Ada ✓ {first['stdout'].strip()}\n"
