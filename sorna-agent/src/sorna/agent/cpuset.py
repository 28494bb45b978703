"""Which CPU cores each kernel gets: spread kernels over the least-used cores."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sorna.common.ids import KernelId


class CoreAllocator:
    """Hand out sets of cores, counting how many kernels share each core."""

    def __init__(self, cores: Sequence[int]) -> None:
        if not cores:
            raise ValueError("no cores to allocate")
        self._load = dict.fromkeys(cores, 0)
        self._held: dict[KernelId, tuple[int, ...]] = {}

    @property
    def cores(self) -> list[int]:
        """Every core on offer."""
        return sorted(self._load)

    @property
    def used(self) -> int:
        """Cores handed out, counting a shared core once per kernel."""
        return sum(len(c) for c in self._held.values())

    def allocate(self, kernel_id: KernelId, count: int) -> tuple[int, ...]:
        """Give ``kernel_id`` the ``count`` least-loaded cores (capped at what exists)."""
        self.release(kernel_id)
        count = max(1, min(count, len(self._load)))
        chosen = sorted(sorted(self._load, key=lambda c: (self._load[c], c))[:count])
        self._take(kernel_id, chosen)
        return tuple(chosen)

    def adopt(self, kernel_id: KernelId, cores: Iterable[int]) -> tuple[int, ...]:
        """Record cores a re-adopted kernel already has (unknown cores are ignored)."""
        self.release(kernel_id)
        chosen = sorted(c for c in set(cores) if c in self._load)
        self._take(kernel_id, chosen)
        return tuple(chosen)

    def release(self, kernel_id: KernelId) -> None:
        """Return the kernel's cores."""
        for core in self._held.pop(kernel_id, ()):
            self._load[core] -= 1

    def _take(self, kernel_id: KernelId, cores: Sequence[int]) -> None:
        for core in cores:
            self._load[core] += 1
        self._held[kernel_id] = tuple(cores)


def format_cpuset(cores: Iterable[int]) -> str:
    """Docker's ``--cpuset-cpus`` spelling: ``0,2,3``."""
    return ",".join(str(c) for c in sorted(cores))


def parse_cpuset(text: str) -> list[int]:
    """Parse ``0-2,5`` into ``[0, 1, 2, 5]``."""
    cores: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cores.extend(range(int(lo), int(hi) + 1))
        else:
            cores.append(int(part))
    return cores
