"""Create -> execute -> destroy on both backends."""

from __future__ import annotations

import pytest

from sorna.common import messages as msg


@pytest.mark.docker
async def test_create_execute_destroy(make_agent, rpc, run, backend_name) -> None:
    agent = await make_agent(backend=backend_name)
    client = rpc(agent)
    created = await client.call(
        msg.CREATE_KERNEL.name, {"kernel_id": "k1", "lang": "python", "owner": "AKIA", "limits": {}}
    )
    assert created["lang"] == "python3"
    result = await run(client, "k1", "x = 6 * 7\nprint(x)")
    assert result["status"] == "finished"
    assert result["stdout"] == "42\n"
    destroyed = await client.call(msg.DESTROY_KERNEL.name, {"kernel_id": "k1"})
    assert "cpu_ms" in destroyed["stats"]
    assert agent.kernel_ids == []
