"""End-to-end fixtures: a real gateway and a real agent (local backend) on the harness's
Valkey and PostgreSQL, keypairs, and client configurations pointing at them."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from sorna.agent.agent import Agent
from sorna.agent.config import AgentSettings
from sorna.client import AsyncAdmin, AsyncSession, ClientConfig
from sorna.common.config import DatabaseSettings, RedisSettings
from sorna.gateway import keys as K
from sorna.gateway.app import create_app
from sorna.manager.config import ManagerSettings, ManagerTimings


@dataclasses.dataclass(frozen=True)
class Stack:
    """A running Sorna: where it answers, and an admin and a user keypair on it."""

    endpoint: str
    admin: ClientConfig
    user: ClientConfig
    agent: Agent

    def cli_env(self, home: Path, config: ClientConfig | None = None) -> dict[str, str]:
        """Environment for a ``sorna`` subprocess: this stack's credentials, a clean HOME."""
        cfg = config or self.user
        env = {k: v for k, v in os.environ.items() if not k.startswith("SORNA_")}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            SORNA_ENDPOINT=cfg.endpoint,
            SORNA_ACCESS_KEY=cfg.access_key,
            SORNA_SECRET_KEY=cfg.secret_key,
        )
        return env


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A short scratch root for the agent (ipc socket paths must stay under 108 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def stack(redis_url: str, postgres_url: str, scratch_root: Path) -> AsyncIterator[Stack]:
    """A gateway on a free port and one local-backend agent, ready to create python3/c kernels."""
    agent = Agent(
        settings=AgentSettings(
            agent_id=f"client-test-{uuid.uuid4().hex[:8]}",
            rpc_host="127.0.0.1",
            rpc_port=0,
            backend="local",
            scratch_root=scratch_root,
            flush_interval=0.5,
            heartbeat_interval=0.5,
            redis=RedisSettings(url=redis_url),
        )
    )
    await agent.start()
    settings = dataclasses.replace(
        ManagerSettings(),
        redis=RedisSettings(url=redis_url),
        db=DatabaseSettings(url=postgres_url, pool_size=4),
        timings=ManagerTimings(
            liveness_interval_s=0.2, startup_grace_s=0.0, rpc_timeout_s=20.0, execute_timeout_s=30.0
        ),
    )
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    try:
        await server.start_server()
        endpoint = f"http://127.0.0.1:{server.port}"
        keypairs = app[K.KEYPAIRS]
        admin_kp = await keypairs.create(concurrency_limit=10, rate_limit=10_000, is_admin=True)
        user_kp = await keypairs.create(concurrency_limit=10, rate_limit=10_000)
        admin = ClientConfig(admin_kp.access_key, admin_kp.secret_key, endpoint=endpoint)
        user = ClientConfig(user_kp.access_key, user_kp.secret_key, endpoint=endpoint)
        await _wait_for_agent(admin, agent.settings.agent_id)
        yield Stack(endpoint=endpoint, admin=admin, user=user, agent=agent)
    finally:
        await server.close()
        await agent.close()


async def _wait_for_agent(admin: ClientConfig, agent_id: str) -> None:
    async with AsyncSession(admin) as session:
        for _ in range(100):
            agents = await AsyncAdmin(session).agents()
            if any(agent_id in str(a.values()) for a in agents):
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"agent {agent_id} never showed up in /v2/admin/agents")
