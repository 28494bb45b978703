"""How a kernel container is started: the one definition the agent and the test launcher share.

:func:`container_config` turns a :class:`ContainerSpec` into the body of Docker's
``POST /containers/create``. Everything that makes a kernel container a sandbox is decided
here and nowhere else: no network, a read-only root, every capability dropped,
``no-new-privileges``, the unprivileged ``work`` user, a pids limit, memory without swap, a
size-capped ``/tmp`` tmpfs, and only two host folders bind-mounted (the kernel's
``/home/work`` and its ipc folder, where the REPL daemon binds its sockets). The agent's
docker backend and :func:`sorna.repl.dockerkernel.docker_kernel` (tests and bench) both start
containers from it, so a kernel under test runs exactly as one in production.

Host side only (it is not copied into kernel images).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sorna.common.constants import (
    KERNEL_IPC_DIR,
    KERNEL_WORK_DIR,
    KERNEL_WORK_UID,
    REPL_INPUT_IPC_NAME,
    REPL_OUTPUT_IPC_NAME,
)

from .protocol import ENV_INPUT_ADDR, ENV_OUTPUT_ADDR

#: Processes and threads one kernel may run, unless the agent's settings say otherwise.
DEFAULT_PIDS_LIMIT: Final = 256
#: Size of a kernel's ``/tmp`` tmpfs (MiB), unless the agent's settings say otherwise.
DEFAULT_TMP_SIZE_MIB: Final = 64
#: Capabilities a kernel container keeps: none. The jail's tracer reads its tracees' memory
#: through /proc/<pid>/mem or PTRACE_PEEKDATA when process_vm_readv is denied without
#: CAP_SYS_PTRACE, so it needs none either.
CAP_DROP: Final = ("ALL",)
#: No process in a kernel container gains privileges through exec (setuid files, file caps).
SECURITY_OPT: Final = ("no-new-privileges",)


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What varies between kernel containers; everything else is fixed by the profile."""

    #: Image reference, e.g. ``sorna/kernel-python3:latest``.
    image: str
    #: Host folder mounted as the kernel's ``/home/work``.
    workdir: Path
    #: Host folder mounted at :data:`~sorna.common.constants.KERNEL_IPC_DIR`.
    ipc_dir: Path
    #: Memory limit in bytes (swap included: none is given).
    mem_bytes: int
    pids_limit: int = DEFAULT_PIDS_LIMIT
    tmp_size_mib: int = DEFAULT_TMP_SIZE_MIB
    #: Cores the kernel may run on, in Docker's cpuset syntax (``""``: any).
    cpuset: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Extra ``NAME=value`` environment entries (e.g. the image's core-count variables).
    env: tuple[str, ...] = ()


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """The ``POST /containers/create`` body that starts a kernel of ``spec``."""
    host_config: dict[str, Any] = {
        "NetworkMode": "none",
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={spec.tmp_size_mib}m,mode=1777"},
        "Memory": spec.mem_bytes,
        "MemorySwap": spec.mem_bytes,
        "PidsLimit": spec.pids_limit,
        "CapDrop": list(CAP_DROP),
        "SecurityOpt": list(SECURITY_OPT),
        "Binds": [
            f"{spec.workdir.resolve()}:{KERNEL_WORK_DIR}:rw",
            f"{spec.ipc_dir.resolve()}:{KERNEL_IPC_DIR}:rw",
        ],
    }
    if spec.cpuset:
        host_config["CpusetCpus"] = spec.cpuset
    return {
        "Image": spec.image,
        # The images say the same (USER work, WORKDIR /home/work); set here too, so that an
        # image that forgot its USER line never runs a kernel as root.
        "User": f"{KERNEL_WORK_UID}:{KERNEL_WORK_UID}",
        "WorkingDir": KERNEL_WORK_DIR,
        "Labels": dict(spec.labels),
        "Env": [
            f"{ENV_INPUT_ADDR}=ipc://{KERNEL_IPC_DIR}/{REPL_INPUT_IPC_NAME}",
            f"{ENV_OUTPUT_ADDR}=ipc://{KERNEL_IPC_DIR}/{REPL_OUTPUT_IPC_NAME}",
            *spec.env,
        ],
        "NetworkDisabled": True,
        "HostConfig": host_config,
    }


def host_socket_paths(ipc_dir: Path) -> tuple[Path, Path]:
    """The REPL daemon's input and output sockets as the host sees them in ``ipc_dir``."""
    return ipc_dir / REPL_INPUT_IPC_NAME, ipc_dir / REPL_OUTPUT_IPC_NAME


__all__ = [
    "CAP_DROP",
    "DEFAULT_PIDS_LIMIT",
    "DEFAULT_TMP_SIZE_MIB",
    "SECURITY_OPT",
    "ContainerSpec",
    "container_config",
    "host_socket_paths",
]
