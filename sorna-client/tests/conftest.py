"""End-to-end fixtures: a real gateway and a real agent (local backend) on the harness's
Valkey and PostgreSQL (:func:`sorna.gateway.testing.live_stack`), keypairs, and client
configurations pointing at them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sorna.agent.agent import Agent
from sorna.client import ClientConfig
from sorna.gateway.testing import live_stack


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
async def stack(redis_url: str, postgres_url: str, scratch_root: Path) -> AsyncIterator[Stack]:
    """A gateway on a free port and one local-backend agent, ready to create python3/c kernels."""
    async with live_stack(
        redis_url=redis_url, postgres_url=postgres_url, scratch_root=scratch_root
    ) as live:
        limits = {"concurrency_limit": 10, "rate_limit": 10_000}
        admin_kp = await live.gateway.keypair(**limits, is_admin=True)
        user_kp = await live.gateway.keypair(**limits)
        yield Stack(
            endpoint=live.endpoint,
            admin=ClientConfig(admin_kp.access_key, admin_kp.secret_key, endpoint=live.endpoint),
            user=ClientConfig(user_kp.access_key, user_kp.secret_key, endpoint=live.endpoint),
            agent=live.agent,
        )
