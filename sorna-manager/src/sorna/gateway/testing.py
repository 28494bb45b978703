"""Test helpers: a signing API client, a running gateway, agents in this process or as child
processes, and :func:`live_stack`, the gateway + agent on real Valkey and PostgreSQL that the
manager, client and media suites and the benchmarks run against.

The agent is imported only when one is started: ``sorna-manager`` needs ``sorna-agent`` only
for its tests (its ``test`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from sorna.common.config import DatabaseSettings, RedisSettings
from sorna.common.servers import free_port
from sorna.common.testing.leftovers import kill_processes_under
from sorna.gateway import keys as K
from sorna.gateway import signing
from sorna.gateway.app import create_app
from sorna.gateway.server import GatewayRunner
from sorna.manager.config import ManagerSettings, ManagerTimings
from sorna.manager.keypairs import Keypair

if TYPE_CHECKING:
    from sorna.agent.agent import Agent
    from sorna.agent.config import AgentSettings

VERSION = "v2.20170315"

_NEEDS_AGENT = "test agents need sorna-agent: pip install 'sorna-manager[test]'"


class GatewayTestServer(TestServer):
    """aiohttp's TestServer, running the app as ``sorna-manager serve`` does
    (:class:`~sorna.gateway.server.GatewayRunner`)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return GatewayRunner(self.app, **kwargs)


class API:
    """A signing client of one gateway."""

    def __init__(
        self, server: TestServer, session: aiohttp.ClientSession, keypair: Keypair
    ) -> None:
        self.server = server
        self.session = session
        self.keypair = keypair
        self.host = f"{server.host}:{server.port}"

    def headers(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        version: str = VERSION,
        date: str | None = None,
        sign_method: str = "HMAC-SHA256",
        secret: str | None = None,
        access_key: str | None = None,
    ) -> dict[str, str]:
        date = date or datetime.datetime.now(datetime.UTC).isoformat()
        sig = signing.sign(
            secret_key=secret or self.keypair.secret_key,
            method=method,
            path_with_query=path,
            date=date,
            host=self.host,
            content_type=content_type,
            version=version,
            body=body,
            sign_method=sign_method,
        )
        return {
            "Date": date,
            "Host": self.host,
            "Content-Type": content_type,
            "X-Sorna-Version": version,
            "Authorization": signing.authorization(
                sign_method, access_key or self.keypair.access_key, sig
            ),
        }

    async def request(
        self, method: str, path: str, body: Any = None, **sign_kw: Any
    ) -> aiohttp.ClientResponse:
        raw = b"" if body is None else json.dumps(body).encode()
        headers = self.headers(method, path, raw, **sign_kw)
        return await self.session.request(
            method,
            self.server.make_url(path),
            data=raw,
            headers=headers,
            skip_auto_headers=("Content-Type",),
        )

    async def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        async with await self.request(method, path, body, **kw) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    def with_keypair(self, keypair: Keypair) -> API:
        return API(self.server, self.session, keypair)


@dataclasses.dataclass
class Gateway:
    app: web.Application
    server: TestServer
    admin: API

    async def keypair(self, **kw: Any) -> Keypair:
        kw.setdefault("concurrency_limit", 5)
        kw.setdefault("rate_limit", 1000)
        return await self.app[K.KEYPAIRS].create(**kw)

    async def api(self, **kw: Any) -> API:
        return self.admin.with_keypair(await self.keypair(**kw))

    @property
    def endpoint(self) -> str:
        """The base URL of this gateway (``http://127.0.0.1:<port>``)."""
        return str(self.server.make_url("")).rstrip("/")


# -- the live stack: a gateway and in-process agents on real Valkey and PostgreSQL ------------

#: Test timings: quick liveness sweeps, no start-up grace, generous RPC deadlines (the tests
#: share a loaded machine).
TEST_TIMINGS = ManagerTimings(
    liveness_interval_s=0.2, startup_grace_s=0.0, rpc_timeout_s=20.0, execute_timeout_s=30.0
)


def gateway_settings(*, redis_url: str, postgres_url: str, **overrides: Any) -> ManagerSettings:
    """The settings of a test gateway on ``redis_url`` and ``postgres_url``: defaults,
    :data:`TEST_TIMINGS`, then ``overrides`` (fields of :class:`ManagerSettings`)."""
    base = dataclasses.replace(
        ManagerSettings(),
        redis=RedisSettings(url=redis_url),
        db=DatabaseSettings(url=postgres_url, pool_size=4),
        timings=TEST_TIMINGS,
    )
    return dataclasses.replace(base, **overrides)


async def start_gateway(settings: ManagerSettings, session: aiohttp.ClientSession) -> Gateway:
    """Serve ``create_app(settings)`` on a free loopback port, with an admin keypair whose
    client uses ``session``; close it with ``gateway.server.close()``."""
    app = create_app(settings)
    server = GatewayTestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        admin = await app[K.KEYPAIRS].create(concurrency_limit=5, rate_limit=1000, is_admin=True)
    except BaseException:
        await server.close()
        raise
    return Gateway(app, server, API(server, session, admin))


