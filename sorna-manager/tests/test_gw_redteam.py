"""A tenant's code tries to reach the host, through the API, on both kernel backends.

Each case runs a python3 snippet in a kernel of an agent process (started by the test with a
secret in its environment) and checks what the tenant would see in the kernel's stdout: a
denial, never the secret. The local backend's cases need its bubblewrap sandbox; the docker
cases are marked ``docker``.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from sorna.common.keys import RedisKeys
from sorna.common.testing.leftovers import processes_under
from sorna.gateway.testing import API, Gateway, agent_env, spawn_agent, stop_process, until

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]
#: The agent's /tmp cap for kernels in these tests (MiB).
TMP_CAP_MIB = 4
#: What every probe prints when the attempt failed (followed by the error).
DENIED = "DENIED"
DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass
class Stack:
    """A gateway, an agent process of one backend, and what the test planted on the host."""

    backend: str
    api: API
    agent: subprocess.Popen[bytes]
    scratch_root: Path
    secret: str

    async def kernel(self) -> str:
        token = f"rt-{uuid.uuid4().hex[:8]}"
        body = {"lang": "python3", "clientSessionToken": token}
        status, answer = await self.api.json("POST", "/v2/kernel/create", body)
        assert status == 201, answer
        return str(answer["kernelId"])

    async def run(self, kernel_id: str, code: str) -> str:
        """The stdout of ``code`` (following ``continued`` answers)."""
        path = f"/v2/kernel/{kernel_id}"
        status, r = await self.api.json("POST", path, {"mode": "query", "code": code})
        out: list[str] = []
        while True:
            assert status == 200, r
            result = r["result"]
            out += [text for kind, text in result.get("console", []) if kind == "stdout"]
            if result["status"] != "continued":
                break
            status, r = await self.api.json(
                "POST", path, {"mode": "continue", "code": "", "runId": result["runId"]}
            )
        return "".join(out)


def _agent_env(backend: str, scratch_root: Path, redis_url: str, secret: str) -> dict[str, str]:
    return agent_env(
        agent_id=f"rt-{uuid.uuid4().hex[:8]}",
        scratch_root=scratch_root,
        redis_url=redis_url,
        backend=backend,
        SORNA_CAPS_TMP_SIZE_MIB=str(TMP_CAP_MIB),
        # Stand-in for the database URL and other secrets an agent's environment holds.
        RT_AGENT_SECRET=secret,
    )


def _docker_socket() -> str | None:
    """The host's Docker socket, when there is one."""
    return DOCKER_SOCKET if os.path.exists(DOCKER_SOCKET) else None


@pytest.fixture
async def agent_starter(redis_url: str, redis: Redis, scratch_root: Path) -> AsyncIterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    async def start(backend: str, secret: str, **env: str) -> subprocess.Popen[bytes]:
        full = {**_agent_env(backend, scratch_root, redis_url, secret), **env}
        proc = spawn_agent(full)
        procs.append(proc)
        keys = RedisKeys()

        async def alive() -> bool:
            assert proc.poll() is None, "the agent exited"
            return bool(await redis.exists(keys.agent_alive(full["SORNA_AGENT_ID"])))  # type: ignore[arg-type]

        await until(alive, 60)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            stop_process(proc)


@pytest.fixture(params=BACKENDS)
async def stack(
    request: pytest.FixtureRequest, gateway: Gateway, agent_starter, scratch_root: Path
) -> Stack:  # type: ignore[no-untyped-def]
    secret = f"rt-secret-{uuid.uuid4().hex}"
    agent = await agent_starter(request.param, secret)
    api = await gateway.api()
    return Stack(request.param, api, agent, scratch_root, secret)


def _probe(action: str) -> str:
    """A snippet printing what ``action`` (an expression) gives, or DENIED and the error's
    type (not its message: that names the path, which may hold the marker)."""
    return (
        "try:\n"
        f"    print('GOT', {action})\n"
        "except Exception as e:\n"
        f"    print({DENIED!r}, type(e).__name__)\n"
    )


