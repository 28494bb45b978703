"""The small commands: ps, terminate, info, upload, download, admin."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from ..admin import AsyncAdmin
from ..exceptions import SornaAPIError
from ..kernel import AsyncKernel
from ..session import AsyncSession
from ..types import KernelInfo
from .common import EXIT_ERROR, EXIT_OK, print_table
from .output import Status

Rows = list[dict[str, Any]]
Columns = tuple[str, ...]

KERNEL_COLUMNS = ("id", "kernelId", "lang", "status", "owner", "accessKey", "agent", "createdAt")
KEYPAIR_COLUMNS = (
    "accessKey",
    "isActive",
    "isAdmin",
    "concurrencyLimit",
    "concurrencyUsed",
    "rateLimit",
    "numQueries",
    "lastUsed",
)
AGENT_COLUMNS = ("id", "addr", "status", "langs", "numKernels", "maxKernels", "lastHeartbeat")


async def ps_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """List live kernels (admin keypairs see all of them)."""
    print_table(await AsyncAdmin(session).kernels(), KERNEL_COLUMNS)
    return EXIT_OK


async def terminate_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """Destroy each kernel; a failure on one does not stop the others."""
    failed = False
    for kernel_id in args.kernel_ids:
        try:
            await AsyncKernel(session, kernel_id).destroy()
        except SornaAPIError as e:
            print(f"sorna: error: {kernel_id}: {e}", file=sys.stderr)
            failed = True
        else:
            print(f"terminated {kernel_id}")
    return EXIT_ERROR if failed else EXIT_OK


async def info_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """Print a kernel's language, age and usage."""
    info = await AsyncKernel(session, args.kernel_id).get_info()
    units = {
        "age": "ms",
        "memory_limit": "KiB",
        "idle": "ms",
        "memory_used": "KiB",
        "cpu_credit_used": "ms",
        "exec_timeout": "ms",
        "idle_timeout": "s",
    }
    for f in fields(KernelInfo):
        if f.name == "raw":
            continue
        unit = units.get(f.name)
        value = getattr(info, f.name)
        print(f"{f.name.replace('_', ' ')}: {value}{' ' + unit if unit else ''}")
    return EXIT_OK


async def upload_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """Upload files into a kernel's /home/work."""
    await AsyncKernel(session, args.kernel_id).upload(args.files)
    status(f"uploaded {len(args.files)} file(s)")
    return EXIT_OK


async def download_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """Download files from a kernel's /home/work."""
    kernel = AsyncKernel(session, args.kernel_id)
    args.output.mkdir(parents=True, exist_ok=True)
    for path in args.paths:
        saved = await kernel.download(path, args.output / Path(path).name)
        print(saved)
    return EXIT_OK


async def ls_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """List files under a kernel's /home/work."""
    entries = await AsyncKernel(session, args.kernel_id).list_files(args.path)
    rows = [{"name": e.name, "type": e.type, "size": e.size, "mode": e.mode} for e in entries]
    print_table(rows, ("name", "type", "size", "mode"))
    return EXIT_OK


ADMIN_LISTINGS: Final[Mapping[str, tuple[Callable[[AsyncAdmin], Awaitable[Rows]], Columns]]] = (
    MappingProxyType(
        {
            "keypairs": (AsyncAdmin.keypairs, KEYPAIR_COLUMNS),
            "agents": (AsyncAdmin.agents, AGENT_COLUMNS),
            "kernels": (AsyncAdmin.kernels, KERNEL_COLUMNS),
        }
    )
)


async def admin_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """List keypairs, agents or kernels of the whole service."""
    fetch, columns = ADMIN_LISTINGS[args.what]
    print_table(await fetch(AsyncAdmin(session)), columns)
    return EXIT_OK
