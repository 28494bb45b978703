"""The one interface the agent drives kernels through; ``docker`` and ``local`` implement it."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sorna.common.ids import KernelId
from sorna.common.messages import KernelUsage
from sorna.common.types import TerminationReason

from .files import Scratch
from .images import ImageInfo, Limits


@dataclass(frozen=True, slots=True)
class KernelSpec:
    """Everything a backend needs to start (or restart) one kernel."""

    kernel_id: KernelId
    lang: str
    owner: str
    image: ImageInfo
    limits: Limits
    cores: tuple[int, ...]
    scratch: Scratch
    ipc_dir: Path


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the kernel's REPL daemon listens, as seen from the agent."""

    input_addr: str
    output_addr: str


#: Called by a backend when a kernel died on its own (not through destroy or restart).
ExitCallback = Callable[[KernelId, TerminationReason], None]


class KernelBackend(abc.ABC):
    """Start, restart, measure and remove kernels."""

    name: ClassVar[str]

    def work_uid(self, spec: KernelSpec) -> int | None:
        """Owner of the kernel's scratch and ipc folders and of files the agent writes there
        (None: the agent's own user)."""
        return None

    @abc.abstractmethod
    async def start(self, on_exit: ExitCallback) -> None:
        """Connect to what runs kernels; report deaths through ``on_exit`` from now on."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop watching and release connections (kernels are left as they are)."""

    @abc.abstractmethod
    async def images(self) -> dict[str, ImageInfo]:
        """The kernel images on offer, by canonical language (read afresh)."""

    @abc.abstractmethod
    async def create(self, spec: KernelSpec) -> Endpoint:
        """Start a kernel and return once its daemon listens."""

    @abc.abstractmethod
    async def restart(self, spec: KernelSpec) -> Endpoint:
        """Stop the kernel's daemon and start a fresh one on the same scratch folder."""

    @abc.abstractmethod
    async def destroy(self, kernel_id: KernelId) -> None:
        """Stop the kernel and remove whatever the backend made for it (idempotent)."""

    @abc.abstractmethod
    async def usage(self, kernel_id: KernelId) -> KernelUsage | None:
        """The kernel's usage now, or None when it cannot be read."""

    async def adoptable(self) -> tuple[list[KernelSpec], list[str]]:
        """Kernels of this agent still running from a previous life, and leftovers to remove."""
        return [], []

    async def adopt(self, spec: KernelSpec) -> Endpoint | None:
        """Take back a running kernel; None if its daemon does not listen."""
        return None

    async def remove_leftover(self, ref: str) -> None:
        """Remove a leftover named by :meth:`adoptable`."""
        return None