# ------------------------------------------------------------------ files of the host


async def test_etc_shadow_is_not_readable(stack: Stack) -> None:
    out = await stack.run(await stack.kernel(), _probe("open('/etc/shadow').read()"))
    assert out.startswith(DENIED), out
    assert "root:" not in out


async def test_keypair_and_client_config_are_not_readable(stack: Stack, tmp_path: Path) -> None:
    home = tmp_path / "home" / ".config" / "sorna"
    home.mkdir(parents=True)
    planted = {
        home / "client.toml": f'secret_key = "{stack.secret}"\n',
        stack.scratch_root / "admin-keypair.json": json.dumps({"secret_key": stack.secret}),
    }
    for path, text in planted.items():
        path.write_text(text)
        path.chmod(0o600)
    kernel = await stack.kernel()
    for path in planted:
        out = await stack.run(kernel, _probe(f"open({str(path)!r}).read()"))
        assert out.startswith(DENIED), out
        assert stack.secret not in out


async def test_agent_environment_is_not_readable(stack: Stack) -> None:
    code = (
        "import glob\n"
        "found = []\n"
        "for p in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        found.append(open(p, 'rb').read())\n"
        "    except OSError:\n"
        "        pass\n"
        "print('MINE', open('/proc/self/environ', 'rb').read())\n"
        "print('OTHERS', b''.join(found))\n"
        + _probe(f"open('/proc/{stack.agent.pid}/environ', 'rb').read()")
    )
    out = await stack.run(await stack.kernel(), code)
    assert stack.secret not in out, out
    assert f"\n{DENIED}" in out, out


async def test_other_kernels_files_are_not_visible(stack: Stack) -> None:
    victim, attacker = await stack.kernel(), await stack.kernel()
    marker = f"marker-{uuid.uuid4().hex}"
    await stack.run(victim, f"open('marker.txt', 'w').write({marker!r})")
    assert (stack.scratch_root / "work" / victim / "marker.txt").read_text() == marker
    host_path = stack.scratch_root / "work" / victim / "marker.txt"
    code = (
        "import glob\n"
        f"print('GLOB', glob.glob({str(stack.scratch_root)!r} + '/**', recursive=True))\n"
        + _probe(f"open({str(host_path)!r}).read()")
    )
    out = await stack.run(attacker, code)
    assert marker not in out and victim not in out, out
    assert f"\n{DENIED}" in out


async def test_host_tmp_and_dev_shm_are_private(stack: Stack) -> None:
    marker = f"rt-{uuid.uuid4().hex}"
    planted = [Path("/tmp") / marker, Path("/dev/shm") / marker]
    try:
        for path in planted:
            path.write_text(marker)
        code = "import os\nprint('LIST', os.listdir('/tmp'), os.listdir('/dev/shm'))\n"
        code += "".join(_probe(f"open({str(p)!r}).read()") for p in planted)
        out = await stack.run(await stack.kernel(), code)
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    assert marker not in out, out
    assert out.count(DENIED) == 2, out


async def test_writing_outside_its_folders_fails(stack: Stack) -> None:
    kernel = await stack.kernel()
    name = f"rt-{uuid.uuid4().hex}"
    targets = [stack.scratch_root / name, stack.scratch_root / "work" / name]
    code = "".join(_probe(f"open({str(t)!r}, 'w').write('x')") for t in targets)
    out = await stack.run(kernel, code)
    assert out.count(DENIED) == len(targets), out
    assert not any(t.exists() for t in targets)


async def test_tmp_is_capped(stack: Stack) -> None:
    name = f"rt-fill-{uuid.uuid4().hex}"
    code = (
        "import errno\n"
        "try:\n"
        f"    with open('/tmp/{name}', 'wb') as f:\n"
        f"        for _ in range({TMP_CAP_MIB + 2}):\n"
        "            f.write(b'x' * (1 << 20))\n"
        "            f.flush()\n"
        "    print('WROTE')\n"
        "except OSError as e:\n"
        f"    print({DENIED!r}, errno.errorcode[e.errno])\n"
    )
    try:
        out = await stack.run(await stack.kernel(), code)
    finally:
        host = Path("/tmp") / name
        leaked = host.exists()
        host.unlink(missing_ok=True)
    assert out.strip() == f"{DENIED} ENOSPC", out
    assert not leaked


