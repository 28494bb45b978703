"""Fixtures for the REPL protocol tests: real daemons, driven over ZMQ.

``repl_kernel`` is a factory, parametrized by backend: ``local`` runs the daemon as a child
process (no jail; the jail has its own tests), ``docker`` runs the kernel image through
``sorna.repl.dockerkernel``. Docker params skip when that module, the engine or the image is
missing, and fail instead when ``SORNA_REQUIRE_DOCKER=1``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Protocol

import pytest

from sorna.common.testing.plugin import require_docker
from sorna.repl.client import ReplClient
from sorna.repl.localkernel import local_kernel


class StartKernel(Protocol):
    """Start a kernel of ``lang``; it is stopped when the test ends."""

    def __call__(self, lang: str, *, workdir: Path | None = None) -> Awaitable[ReplClient]: ...


def _docker_unavailable(reason: str) -> None:
    if os.environ.get("SORNA_REQUIRE_DOCKER") == "1":
        pytest.fail(f"Docker is required (SORNA_REQUIRE_DOCKER=1) but {reason}")
    pytest.skip(reason)


def _require_image(lang: str) -> None:
    image = f"sorna/kernel-{lang}:latest"
    found = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, timeout=30, check=False
    )
    if found.returncode != 0:
        _docker_unavailable(f"image {image} is not built (make image LANG={lang})")


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
async def repl_kernel(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StartKernel]:
    """Factory: ``await repl_kernel("python3")`` -> a connected client."""
    backend: str = request.param
    if backend == "docker":
        require_docker()
        if importlib.util.find_spec("sorna.repl.dockerkernel") is None:
            _docker_unavailable("sorna.repl.dockerkernel is not written yet")
    counter = itertools.count(1)
    async with contextlib.AsyncExitStack() as stack:

        async def start(lang: str, *, workdir: Path | None = None) -> ReplClient:
            if workdir is None:
                workdir = tmp_path / f"work-{lang}-{next(counter)}"
                workdir.mkdir()
            cm: contextlib.AbstractAsyncContextManager[ReplClient]
            if backend == "local":
                cm = local_kernel(lang, workdir=workdir, jail=False)
            else:
                from sorna.repl.dockerkernel import docker_kernel

                _require_image(lang)
                cm = docker_kernel(lang, workdir=workdir)
            return await stack.enter_async_context(cm)

        yield start
