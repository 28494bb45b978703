"""Run a kernel image as a locked-down container and talk to it (host side; tests and bench).

:func:`docker_kernel` starts ``sorna/kernel-<lang>:latest`` the way the agent does for a
kernel without a network: ``--network none``, a read-only root file system, ``/home/work``
bind-mounted from a host folder, ``/tmp`` a size-capped tmpfs, a memory limit, and the REPL
sockets as ``ipc://`` files in a bind-mounted host temporary folder. It yields a connected
:class:`~sorna.repl.client.ReplClient` and removes the container and its folder on exit,
even on error.

Errors: :class:`DockerKernelError` (the container could not start, or its daemon never bound
its sockets; the message carries the tail of the container's log).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from sorna.common.constants import REPL_INPUT_IPC_NAME, REPL_OUTPUT_IPC_NAME
from sorna.common.langs import image_name

from .client import ReplClient
from .protocol import ENV_INPUT_ADDR, ENV_OUTPUT_ADDR

#: uid/gid of the image's ``work`` user (imagebuild.WORK_UID builds it).
WORK_UID: Final = 1000
#: Where the ipc folder is mounted inside the container.
CONTAINER_IPC_DIR: Final = "/home/sorna/ipc"
#: Label on every container started here, so a leak is easy to find.
CONTAINER_LABEL: Final = "io.sorna.dockerkernel"
#: How long the daemon may take to bind its sockets.
START_TIMEOUT: Final = 30.0


class DockerKernelError(Exception):
    """A kernel container could not be started or did not come up."""


async def _docker(*args: str, check: bool = True) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "docker",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode("utf-8", errors="replace").strip()
    if check and proc.returncode != 0:
        raise DockerKernelError(f"docker {args[0]} failed: {text.splitlines()[-1:] or '?'}")
    return proc.returncode or 0, text


def _make_writable(path: Path) -> None:
    """Let the container's ``work`` user write ``path``."""
    try:
        os.chown(path, WORK_UID, WORK_UID)
    except PermissionError:
        path.chmod(0o777)


def _prepare_dirs(ipc_dir: Path, workdir: Path) -> str:
    """Make both folders writable by the container's user; return workdir's real path."""
    _make_writable(ipc_dir)
    _make_writable(workdir)
    return os.path.realpath(workdir)


async def container_logs(name: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a container's output."""
    _, text = await _docker("logs", "--tail", str(lines), name, check=False)
    return text


async def _wait_ready(name: str, ipc_dir: Path) -> None:
    """Wait until the daemon has bound both sockets (or the container died)."""
    deadline = time.monotonic() + START_TIMEOUT
    sockets = [ipc_dir / REPL_INPUT_IPC_NAME, ipc_dir / REPL_OUTPUT_IPC_NAME]
    checks = 0
    while not all(s.exists() for s in sockets):
        if time.monotonic() > deadline:
            logs = await container_logs(name)
            raise DockerKernelError(f"{name}: the daemon did not bind its sockets; log: {logs}")
        checks += 1
        if checks % 20 == 0:
            _, state = await _docker("inspect", "--format", "{{.State.Running}}", name, check=False)
            if state != "true":
                logs = await container_logs(name)
                raise DockerKernelError(f"{name}: the container exited; log: {logs}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def docker_kernel(
    lang: str,
    *,
    workdir: Path,
    network: bool = False,
    memory: str = "256m",
    tmp_size: str = "64m",
    image: str | None = None,
) -> AsyncIterator[ReplClient]:
    """Run the kernel image of ``lang`` and yield a client connected to its daemon.

    ``workdir`` becomes ``/home/work`` (made writable by the container's ``work`` user).
    ``network=True`` gives the container the default bridge network; the REPL sockets stay
    ``ipc://`` files either way.
    """
    ref = image or image_name(lang)
    ipc_dir = Path(tempfile.mkdtemp(prefix="sorna-ipc-"))
    name = f"sorna-kernel-{lang}-{uuid.uuid4().hex[:12]}"
    created = False
    client: ReplClient | None = None
    try:
        host_workdir = _prepare_dirs(ipc_dir, workdir)
        args = [
            "run",
            "--detach",
            "--name",
            name,
            "--label",
            f"{CONTAINER_LABEL}={lang}",
            "--network",
            "bridge" if network else "none",
            "--read-only",
            "--tmpfs",
            f"/tmp:rw,nosuid,nodev,size={tmp_size},mode=1777",
            "--memory",
            memory,
            "--memory-swap",
            memory,
            # Docker's default seccomp profile lets the jail's tracer read its tracees'
            # memory (process_vm_readv) only with this capability; the user code runs as
            # the unprivileged `work` user, which holds no capabilities.
            "--cap-add",
            "SYS_PTRACE",
            "--pids-limit",
            "256",
            "--volume",
            f"{host_workdir}:/home/work",
            "--volume",
            f"{ipc_dir}:{CONTAINER_IPC_DIR}",
            "--env",
            f"{ENV_INPUT_ADDR}=ipc://{CONTAINER_IPC_DIR}/{REPL_INPUT_IPC_NAME}",
            "--env",
            f"{ENV_OUTPUT_ADDR}=ipc://{CONTAINER_IPC_DIR}/{REPL_OUTPUT_IPC_NAME}",
            ref,
        ]
        created = True  # `docker run` may create the container and then fail to start it
        await _docker(*args)
        await _wait_ready(name, ipc_dir)
        client = ReplClient(
            f"ipc://{ipc_dir / REPL_INPUT_IPC_NAME}",
            f"ipc://{ipc_dir / REPL_OUTPUT_IPC_NAME}",
        )
        yield client
    finally:
        if client is not None:
            client.close()
        if created:
            await asyncio.shield(_docker("rm", "--force", "--volumes", name, check=False))
        shutil.rmtree(ipc_dir, ignore_errors=True)


__all__ = ["DockerKernelError", "container_logs", "docker_kernel"]