# ------------------------------------------------------------------ sockets and IPC


@pytest.fixture
def unix_listener(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    """A unix socket outside any kernel's folder (stand-in for docker.sock, PostgreSQL's)."""
    path = Path(tempfile.mkdtemp(prefix="rt-sock-", dir="/tmp")) / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o777)
    server.listen(8)
    server.setblocking(False)
    try:
        yield path, server
    finally:
        server.close()
        shutil.rmtree(path.parent, ignore_errors=True)


def _connect_probe(family: str, address: str) -> str:
    return (
        "import socket\n"
        "try:\n"
        f"    s = socket.socket(socket.{family}, socket.SOCK_STREAM)\n"
        "    s.settimeout(3)\n"
        f"    s.connect({address})\n"
        "    print('CONNECTED')\n"
        "except Exception as e:\n"
        f"    print({DENIED!r}, type(e).__name__, e)\n"
    )


async def test_unix_sockets_outside_are_unreachable(
    stack: Stack, unix_listener: tuple[Path, socket.socket]
) -> None:
    path, server = unix_listener
    kernel = await stack.kernel()
    out = await stack.run(kernel, _connect_probe("AF_UNIX", repr(str(path))))
    assert out.startswith(DENIED), out
    with pytest.raises(BlockingIOError):
        server.accept()
    docker_socket = _docker_socket()
    if docker_socket is not None:
        out = await stack.run(kernel, _connect_probe("AF_UNIX", repr(docker_socket)))
        assert out.startswith(DENIED), out


async def test_other_kernels_repl_socket_is_unreachable(stack: Stack) -> None:
    victim, attacker = await stack.kernel(), await stack.kernel()
    sock = stack.scratch_root / "ipc" / victim / "repl-in.sock"
    assert sock.exists()
    out = await stack.run(attacker, _connect_probe("AF_UNIX", repr(str(sock))))
    assert out.startswith(DENIED), out
    assert (await stack.run(victim, "print(6 * 7)")).strip() == "42"


async def test_tcp_to_the_host_fails(stack: Stack) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        out = await stack.run(
            await stack.kernel(), _connect_probe("AF_INET", repr(("127.0.0.1", port)))
        )
        assert out.startswith(DENIED), out
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


@pytest.fixture
def sysv_segment() -> Iterator[int]:
    """A SysV shared memory segment of the host (as PostgreSQL keeps one), by its key."""
    libc = ctypes.CDLL(None, use_errno=True)
    key = 0x5A000000 | (os.getpid() & 0xFFFFFF)
    ipc_creat, ipc_excl, ipc_rmid = 0o1000, 0o2000, 0
    shmid = libc.shmget(key, 4096, ipc_creat | ipc_excl | 0o666)
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    try:
        yield key
    finally:
        libc.shmctl(shmid, ipc_rmid, None)


async def test_host_sysv_shared_memory_is_not_attachable(stack: Stack, sysv_segment: int) -> None:
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"shmid = libc.shmget({sysv_segment}, 0, 0)\n"
        "if shmid < 0:\n"
        f"    print({DENIED!r}, os.strerror(ctypes.get_errno()))\n"
        "else:\n"
        "    print('ATTACHED', shmid)\n"
    )
    out = await stack.run(await stack.kernel(), code)
    assert out.startswith(DENIED), out


# ------------------------------------------------------------------ privileges


async def test_kernel_is_not_root_and_has_no_capabilities(stack: Stack) -> None:
    code = (
        "import os\n"
        "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')]\n"
        "print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), caps[0])\n"
    )
    out = await stack.run(await stack.kernel(), code)
    uid, euid, gid, *_, caps = out.split()
    assert 0 not in (int(uid), int(euid), int(gid)), out
    assert int(caps, 16) == 0, out


