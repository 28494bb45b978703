"""Agent ids: unique per scratch root, kept across restarts, never shared by two live agents;
a Docker agent touches only the containers labelled with its own id."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sorna.agent.agent import Agent
from sorna.agent.config import AgentSettings
from sorna.agent.errors import AgentIdInUse
from sorna.common import messages as msg
from sorna.common.config import RedisSettings
from sorna.common.constants import AGENT_ID_FILE, KERNEL_CONTAINER_PREFIX, LABEL_AGENT_ID
from sorna.common.errors import ConfigError
from sorna.common.rpc import RPCClient
from sorna.common.testing.leftovers import clean_folder
from sorna.common.testing.plugin import require_docker

from .conftest import run_to_end

Start = Callable[..., Awaitable[Agent]]


def _docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    return out.stdout.strip()


@pytest.fixture
async def agents(redis_url: str) -> AsyncIterator[tuple[Start, Callable[[], Path]]]:
    """Start agents with their own scratch roots (``new_root()``); close and clean up after."""
    started: list[Agent] = []
    roots: list[Path] = []
    ids: set[str] = set()

    def new_root() -> Path:
        root = Path(tempfile.mkdtemp(prefix="sid-", dir="/tmp"))
        roots.append(root)
        return root

    async def start(root: Path, **overrides: Any) -> Agent:
        fields: dict[str, Any] = {
            "agent_id": "",
            "rpc_host": "127.0.0.1",
            "rpc_port": 0,
            "backend": "docker",
            "scratch_root": root,
            "flush_interval": 0.5,
            "heartbeat_interval": 0.5,
            "redis": RedisSettings(url=redis_url),
        }
        fields.update(overrides)
        agent = Agent(settings=AgentSettings(**fields))
        ids.add(agent.agent_id)
        await agent.start()
        started.append(agent)
        return agent

    try:
        yield start, new_root
    finally:
        for agent in reversed(started):
            await agent.close()
        if shutil.which("docker"):
            for agent_id in ids:
                for cid in _docker(
                    "ps", "-aq", "--filter", f"label={LABEL_AGENT_ID}={agent_id}"
                ).split():
                    _docker("rm", "-f", cid)
        for root in roots:
            clean_folder(root)


def test_generated_id_is_kept_in_the_scratch_root(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    first = AgentSettings(scratch_root=one).effective_agent_id
    host = re.escape(socket.gethostname().split(".")[0])
    assert re.fullmatch(rf"{host}-[0-9a-f]{{8}}", first), first
    kept = one / AGENT_ID_FILE
    assert kept.read_text() == first + "\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o644
    # Read back on later starts; another scratch root gets another id.
    assert AgentSettings(scratch_root=one).effective_agent_id == first
    assert AgentSettings(scratch_root=two).effective_agent_id != first
    # A configured id wins and writes nothing.
    three = tmp_path / "three"
    assert AgentSettings(agent_id="edge-1", scratch_root=three).effective_agent_id == "edge-1"
    assert not (three / AGENT_ID_FILE).exists()
    assert os.listdir(one) == [AGENT_ID_FILE]  # no temporary file left behind


def test_unusable_scratch_root_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="scratch_root: cannot keep the agent id"):
        _ = AgentSettings(scratch_root=blocker / "scratch").effective_agent_id


async def test_same_configured_id_twice_is_refused(agents) -> None:  # type: ignore[no-untyped-def]
    start, new_root = agents
    agent_id = f"twin-{uuid.uuid4().hex[:8]}"
    first = await start(new_root(), agent_id=agent_id, backend="local")
    with pytest.raises(AgentIdInUse, match=f"agent id '{agent_id}' is in use by a live agent"):
        await start(new_root(), agent_id=agent_id, backend="local")
    # The first one is untouched and still the registered one.
    client = RPCClient(first.address, timeout=30)
    try:
        assert await client.call(msg.PING.name, {"echo": 1}) == {"echo": 1}
    finally:
        await client.close()
    # Once it is gone, the id is free again.
    await first.close()
    again = await start(new_root(), agent_id=agent_id, backend="local")
    assert again.agent_id == agent_id


@pytest.mark.docker
async def test_two_docker_agents_on_one_host_keep_to_their_own(agents) -> None:  # type: ignore[no-untyped-def]
    require_docker()
    start, new_root = agents
    root_a, root_b = new_root(), new_root()
    a = await start(root_a)
    b = await start(root_b)
    assert a.agent_id != b.agent_id
    kid_a, kid_b = str(uuid.uuid4()), str(uuid.uuid4())
    client_a, client_b = RPCClient(a.address, timeout=60), RPCClient(b.address, timeout=60)
    try:
        for client, kid in ((client_a, kid_a), (client_b, kid_b)):
            await client.call(
                msg.CREATE_KERNEL.name, {"kernel_id": kid, "lang": "python3", "owner": "AK"}
            )
        await run_to_end(client_b, kid_b, "state = 'bee'")
        labels = _docker(
            "inspect",
            "-f",
            f'{{{{index .Config.Labels "{LABEL_AGENT_ID}"}}}}',
            f"{KERNEL_CONTAINER_PREFIX}{kid_b}",
        )
        assert labels == b.agent_id

        # Restart A (its kernels are destroyed): B's container and kernel are not touched.
        await client_a.close()
        await a.close()
        a2 = await start(root_a)
        assert a2.agent_id == a.agent_id  # the id survived the restart
        assert a2.kernel_ids == []
        await asyncio.sleep(1.0)  # let any stray "die" event reach B
        running = _docker(
            "inspect", "-f", "{{.State.Running}}", f"{KERNEL_CONTAINER_PREFIX}{kid_b}"
        )
        assert running == "true"
        assert b.kernel_ids == [kid_b]
        result = await run_to_end(client_b, kid_b, "print(state)")
        assert result["stdout"] == "bee\n"
    finally:
        await client_a.close()
        await client_b.close()
