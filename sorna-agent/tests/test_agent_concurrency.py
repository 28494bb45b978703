"""Many kernels on one agent, each executing at the same time."""

from __future__ import annotations

import asyncio

import pytest

from sorna.common import messages as msg

pytestmark = [pytest.mark.docker, pytest.mark.slow]


async def test_twenty_kernels_execute_at_once(make_agent, rpc, run) -> None:
    agent = await make_agent()
    client = rpc(agent)
    ids = [f"k{i:02d}" for i in range(20)]
    await asyncio.gather(
        *(
            client.call(
                msg.CREATE_KERNEL.name, {"kernel_id": kid, "lang": "python3", "owner": "AK"}
            )
            for kid in ids
        )
    )
    assert sorted(agent.kernel_ids) == ids
    results = await asyncio.gather(
        *(
            run(client, kid, f"import time\ntime.sleep(0.5)\nprint({i} * {i})")
            for i, kid in enumerate(ids)
        )
    )
    assert [r["stdout"] for r in results] == [f"{i * i}\n" for i in range(20)]
    await client.call(msg.RESET.name, {})
