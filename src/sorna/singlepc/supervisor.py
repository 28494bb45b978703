"""The single-PC supervisor: one process that starts, watches and stops the whole stack.

Started by ``sorna up`` in its own session (so a Ctrl-C in the terminal reaches only the
front end, which then asks the supervisor to stop everything in order). It holds the data
folder's lock for its whole life and reports progress as plain lines on stdout (the front end
shows them); its children write their own logs under ``<data dir>/logs``.

Start order: Valkey, PostgreSQL (each embedded unless a URL is given), migrations, the first
admin keypair, the kernel backend choice, missing kernel images, the gateway, the agent, then
the client configuration. Stop order is the reverse. A gateway or agent that dies is started
again (at most :data:`MAX_RESTARTS` times in :data:`RESTART_WINDOW` seconds); an embedded
server that dies stops the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import aiohttp

from sorna.common.errors import SornaError
from sorna.common.servers import PostgresServer, ServerError, ValkeyServer, free_port

from .clientconfig import write_client_config
from .config import Layout, UpSettings
from .state import Lock, State

log = logging.getLogger(__name__)

MAX_RESTARTS: Final = 5
RESTART_WINDOW: Final = 60.0
WATCH_INTERVAL: Final = 1.0
STOP_TIMEOUT: Final = 60.0

Say = Callable[[str], None]


class SupervisorError(SornaError):
    """The stack could not be started; the message is one line for the user."""


class Child:
    """A supervised child process (the gateway or the agent) logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts: list[float] = []

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def may_restart(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW]
        self.restarts.append(now)
        return len(self.restarts) <= MAX_RESTARTS

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT` seconds."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def docker_problem() -> str | None:
    """Why no Docker engine can be used (None when one answers); honours DOCKER_HOST."""
    import aiodocker

    try:
        async with asyncio.timeout(10):
            docker = aiodocker.Docker()
            try:
                await docker.version()
            finally:
                await docker.close()
    except Exception as e:  # any failure means: no usable engine
        return " ".join(str(e).split()) or type(e).__name__
    return None


async def choose_backend(choice: str) -> tuple[str, str]:
    """The backend to run kernels with, and why (one line)."""
    if choice != "auto":
        return choice, f"asked for with --backend {choice}"
    problem = await docker_problem()
    if problem is None:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        return "docker", f"a Docker engine answers at {where}; kernels run in containers"
    return "local", (
        f"no Docker engine answers ({problem}); kernels run as sandboxed local processes"
    )


def parse_metrics(text: str) -> dict[str, float]:
    """Sum Prometheus samples by metric name (labels dropped)."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)$", line)
        if m:
            with contextlib.suppress(ValueError):
                sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(2))
    return sums


def status_line(metrics: dict[str, float]) -> str:
    """The compact status line: agents, kernels, requests."""
    agents = int(metrics.get("sorna_live_agents", 0))
    kernels = int(metrics.get("sorna_live_kernels", 0))
    requests = int(metrics.get("sorna_http_requests_total", 0))
    return f"agents {agents} | kernels {kernels} | requests {requests}"


class Supervisor:
    """Start the stack of one data folder, keep it running, and stop it on request."""

    def __init__(self, *, settings: UpSettings, layout: Layout, say: Say) -> None:
        self.settings = settings
        self.layout = layout
        self.say = say
        self.endpoint = f"http://{_url_host(settings.host)}:{settings.port}"
        self._lock = Lock(layout)
        self._stop = asyncio.Event()
        self._valkey: ValkeyServer | None = None
        self._postgres: PostgresServer | None = None
        self._children: list[Child] = []
        self._state = State(pid=os.getpid(), endpoint=self.endpoint)
        self._http: aiohttp.ClientSession | None = None

    def stop(self) -> None:
        """Ask :meth:`run` to stop everything and return."""
        self._stop.set()

    async def run(self) -> int:
        """Start everything, watch it until asked to stop, then stop it; return a status."""
        self.layout.create()
        if not self._lock.acquire():
            self.say(f"sorna is already running for {self.layout.root}")
            return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        status = 0
        try:
            self._state.save(self.layout)
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            starting = asyncio.create_task(self._start())
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                self.say("stopping before the stack was up")
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            if not self._stop.is_set():
                self._state.phase = "running"
                self._state.save(self.layout)
                self.say(f"ready: {self.endpoint}")
                status = await self._watch()
        except (SupervisorError, ServerError) as e:
            self.say(f"error: {e}")
            self._state.error = str(e)
            status = 1
        finally:
            self._state.phase = "stopping"
            with contextlib.suppress(OSError):
                self._state.save(self.layout)
            await self._shutdown()
            if self._http is not None:
                await self._http.close()
            with contextlib.suppress(OSError):
                self.layout.state.unlink()
            self._lock.release()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        self.say("stopped")
        return status

    # -- start -------------------------------------------------------------------------

    async def _start(self) -> None:
        s = self.settings
        self.say(f"data folder: {self.layout.root}")
        _check_port_free(s.host, s.port)
        # The embedded servers' URLs carry their passwords: they go to the children's
        # environments only; what is said (and so logged) is the address and the password file.
        redis_url = s.redis_url
        if not redis_url:
            self._valkey = ValkeyServer(data_dir=self.layout.root / "valkey")
            await asyncio.to_thread(self._valkey.start)
            redis_url = self._valkey.url
            self.say(
                f"valkey: {self._valkey.endpoint} "
                f"(embedded; password in {self._valkey.password_file})"
            )
        db_url = s.db_url
        if not db_url:
            self._postgres = PostgresServer(data_dir=self.layout.root / "postgres")
            await asyncio.to_thread(self._postgres.start)
            db_url = self._postgres.url()
            self.say(
                f"postgresql: {self._postgres.endpoint()} "
                f"(embedded; password in {self._postgres.password_file})"
            )
        self._record_children()
        env = {**os.environ, "SORNA_REDIS_URL": redis_url, "SORNA_DB_URL": db_url}
        applied = await self._manager_command(env, "db", "migrate")
        self.say(f"database: {applied.strip()}")
        keypair = await self._admin_keypair(env)
        backend, reason = await choose_backend(s.backend)
        if backend == "docker":
            backend, reason = await self._ensure_images(backend, reason)
        self._state.backend, self._state.backend_reason = backend, reason
        self.say(f"backend: {backend} ({reason})")
        if backend == "local":
            await self._check_local_sandbox(env)
        self._check_disk_caps(env)
        gateway = Child(
            "gateway",
            [sys.executable, "-m", "sorna.manager.cli", "serve"],
            {
                **env,
                "SORNA_SERVER_HOST": s.host,
                "SORNA_SERVER_PORT": str(s.port),
                "SORNA_SERVER_CONSOLE_ENABLED": "true",
            },
            self.layout.log("gateway"),
        )
        agent = Child(
            "agent",
            [sys.executable, "-m", "sorna.agent.cli", "--backend", backend],
            {
                # The agent has no use for the database, and its kernels must not find its URL.
                **{k: v for k, v in env.items() if k != "SORNA_DB_URL"},
                "SORNA_RPC_HOST": "127.0.0.1",
                "SORNA_RPC_PORT": str(free_port()),
                "SORNA_ADVERTISED_HOST": "127.0.0.1",
                "SORNA_SCRATCH_ROOT": str(self.layout.scratch),
            },
            self.layout.log("agent"),
        )
        self._children = [gateway, agent]
        await gateway.start()
        self._record_children()
        await self._wait(gateway, "the gateway to answer", self._gateway_answers)
        self.say(f"gateway: {self.endpoint} (log: {gateway.log_path})")
        self.say(f"console: {self.endpoint}/console/ (enter the admin keypair in the page)")
        await agent.start()
        self._record_children()
        await self._wait(agent, "the agent to join", self._agent_joined)
        self.say(f"agent: {backend} backend (log: {agent.log_path})")
        path, backup = write_client_config(self.endpoint, keypair, self.layout.root)
        self.say(f"client configuration: {path}")
        if backup is not None:
            self.say(f"  (the previous one is kept as {backup})")

    def _check_disk_caps(self, env: dict[str, str]) -> None:
        """Per-kernel disks are loop mounts, which need root: say so when they are off."""
        if os.geteuid() == 0 or "SORNA_CAPS_MAX_DISK_MIB" in env:
            return
        self.say(
            "NOTE: kernels' /home/work has no disk cap (per-kernel disks need root and loop "
            "devices): a kernel can fill this machine's disk"
        )
        env["SORNA_CAPS_MAX_DISK_MIB"] = "0"

    async def _check_local_sandbox(self, env: dict[str, str]) -> None:
        """Refuse an unsandboxed local backend unless asked for; say so loudly if asked."""
        from sorna.agent.localbackend import UNSAFE_WARNING
        from sorna.agent.sandbox import DEFAULT_BWRAP, local_sandbox_problem

        # The agent's own setting (it inherits this environment), so both judge alike.
        bwrap = Path(env.get("SORNA_BWRAP_PATH") or DEFAULT_BWRAP)
        problem = await asyncio.to_thread(local_sandbox_problem, bwrap)
        if problem is None:
            return
        if not self.settings.unsafe_local_backend:
            raise SupervisorError(
                f"the local backend cannot sandbox kernels here ({problem}); "
                "add --unsafe-local-backend to run them without a sandbox"
            )
        self.say(f"WARNING: {UNSAFE_WARNING} ({problem})")
        env["SORNA_UNSAFE_LOCAL_BACKEND"] = "true"

    async def _manager_command(self, env: dict[str, str], *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "sorna.manager.cli", *args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**env, "SORNA_LOGGING_LEVEL": "WARNING"},
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise SupervisorError(f"sorna-manager {' '.join(args)} failed: {tail[0]}")
        return out.decode()

    async def _admin_keypair(self, env: dict[str, str]) -> dict[str, str]:
        """The admin keypair of this data folder, created on the first start."""
        path = self.layout.keypair
        if path.exists():
            data: dict[str, str] = json.loads(path.read_text())
            self.say(f"admin keypair: {data['access_key']} (kept in {path})")
            return data
        out = await self._manager_command(
            env, "keypair", "create", "--admin", "--owner", "admin", "--concurrency", "32"
        )
        created: dict[str, Any] = json.loads(out)
        data = {"access_key": created["accessKey"], "secret_key": created["secretKey"]}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        self.say(f"admin keypair: {data['access_key']} (created, kept in {path})")
        return data

    async def _ensure_images(self, backend: str, reason: str) -> tuple[str, str]:
        """Build the missing kernel images; fall back to the local backend if that fails."""
        from sorna.repl import imagebuild, kernelspec

        try:
            specs = kernelspec.kernel_specs()
        except kernelspec.KernelSpecError as e:
            raise SupervisorError(str(e)) from None
        langs: list[str] = []
        for name in self.settings.images:
            lang = kernelspec.resolve(name, specs)
            if lang is None:
                known = ", ".join(specs)
                raise SupervisorError(f"unknown language {name!r} in --images (known: {known})")
            langs.append(lang)
        missing = await imagebuild.missing_images(langs)
        if not missing:
            return backend, reason
        self.say(f"building kernel images: {', '.join(missing)} (once; later starts reuse them)")
        try:
            await imagebuild.build_images(missing, progress=lambda ln: self.say(f"  {ln}"))
        except imagebuild.ImageBuildError as e:
            if self.settings.backend == "docker":
                raise SupervisorError(f"kernel images could not be built: {e}") from None
            return (
                "local",
                f"kernel images could not be built ({e}); kernels run as local processes",
            )
        return backend, reason

    async def _wait(self, child: Child, what: str, check: Callable[[], Any]) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        while time.monotonic() < deadline:
            if not child.alive:
                raise SupervisorError(
                    f"the {child.name} exited while starting: {_tail(child.log_path)}"
                )
            if await check():
                return
            await asyncio.sleep(0.1)
        raise SupervisorError(f"timed out waiting for {what}: {_tail(child.log_path)}")

    async def _gateway_answers(self) -> bool:
        return await self._metrics() is not None

    async def _agent_joined(self) -> bool:
        metrics = await self._metrics()
        return metrics is not None and metrics.get("sorna_live_agents", 0) >= 1

    async def _metrics(self) -> dict[str, float] | None:
        assert self._http is not None
        try:
            async with self._http.get(f"{self.endpoint}/metrics") as resp:
                if resp.status != 200:
                    return None
                return parse_metrics(await resp.text())
        except (aiohttp.ClientError, TimeoutError):
            return None

    def _record_children(self) -> None:
        self._state.children = {c.name: c.pid for c in self._children if c.alive}
        self._state.save(self.layout)

    # -- watch -------------------------------------------------------------------------

    async def _watch(self) -> int:
        while not self._stop.is_set():
            for name, server in (("valkey", self._valkey), ("postgres", self._postgres)):
                if server is not None and not server.running:
                    self.say(f"error: the embedded {name} exited (log: {server.log_path})")
                    return 1
            for child in self._children:
                if child.alive:
                    continue
                if not child.may_restart():
                    self.say(f"error: the {child.name} keeps exiting (log: {child.log_path})")
                    return 1
                self.say(f"the {child.name} exited; starting it again (log: {child.log_path})")
                await child.start()
                self._record_children()
            metrics = await self._metrics()
            if metrics is not None:
                line = status_line(metrics)
                if line != self._state.line:
                    self._state.line = line
                    self._state.save(self.layout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), WATCH_INTERVAL)
        return 0

    # -- stop --------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        # The agent first: it destroys its kernels while Redis and the gateway still answer.
        for child in reversed(self._children):
            if child.alive:
                self.say(f"stopping the {child.name}")
            await child.stop()
        for name, server in (("postgres", self._postgres), ("valkey", self._valkey)):
            if server is not None:
                if server.running:
                    self.say(f"stopping {name}")
                await asyncio.to_thread(server.stop)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # As the gateway will: connections of a previous run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise SupervisorError(
                f"port {port} on {host} is taken ({e.strerror}); choose another with --port"
            ) from None


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
