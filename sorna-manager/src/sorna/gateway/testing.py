"""Test helpers: a signing API client, a running gateway, and agents as child processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from sorna.common.servers import free_port
from sorna.gateway import keys as K
from sorna.gateway import signing
from sorna.gateway.server import GatewayRunner
from sorna.manager.keypairs import Keypair

VERSION = "v2.20170315"


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


def processes_under(root: Path) -> list[int]:
    """Processes working below ``root`` or naming it on their command line: the kernels of an
    agent whose scratch root it is (a sandbox's command line names its folders)."""
    found = []
    marker = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if (
                os.readlink(entry / "cwd").startswith(str(root))
                or marker in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
    return found


def kill_processes_under(root: Path) -> None:
    """SIGKILL :func:`processes_under` ``root`` (what a SIGKILLed agent left running)."""
    for pid in processes_under(root):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


async def until(cond: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Poll ``cond`` (state outside this process) until it holds; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within:g} s")
        await asyncio.sleep(0.05)