async def test_each_local_kernel_has_its_own_uid(
    gateway: Gateway,
    agent_starter,  # type: ignore[no-untyped-def]
    scratch_root: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("an agent that is not root runs every kernel as its own uid")
    agent = await agent_starter("local", "s")
    stack = Stack("local", await gateway.api(), agent, scratch_root, "s")
    first, second = await stack.kernel(), await stack.kernel()
    uids = {await stack.run(k, "import os; print(os.getuid())") for k in (first, second)}
    assert len(uids) == 2
    owners = {(scratch_root / "work" / k).stat().st_uid for k in (first, second)}
    assert {f"{u}\n" for u in owners} == uids


# ------------------------------------------------------------------ the sandbox or nothing


async def test_local_backend_refuses_to_run_without_its_sandbox(
    start_agent,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from sorna.agent.errors import LocalSandboxUnavailable

    missing = tmp_path / "no-bwrap"
    with pytest.raises(LocalSandboxUnavailable) as refused:
        await start_agent(bwrap_path=missing)
    message = str(refused.value)
    assert str(missing) in message and "unsafe_local_backend" in message

    agent = await start_agent(bwrap_path=missing, unsafe_local_backend=True)
    assert agent.backend.name == "local"


async def test_unsafe_local_backend_still_runs_kernels(
    gateway: Gateway,
    agent_starter,  # type: ignore[no-untyped-def]
    scratch_root: Path,
    tmp_path: Path,
) -> None:
    agent = await agent_starter(
        "local", "s", SORNA_BWRAP_PATH=str(tmp_path / "none"), SORNA_UNSAFE_LOCAL_BACKEND="1"
    )
    stack = Stack("local", await gateway.api(), agent, scratch_root, "s")
    assert (await stack.run(await stack.kernel(), "print(6 * 7)")).strip() == "42"


# ------------------------------------------------------------------ a killed agent


async def test_kernels_of_a_sigkilled_agent_are_ended_by_the_next(
    gateway: Gateway,
    agent_starter,  # type: ignore[no-untyped-def]
    scratch_root: Path,
) -> None:
    agent = await agent_starter("local", "s", SORNA_AGENT_ID="rt-killed")
    stack = Stack("local", await gateway.api(), agent, scratch_root, "s")
    kernel = await stack.kernel()
    # A child that outlives its run, as a tenant's background job would.
    await stack.run(kernel, "import subprocess\nsubprocess.Popen(['sleep', '600'])\nprint(1)")
    assert processes_under(scratch_root)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    await agent_starter("local", "s", SORNA_AGENT_ID="rt-killed")

    async def none_left() -> bool:
        # The agent that replaces it also removes the dead kernel's state (it may still be
        # starting: the dead one's registry entry outlives it a little).
        return not processes_under(scratch_root) and not (scratch_root / "local" / kernel).exists()

    await until(none_left, 30)


async def test_local_kernel_memory_is_capped_across_a_restart(
    gateway: Gateway,
    agent_starter,  # type: ignore[no-untyped-def]
    scratch_root: Path,
) -> None:
    agent = await agent_starter("local", "s")
    api = await gateway.api()
    stack = Stack("local", api, agent, scratch_root, "s")
    body = {"lang": "python3", "clientSessionToken": "rt-mem", "limits": {"maxMem": 64 * 1024}}
    status, answer = await api.json("POST", "/v2/kernel/create", body)
    assert status == 201, answer
    kernel = str(answer["kernelId"])
    code = (
        "import os\n"
        "try:\n"
        "    x = bytearray(256 << 20)\n"
        "    print('ALLOCATED')\n"
        "except MemoryError:\n"
        "    print('MemoryError', os.getuid())\n"
    )
    first = await stack.run(kernel, code)
    assert first.startswith("MemoryError"), first
    status, _ = await api.json("PATCH", f"/v2/kernel/{kernel}")
    assert status == 204
    assert await stack.run(kernel, code) == first  # the same uid, still capped
