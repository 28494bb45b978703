"""The original client's function API, kept for existing programs: one call, one request.

Each function opens and closes its own :class:`Session`; for more than a few calls, hold a
:class:`Kernel` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import ClientConfig
from .kernel import ExecMode
from .sync import Kernel, Session
from .types import KernelInfo, RunResult


def create_kernel(
    lang: str,
    client_token: str | None = None,
    max_mem: int | None = None,
    exec_timeout: int | None = None,
    *,
    config: ClientConfig | None = None,
) -> str:
    """Create a kernel (or get the live one of ``client_token``); return its id."""
    kernel = Kernel.get_or_create(lang, client_token, max_mem, exec_timeout, config=config)
    kernel.close()
    return kernel.kernel_id


def destroy_kernel(kernel_id: str, *, config: ClientConfig | None = None) -> Mapping[str, Any]:
    """Terminate a kernel; return its final usage stats."""
    with Session(config) as session:
        return Kernel.from_id(kernel_id, session=session).destroy()


def restart_kernel(kernel_id: str, *, config: ClientConfig | None = None) -> None:
    """Restart a kernel: same id, state lost, ``/home/work`` kept."""
    with Session(config) as session:
        Kernel.from_id(kernel_id, session=session).restart()


def get_kernel_info(kernel_id: str, *, config: ClientConfig | None = None) -> KernelInfo:
    """Return a kernel's language, age and resource usage."""
    with Session(config) as session:
        return Kernel.from_id(kernel_id, session=session).get_info()


def execute_code(
    kernel_id: str,
    code: str = "",
    mode: str = ExecMode.QUERY,
    run_id: str | None = None,
    opts: Mapping[str, Any] | None = None,
    *,
    config: ClientConfig | None = None,
) -> RunResult:
    """Send one execute call (one chunk of the run, as :meth:`Kernel.execute`)."""
    with Session(config) as session:
        return Kernel.from_id(kernel_id, session=session).execute(code, mode, run_id, opts)
