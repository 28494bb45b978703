"""Per-kernel usage: CPU time, current and peak memory, block and network I/O.

Docker kernels are read from their cgroup (v1: ``cpuacct``/``memory``/``blkio`` hierarchies;
v2: the unified ``cpu.stat``/``memory.*``/``io.stat``), falling back to Docker's stats API when
no cgroup folder is found. Local kernels are summed over their process tree from ``/proc``.
Each reading is a ``sorna.common.messages.KernelUsage``, the type the events carry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sorna.common.messages import KernelUsage

CGROUP_ROOT = Path("/sys/fs/cgroup")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def cgroup_version(root: Path = CGROUP_ROOT) -> int:
    """2 on a unified hierarchy, else 1."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def container_cgroup_dirs(container_id: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Candidate cgroup folders of a container (cgroupfs and systemd drivers, v1 and v2)."""
    names = [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]
    if cgroup_version(root) == 2:
        return [root / n for n in names]
    return [root / "memory" / n for n in names]


def read_cgroup(container_id: str, root: Path = CGROUP_ROOT) -> KernelUsage | None:
    """Read a container's usage from its cgroup; None if its folder is gone or unknown."""
    for folder in container_cgroup_dirs(container_id, root):
        if folder.is_dir():
            if cgroup_version(root) == 2:
                return _read_v2(folder)
            return _read_v1(root, folder.relative_to(root / "memory"))
    return None


def _read_v1(root: Path, rel: Path) -> KernelUsage:
    memory, cpu, blkio = root / "memory" / rel, root / "cpuacct" / rel, root / "blkio" / rel
    cpu_ns = _read_int(cpu / "cpuacct.usage") or 0
    cur = _read_int(memory / "memory.usage_in_bytes") or 0
    peak = _read_int(memory / "memory.max_usage_in_bytes") or cur
    read = write = 0
    for name in ("blkio.throttle.io_service_bytes", "blkio.io_service_bytes"):
        try:
            lines = (blkio / name).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                if parts[1] == "Read":
                    read += int(parts[2])
                elif parts[1] == "Write":
                    write += int(parts[2])
        if read or write:
            break
    return KernelUsage(cpu_ns // 1_000_000, cur, peak, read, write)


def _read_v2(folder: Path) -> KernelUsage:
    cpu_us = _read_keyed(folder / "cpu.stat").get("usage_usec", 0)
    cur = _read_int(folder / "memory.current") or 0
    peak = _read_int(folder / "memory.peak") or cur
    read = write = 0
    try:
        lines = (folder / "io.stat").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes" and value.isdigit():
                read += int(value)
            elif key == "wbytes" and value.isdigit():
                write += int(value)
    return KernelUsage(cpu_us // 1000, cur, peak, read, write)


def from_docker_stats(data: dict[str, Any]) -> KernelUsage:
    """Convert one answer of Docker's stats API (``stream=false``)."""
    cpu_ns = int(data.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0))
    memory = data.get("memory_stats", {})
    cur = int(memory.get("usage", 0))
    peak = int(memory.get("max_usage", 0)) or cur
    read = write = 0
    for entry in data.get("blkio_stats", {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += int(entry.get("value", 0))
        elif op == "write":
            write += int(entry.get("value", 0))
    rx = tx = 0
    for net in (data.get("networks") or {}).values():
        rx += int(net.get("rx_bytes", 0))
        tx += int(net.get("tx_bytes", 0))
    return KernelUsage(cpu_ns // 1_000_000, cur, peak, read, write, rx, tx)


def read_process_tree(pids: list[int]) -> KernelUsage | None:
    """Sum the usage of processes (a local kernel's tree); None if none is alive."""
    cpu_ticks = rss = hwm = read = write = 0
    alive = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
        except (OSError, IndexError):
            continue
        alive += 1
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of stat; [0] here is field 3
        cpu_ticks += sum(int(v) for v in fields[11:15])
        rss += int(fields[21]) * _PAGE
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                hwm += int(line.split()[1]) * 1024
        io = _read_keyed_colon(Path(f"/proc/{pid}/io"))
        read += io.get("read_bytes", 0)
        write += io.get("write_bytes", 0)
    if not alive:
        return None
    return KernelUsage(cpu_ticks * 1000 // _CLOCK_TICKS, rss, max(hwm, rss), read, write)


def _read_keyed_colon(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            out[key] = int(value)
    return out
