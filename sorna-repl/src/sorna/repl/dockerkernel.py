"""Run a kernel image as a container and talk to it (host side; tests and bench).

:func:`docker_kernel` starts ``sorna/kernel-<lang>:latest`` from the same container profile
as the agent (:func:`sorna.repl.container.container_config`: no network, a read-only root, no
capabilities, ``no-new-privileges``, the agent's default pids limit and ``/tmp`` size, memory
without swap), with ``/home/work`` bind-mounted from a host folder and the REPL sockets as
``ipc://`` files in a bind-mounted host temporary folder. It yields a connected
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

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from sorna.common.constants import KERNEL_WORK_UID
from sorna.common.langs import image_name

from .client import ReplClient
from .container import ContainerSpec, container_config, host_socket_paths

#: Label on every container started here, so a leak is easy to find.
CONTAINER_LABEL: Final = "io.sorna.dockerkernel"
#: How long the daemon may take to bind its sockets.
START_TIMEOUT: Final = 30.0
#: Memory limit of a test kernel (MiB): the images' default (their io.sorna.maxmem label).
DEFAULT_MEM_MIB: Final = 256


class DockerKernelError(Exception):
    """A kernel container could not be started or did not come up."""


def _make_writable(path: Path) -> None:
    """Let the container's ``work`` user write ``path``."""
    try:
        os.chown(path, KERNEL_WORK_UID, KERNEL_WORK_UID)
    except PermissionError:
        path.chmod(0o777)


async def container_logs(container: DockerContainer, lines: int = 20) -> str:
    """The last ``lines`` lines of a container's output."""
    try:
        chunks = await container.log(stdout=True, stderr=True, tail=lines)
    except DockerError:
        return ""
    return "".join(chunks).strip()


async def _wait_ready(container: DockerContainer, name: str, ipc_dir: Path) -> None:
    """Wait until the daemon has bound both sockets (or the container died)."""
    deadline = time.monotonic() + START_TIMEOUT
    sockets = host_socket_paths(ipc_dir)
    checks = 0
    while not all(s.exists() for s in sockets):
        if time.monotonic() > deadline:
            logs = await container_logs(container)
            raise DockerKernelError(f"{name}: the daemon did not bind its sockets; log: {logs}")
        checks += 1
        if checks % 20 == 0:
            info = await container.show()
            if not info["State"].get("Running"):
                logs = await container_logs(container)
                raise DockerKernelError(f"{name}: the container exited; log: {logs}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def docker_kernel(
    lang: str,
    *,
    workdir: Path,
    mem_mib: int = DEFAULT_MEM_MIB,
    image: str | None = None,
) -> AsyncIterator[ReplClient]:
    """Run the kernel image of ``lang`` and yield a client connected to its daemon.

    ``workdir`` becomes ``/home/work`` (made writable by the container's ``work`` user).
    """
    ipc_dir = Path(tempfile.mkdtemp(prefix="sorna-ipc-"))
    name = f"sorna-kernel-{lang}-{uuid.uuid4().hex[:12]}"
    docker = aiodocker.Docker()
    container: DockerContainer | None = None
    client: ReplClient | None = None
    try:
        _make_writable(ipc_dir)
        _make_writable(workdir)
        spec = ContainerSpec(
            image=image or image_name(lang),
            workdir=workdir,
            ipc_dir=ipc_dir,
            mem_bytes=mem_mib << 20,
            labels={CONTAINER_LABEL: lang},
        )
        try:
            container = await docker.containers.create(container_config(spec), name=name)
            await container.start()
        except DockerError as e:
            raise DockerKernelError(f"{name}: {e.message}") from None
        await _wait_ready(container, name, ipc_dir)
        input_socket, output_socket = host_socket_paths(ipc_dir)
        client = ReplClient(f"ipc://{input_socket}", f"ipc://{output_socket}")
        yield client
    finally:
        if client is not None:
            client.close()
        await asyncio.shield(_remove(docker, name))
        shutil.rmtree(ipc_dir, ignore_errors=True)


async def _remove(docker: aiodocker.Docker, name: str) -> None:
    """Remove the container ``name`` if it was made (create may fail after making it)."""
    try:
        with contextlib.suppress(DockerError):
            await docker.containers.container(name).delete(force=True, v=True)
    finally:
        await docker.close()


__all__ = ["DockerKernelError", "container_logs", "docker_kernel"]
