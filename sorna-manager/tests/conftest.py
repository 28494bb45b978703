"""Fixtures of the gateway/manager tests: settings on the real Valkey and PostgreSQL, running
gateways, and a signing API client."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sorna.agent.agent import Agent
from sorna.agent.config import AgentSettings
from sorna.common.config import DatabaseSettings, RedisSettings
from sorna.gateway import keys as K
from sorna.gateway.app import create_app
from sorna.gateway.testing import API, Gateway, GatewayTestServer
from sorna.manager.config import ManagerSettings, ManagerTimings


@pytest.fixture
def settings(redis_url: str, postgres_url: str) -> ManagerSettings:
    base = ManagerSettings()
    return dataclasses.replace(
        base,
        redis=RedisSettings(url=redis_url),
        db=DatabaseSettings(url=postgres_url, pool_size=4),
        timings=ManagerTimings(
            liveness_interval_s=0.2, startup_grace_s=0.0, rpc_timeout_s=10.0, execute_timeout_s=20.0
        ),
    )


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway(settings: ManagerSettings) -> AsyncIterator[GatewayFactory]:
    servers: list[TestServer] = []
    session = aiohttp.ClientSession()

    async def start(s: ManagerSettings | None = None) -> Gateway:
        app = create_app(s or settings)
        server = GatewayTestServer(app)
        await server.start_server()
        servers.append(server)
        admin = await app[K.KEYPAIRS].create(concurrency_limit=5, rate_limit=1000, is_admin=True)
        return Gateway(app, server, API(server, session, admin))

    try:
        yield start
    finally:
        await session.close()
        for server in reversed(servers):
            await server.close()


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> Gateway:
    return await start_gateway()


# ------------------------------------------------------------------ real agents


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A short scratch root (ipc socket paths must stay under 108 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))
    try:
        yield root
    finally:
        # Kernels' disks that a killed agent left mounted go first (lazily if still busy).
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if line.split()[4].startswith(f"{root}/"):
                subprocess.run(["umount", "-l", line.split()[4]], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


AgentFactory = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def start_agent(redis_url: str, scratch_root: Path) -> AsyncIterator[AgentFactory]:
    """Start in-process local-backend agents; closed after the test."""
    agents: list[Agent] = []

    async def start(**overrides: Any) -> Agent:
        fields: dict[str, Any] = {
            "agent_id": f"gw-test-{uuid.uuid4().hex[:8]}",
            "rpc_host": "127.0.0.1",
            "rpc_port": 0,
            "backend": "local",
            "scratch_root": scratch_root / f"a{len(agents)}",
            "flush_interval": 0.5,
            "heartbeat_interval": 0.5,
            "stats_interval": 0.5,
            "redis": RedisSettings(url=redis_url),
        }
        fields.update(overrides)
        agent = Agent(settings=AgentSettings(**fields))
        await agent.start()
        agents.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in reversed(agents):
            await agent.close()


@pytest.fixture
async def agent(start_agent: AgentFactory) -> Agent:
    return await start_agent()
