"""Media from real python3 kernels: the REPL's emit hook turns records into frames.

``docker``: the kernel image (under the jail, matplotlibrc selecting the Sorna backend, numpy,
pandas and matplotlib from Debian). ``local``: the daemon as a child process of this venv,
with the backend chosen through MPLBACKEND (the venv has no matplotlibrc of ours).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sorna.common.testing.plugin import require_docker
from sorna.drawing import decode_drawing
from sorna.matplotlib import BACKEND
from sorna.repl.client import ReplClient
from sorna.repl.localkernel import local_kernel

StartKernel = Callable[[], Awaitable[ReplClient]]

DRAWING = """
from sorna.drawing import Canvas, Colors
c = Canvas(50, 40)
dot = c.circle(25, 20, 10, fill=Colors.Red)
c.update()
dot.x = 30
c.update()
"""

PLOT_AND_TABLE = """
import matplotlib.pyplot as plt
import pandas as pd
from sorna.display import display
plt.plot([1, 2], [3, 4])
plt.show()
display(pd.DataFrame({"name": ["ada"], "score": [3]}))
print("done")
"""

HAVE_SCIENCE = all(
    importlib.util.find_spec(name) is not None for name in ("matplotlib", "pandas", "numpy")
)


def _require_python3_image() -> None:
    require_docker()
    found = subprocess.run(
        ["docker", "image", "inspect", "sorna/kernel-python3:latest"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if found.returncode != 0:
        reason = "image sorna/kernel-python3:latest is not built (make image LANG=python3)"
        if os.environ.get("SORNA_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
async def kernel(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StartKernel]:
    """Factory for a python3 kernel of the parametrized backend."""
    backend: str = request.param
    if backend == "docker":
        _require_python3_image()
    async with contextlib.AsyncExitStack() as stack:

        async def start() -> ReplClient:
            work = tmp_path / "work"
            work.mkdir()
            cm: contextlib.AbstractAsyncContextManager[ReplClient]
            if backend == "local":
                env = {"MPLBACKEND": BACKEND, "MPLCONFIGDIR": str(tmp_path / "mpl")}
                cm = local_kernel("python3", workdir=work, jail=False, env=env)
            else:
                from sorna.repl.dockerkernel import docker_kernel

                cm = docker_kernel("python3", workdir=work, mem_mib=512)
            return await stack.enter_async_context(cm)

        yield start


async def test_a_drawing_becomes_media_frames(kernel: StartKernel) -> None:
    client = await kernel()
    result = await client.run_code(DRAWING)
    assert result.stderr == ""
    media = result.media
    assert [m["type"] for m in media] == ["application/x-sorna-drawing"] * 2
    first, second = (decode_drawing(m["data"]) for m in media)
    cid = first[0][0]
    assert first == [
        [cid, "canvas", 50, 40, "#ffffffff", "#000000ff"],
        [cid, "obj", 1, ["circle", 25, 20, 10, "#000000ff", "#ff0000ff", 0, 1]],
    ]
    assert second == [[cid, "update", 1, "x", 30]]


async def test_plot_and_table(kernel: StartKernel, request: pytest.FixtureRequest) -> None:
    if "local" in request.node.callspec.id and not HAVE_SCIENCE:
        pytest.skip("this venv lacks matplotlib/pandas/numpy (pip install -e sorna-media[test])")
    client = await kernel()
    result = await client.run_code(PLOT_AND_TABLE)
    # No warning about an unwritable config/cache dir or a missing backend.
    assert result.stderr == ""
    assert result.stdout == "done\n"
    assert [m["type"] for m in result.media] == ["image/svg+xml"]
    assert "<svg" in result.media[0]["data"]
    assert len(result.html) == 1 and "<td>ada</td>" in result.html[0]
    assert result.ops.index("media") < result.ops.index("html") < result.ops.index("stdout")


async def test_display_of_something_else_is_a_type_error(kernel: StartKernel) -> None:
    client = await kernel()
    result = await client.run_code("from sorna.display import display\ndisplay(42)")
    assert "TypeError: display() cannot show a builtins.int" in result.stderr
    assert result.media == []
