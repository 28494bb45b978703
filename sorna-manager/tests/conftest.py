"""Fixtures of the gateway/manager tests: settings on the real Valkey and PostgreSQL, running
gateways and in-process agents (the pieces of :func:`sorna.gateway.testing.live_stack`), and
a signing API client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sorna.agent.agent import Agent
from sorna.gateway import testing
from sorna.gateway.testing import Gateway
from sorna.manager.config import ManagerSettings


@pytest.fixture
def settings(redis_url: str, postgres_url: str) -> ManagerSettings:
    return testing.gateway_settings(redis_url=redis_url, postgres_url=postgres_url)


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway(settings: ManagerSettings) -> AsyncIterator[GatewayFactory]:
    gateways: list[Gateway] = []

    async with aiohttp.ClientSession() as session:

        async def start(s: ManagerSettings | None = None) -> Gateway:
            gateways.append(await testing.start_gateway(s or settings, session))
            return gateways[-1]

        try:
            yield start
        finally:
            for gateway in reversed(gateways):
                await gateway.server.close()


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> Gateway:
    return await start_gateway()


# ------------------------------------------------------------------ real agents


AgentFactory = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def start_agent(redis_url: str, scratch_root: Path) -> AsyncIterator[AgentFactory]:
    """Start in-process local-backend agents (scratch roots ``scratch_root/a<n>``); closed
    after the test."""
    agents: list[Agent] = []

    async def start(**overrides: Any) -> Agent:
        overrides.setdefault("scratch_root", scratch_root / f"a{len(agents)}")
        settings = testing.agent_settings(redis_url=redis_url, **overrides)
        agents.append(await testing.start_agent(settings))
        return agents[-1]

    try:
        yield start
    finally:
        for agent in reversed(agents):
            await agent.close()


@pytest.fixture
async def agent(start_agent: AgentFactory) -> Agent:
    return await start_agent()
