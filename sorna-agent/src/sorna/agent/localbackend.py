"""Kernels as jailed child processes of the agent (no Docker; weaker isolation).

Each kernel is :func:`sorna.repl.localkernel.local_kernel` held open for the kernel's life:
the language daemon under the jail, its REPL sockets in a private folder, ``/home/work`` being
the kernel's scratch folder. Memory is bounded with ``RLIMIT_DATA`` on the daemon; there is no
cpuset, network or pids isolation beyond the jail's policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

from sorna.common.ids import KernelId
from sorna.common.langs import CANONICAL_LANGS
from sorna.common.types import TerminationReason
from sorna.repl.client import ReplClient
from sorna.repl.imagebuild import KERNEL_SPECS
from sorna.repl.localkernel import LocalKernelError, daemon_argv, local_kernel
from sorna.repl.runner import descendants

from .backend import Endpoint, ExitCallback, KernelBackend, KernelSpec
from .errors import KernelCreationFailed
from .images import ImageInfo
from .stats import KernelUsage, read_process_tree

log = logging.getLogger(__name__)

#: How often a local kernel's process is checked for life.
WATCH_INTERVAL = 0.25


@dataclass
class _LocalKernel:
    stack: contextlib.AsyncExitStack
    root_pid: int
    watcher: asyncio.Task[None] | None = None
    peak: KernelUsage = field(default_factory=KernelUsage)


def _pids_with(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (the kernel's socket folder)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class LocalBackend(KernelBackend):
    """Kernels as local, jailed child processes."""

    name = "local"
    work_uid = None

    def __init__(self, *, jail: bool = True) -> None:
        self._jail = jail
        self._kernels: dict[KernelId, _LocalKernel] = {}
        self._on_exit: ExitCallback | None = None

    async def start(self, on_exit: ExitCallback) -> None:
        self._on_exit = on_exit
        log.warning(
            "local backend: kernels run as jailed child processes of the agent, without "
            "containers: weaker isolation than the docker backend"
        )

    async def close(self) -> None:
        for kernel_id in list(self._kernels):
            await self.destroy(kernel_id)

    async def images(self) -> dict[str, ImageInfo]:
        found: dict[str, ImageInfo] = {}
        for lang in CANONICAL_LANGS:
            try:
                daemon_argv(lang)
            except LocalKernelError:
                continue
            info = ImageInfo.from_labels(f"local:{lang}", KERNEL_SPECS[lang].labels())
            if info is not None:
                found[lang] = info
        return found

    async def create(self, spec: KernelSpec) -> Endpoint:
        stack = contextlib.AsyncExitStack()
        env = {name: str(len(spec.cores)) for name in spec.image.corecount_envs}
        try:
            client: ReplClient = await stack.enter_async_context(
                local_kernel(spec.lang, workdir=spec.scratch.root, jail=self._jail, env=env)
            )
        except (LocalKernelError, OSError) as e:
            await stack.aclose()
            raise KernelCreationFailed(f"{spec.lang} kernel: {e}") from None
        # The client is only how local_kernel reports the socket folder; the agent links itself.
        client.close()
        sockdir = client.input_addr[len("ipc://") :].rsplit("/", 1)[0]
        pids = _pids_with(sockdir)
        for pid in pids:
            if b"--input" in _cmdline(pid):
                _limit(pid, spec.limits.mem_kib * 1024)
        me = os.getpid()
        root = next((p for p in pids if _ppid(p) == me), pids[0] if pids else -1)
        kernel = _LocalKernel(stack=stack, root_pid=root)
        self._kernels[spec.kernel_id] = kernel
        kernel.watcher = asyncio.create_task(self._watch(spec.kernel_id, kernel))
        return Endpoint(client.input_addr, client.output_addr)

    async def restart(self, spec: KernelSpec) -> Endpoint:
        await self.destroy(spec.kernel_id)
        return await self.create(spec)

    async def destroy(self, kernel_id: KernelId) -> None:
        kernel = self._kernels.pop(kernel_id, None)
        if kernel is None:
            return
        if kernel.watcher is not None:
            kernel.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kernel.watcher
        await kernel.stack.aclose()

    async def usage(self, kernel_id: KernelId) -> KernelUsage | None:
        kernel = self._kernels.get(kernel_id)
        if kernel is None or not _alive(kernel.root_pid):
            return None
        usage = await asyncio.to_thread(read_process_tree, descendants(kernel.root_pid))
        if usage is None:
            return None
        kernel.peak = kernel.peak.merged(usage)
        return kernel.peak

    async def _watch(self, kernel_id: KernelId, kernel: _LocalKernel) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if not _alive(kernel.root_pid):
                break
        log.info("local kernel %s: daemon process %d ended", kernel_id, kernel.root_pid)
        kernel.watcher = None
        if self._on_exit is not None:
            self._on_exit(kernel_id, TerminationReason.EXITED)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _limit(pid: int, mem_bytes: int) -> None:
    """Bound a daemon's heap (and what it forks later) and forbid core dumps."""
    try:
        resource.prlimit(pid, resource.RLIMIT_DATA, (mem_bytes, mem_bytes))
        resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as e:
        log.warning("local kernel process %d: cannot set rlimits: %s", pid, e)