def agent_settings(*, redis_url: str, scratch_root: Path, **overrides: Any) -> AgentSettings:
    """The settings of a test agent: a fresh id, a free loopback RPC port, the local backend,
    quick heartbeats, flushes and stats, then ``overrides`` (fields of ``AgentSettings``)."""
    try:
        from sorna.agent.config import AgentSettings
    except ImportError as e:
        raise RuntimeError(_NEEDS_AGENT) from e

    fields: dict[str, Any] = {
        "agent_id": f"test-{uuid.uuid4().hex[:8]}",
        "rpc_host": "127.0.0.1",
        "rpc_port": 0,
        "backend": "local",
        "scratch_root": scratch_root,
        "flush_interval": 0.5,
        "heartbeat_interval": 0.5,
        "stats_interval": 0.5,
        "redis": RedisSettings(url=redis_url),
        **overrides,
    }
    return AgentSettings(**fields)


async def start_agent(settings: AgentSettings) -> Agent:
    """An agent running in this event loop; ``await agent.close()`` stops it."""
    try:
        from sorna.agent.agent import Agent
    except ImportError as e:
        raise RuntimeError(_NEEDS_AGENT) from e

    agent = Agent(settings=settings)
    await agent.start()
    return agent


async def agents_joined(gateway: Gateway, agent_ids: set[str]) -> bool:
    """Whether the gateway lists every agent of ``agent_ids`` as alive."""
    status, body = await gateway.admin.json("GET", "/v2/admin/agents")
    assert status == 200, body
    alive = {a["id"] for a in body["agents"] if a["alive"] and not a["lost"]}
    return agent_ids <= alive


@dataclasses.dataclass(frozen=True)
class LiveStack:
    """A running gateway and its agents."""

    gateway: Gateway
    agents: tuple[Agent, ...]

    @property
    def endpoint(self) -> str:
        """Where the API answers (``http://127.0.0.1:<port>``)."""
        return self.gateway.endpoint

    @property
    def agent(self) -> Agent:
        """The first agent."""
        return self.agents[0]


@contextlib.asynccontextmanager
async def live_stack(
    *,
    redis_url: str,
    postgres_url: str,
    scratch_root: Path,
    agents: int = 1,
    gateway: Mapping[str, Any] | None = None,
    agent: Mapping[str, Any] | None = None,
) -> AsyncIterator[LiveStack]:
    """A gateway (:func:`gateway_settings` with the ``gateway`` overrides) and ``agents``
    in-process agents (:func:`agent_settings` with the ``agent`` overrides, scratch roots
    ``scratch_root/a<n>``; an ``agent_id`` override suits one agent only), entered once the
    gateway lists every agent; closed in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        started: list[Agent] = []
        for n in range(agents):
            settings = agent_settings(
                redis_url=redis_url, scratch_root=scratch_root / f"a{n}", **(agent or {})
            )
            started.append(await start_agent(settings))
            stack.push_async_callback(started[-1].close)
        gw = await start_gateway(
            gateway_settings(redis_url=redis_url, postgres_url=postgres_url, **(gateway or {})),
            session,
        )
        stack.push_async_callback(gw.server.close)
        ids = {str(a.agent_id) for a in started}
        await until(lambda: agents_joined(gw, ids), within=60.0)
        yield LiveStack(gw, tuple(started))


# -- agents as child processes (the tests that kill or restart one) ------------------------


def agent_env(
    *, agent_id: str, scratch_root: Path, redis_url: str, backend: str = "local", **settings: str
) -> dict[str, str]:
    """The environment of a ``sorna-agent`` child: this one's minus every ``SORNA_*`` setting
    (so the developer's own never leak in), a free RPC port, quick heartbeats; ``settings``
    (``SORNA_*`` names) last."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SORNA_")},
        "SORNA_AGENT_ID": agent_id,
        "SORNA_RPC_HOST": "127.0.0.1",
        "SORNA_RPC_PORT": str(free_port()),
        "SORNA_BACKEND": backend,
        "SORNA_SCRATCH_ROOT": str(scratch_root),
        "SORNA_HEARTBEAT_INTERVAL": "0.5",
        "SORNA_FLUSH_INTERVAL": "0.5",
        "SORNA_REDIS_URL": redis_url,
        "SORNA_LOGGING_LEVEL": "WARNING",
        **settings,
    }


def spawn_agent(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``sorna-agent`` as a child process with ``env``."""
    return subprocess.Popen(
        [sys.executable, "-m", "sorna.agent.cli"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM ``proc``, SIGKILL it if it outlives ``grace`` seconds, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class AgentProcesses:
    """Agent child processes started from one environment (same id, address and scratch root,
    as a restart would be); :meth:`close` stops them all and kills what their kernels left."""

    def __init__(self, env: dict[str, str], scratch_root: Path) -> None:
        self._env = env
        self._scratch_root = scratch_root
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        """Start one more agent process."""
        proc = spawn_agent(self._env)
        self._procs.append(proc)
        return proc

    def close(self, grace: float = 10.0) -> None:
        for proc in self._procs:
            stop_process(proc, grace)
        kill_processes_under(self._scratch_root)


async def until(cond: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Poll ``cond`` (state outside this process) until it holds; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within:g} s")
        await asyncio.sleep(0.05)
