"""Fixtures of the agent tests: an in-process agent on a free port, an RPC client, leak checks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sorna.agent.agent import Agent
from sorna.agent.config import AgentSettings, CapsSettings
from sorna.common import messages as msg
from sorna.common.config import RedisSettings, S3Settings
from sorna.common.constants import LABEL_AGENT_ID
from sorna.common.rpc import RPCClient
from sorna.common.testing.leftovers import mounts_under, processes_under
from sorna.common.testing.plugin import S3Bucket, require_docker

AgentFactory = Callable[..., Awaitable[Agent]]


def _containers(agent_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL_AGENT_ID}={agent_id}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.split()


@pytest.fixture
def mounts() -> Callable[[Path], list[str]]:
    """``mounts(root)``: mount points below ``root``."""
    return mounts_under


@pytest.fixture(params=["docker", "local"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Both backends, for the tests that must pass on each."""
    if request.param == "docker":
        require_docker()
    return str(request.param)


@pytest.fixture
async def make_agent(redis_url: str, scratch_root: Path) -> AsyncIterator[AgentFactory]:
    """Start agents in this event loop; on exit close them and check nothing was left."""
    agents: list[Agent] = []
    agent_id = f"test-{uuid.uuid4().hex[:8]}"

    async def factory(
        *, backend: str = "docker", s3: S3Bucket | None = None, **overrides: Any
    ) -> Agent:
        caps = overrides.pop("caps", CapsSettings())
        settings = AgentSettings(
            agent_id=overrides.pop("agent_id", agent_id),
            rpc_host="127.0.0.1",
            rpc_port=0,
            backend=backend,  # type: ignore[arg-type]
            scratch_root=scratch_root,
            flush_interval=overrides.pop("flush_interval", 0.5),
            heartbeat_interval=overrides.pop("heartbeat_interval", 0.5),
            caps=caps,
            redis=RedisSettings(url=redis_url),
            s3=(
                S3Settings(
                    endpoint_url=s3.endpoint_url,
                    bucket=s3.name,
                    region=s3.region,
                    access_key=s3.access_key,
                    secret_key=s3.secret_key,
                )
                if s3
                else S3Settings()
            ),
        )
        settings = dataclasses.replace(settings, **overrides)
        agent = Agent(settings=settings)
        await agent.start()
        agents.append(agent)
        return agent

    try:
        yield factory
    finally:
        for agent in agents:
            await agent.close()
        leftovers = await asyncio.to_thread(_containers, agent_id) if shutil.which("docker") else []
        for cid in leftovers:
            await asyncio.to_thread(
                subprocess.run, ["docker", "rm", "-f", cid], capture_output=True, check=False
            )
        daemons = processes_under(scratch_root)
        dirs = [
            p
            for sub in ("work", "ipc", "disk")
            if (scratch_root / sub).is_dir()
            for p in (scratch_root / sub).iterdir()
        ]
        mounts = mounts_under(scratch_root)
        for mount in mounts:  # unmount before the scratch root is removed
            await asyncio.to_thread(
                subprocess.run, ["umount", "-l", mount], capture_output=True, check=False
            )
        assert not leftovers, f"containers left behind: {leftovers}"
        assert not daemons, f"kernel processes left behind: {daemons}"
        assert not dirs, f"scratch, ipc or disk folders left behind: {dirs}"
        assert not mounts, f"mounts left behind: {mounts}"


@pytest.fixture
async def rpc() -> AsyncIterator[Callable[[Agent], RPCClient]]:
    """RPC clients to agents, closed after the test."""
    clients: list[RPCClient] = []

    def connect(agent: Agent) -> RPCClient:
        client = RPCClient(agent.address, timeout=60)
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        for client in clients:
            await client.close()


async def run_to_end(
    client: RPCClient,
    kernel_id: str,
    code: str,
    *,
    run_id: str | None = None,
    mode: str = "query",
    options: dict[str, Any] | None = None,
    inputs: list[str] | None = None,
) -> dict[str, Any]:
    """Execute and continue until the run ends; return the merged result."""
    run_id = run_id or uuid.uuid4().hex[:16]
    params = {
        "kernel_id": kernel_id,
        "run_id": run_id,
        "mode": mode,
        "code": code,
        "options": options,
    }
    console: list[list[Any]] = []
    statuses: list[str] = []
    answers = list(inputs or [])
    while True:
        result = await client.call(msg.EXECUTE.name, params)
        console.extend(result["console"])
        statuses.append(result["status"])
        if result["status"] in ("finished", "exec-timeout"):
            result["console"] = console
            result["stdout"] = text_of(result, "stdout")
            result["stderr"] = text_of(result, "stderr")
            result["statuses"] = statuses
            return result
        if result["status"] == "waiting-input":
            params = {**params, "mode": "input", "code": answers.pop(0)}
        else:
            params = {**params, "mode": "continue", "code": ""}


def text_of(result: dict[str, Any], stream: str = "stdout") -> str:
    """All text of one stream in a result's console."""
    return "".join(item[1] for item in result["console"] if item[0] == stream)


async def read_events(redis: Any, *, since: str = "0-0") -> list[Any]:
    """Every event on the stream after ``since``, decoded."""
    from sorna.common.events import decode_entry
    from sorna.common.keys import RedisKeys

    entries = await redis.xrange(RedisKeys().events(), min=f"({since}" if since != "0-0" else "-")
    return [decode_entry(eid.decode(), fields) for eid, fields in entries]


async def wait_event(redis: Any, name: str, match: Callable[[Any], bool], within: float) -> Any:
    """Wait for an event named ``name`` whose body satisfies ``match``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        for event in await read_events(redis):
            if event.name == name and match(event.body):
                return event
        if asyncio.get_running_loop().time() > deadline:
            names = [e.name for e in await read_events(redis)]
            raise AssertionError(f"no {name} event within {within} s; saw {names}")
        await asyncio.sleep(0.05)


@pytest.fixture
def events() -> Any:
    """Helpers to read the event stream: ``events.read(redis)``, ``events.wait(...)``."""

    class Events:
        read = staticmethod(read_events)
        wait = staticmethod(wait_event)

    return Events


@pytest.fixture
def run() -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await run(client, kernel_id, code, ...)``: execute until the run ends."""
    return run_to_end


__all__ = ["json"]
