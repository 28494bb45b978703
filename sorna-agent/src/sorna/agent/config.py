"""The agent's settings: one frozen object, loaded once (TOML file + ``SORNA_*`` variables)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import socket
import tempfile
from pathlib import Path
from typing import Literal

from sorna.common.config import (
    LoggingSettings,
    RedisSettings,
    S3Settings,
    section,
    setting,
)
from sorna.common.constants import (
    AGENT_ID_FILE,
    AGENT_RPC_PORT,
    HEARTBEAT_INTERVAL,
    KERNEL_STATS_INTERVAL,
)
from sorna.common.errors import ConfigError
from sorna.repl.container import DEFAULT_PIDS_LIMIT, DEFAULT_TMP_SIZE_MIB

Backend = Literal["docker", "local", "auto"]

#: What an agent id may be made of: it names Redis keys and container labels.
AGENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclasses.dataclass(frozen=True, slots=True)
class CapsSettings:
    """Upper bounds a kernel's request cannot pass."""

    max_mem_kib: int = setting(1024 * 1024, "largest memory limit of one kernel (KiB)")
    max_cpus: int = setting(4, "most CPU cores one kernel may get")
    max_exec_timeout_ms: int = setting(600_000, "longest execution timeout (ms; 0 = no cap)")
    pids_limit: int = setting(DEFAULT_PIDS_LIMIT, "processes and threads per kernel")
    tmp_size_mib: int = setting(DEFAULT_TMP_SIZE_MIB, "size of each kernel's /tmp tmpfs (MiB)")
    max_disk_mib: int = setting(
        4096,
        "largest disk cap of one kernel's /home/work (MiB; a loop-mounted ext4, needs root and"
        " loop devices); 0 = no disk caps at all: kernels may fill the host's disk",
    )
    max_output_file_bytes: int = setting(5 << 20, "largest output file listed after a run")
    max_download_chunk: int = setting(1 << 20, "largest chunk download_file returns")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"caps.{f.name}: must not be negative")


@dataclasses.dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything a ``sorna-agent`` process is told."""

    agent_id: str = setting(
        "",
        f"agent id (empty: <hostname>-<8 hex>, made once, kept in scratch_root/{AGENT_ID_FILE})",
    )
    region: str = setting("local", "region reported in the registry")
    rpc_host: str = setting("*", "interface the RPC socket binds")
    rpc_port: int = setting(AGENT_RPC_PORT, "RPC port (0: any free port)")
    advertised_host: str = setting("127.0.0.1", "host gateways use to reach this agent")
    backend: Backend = setting("auto", "kernel backend: docker, local, or auto")
    scratch_root: Path = setting(Path("/var/lib/sorna/scratch"), "per-kernel scratch folders")
    idle_timeout: float = setting(600.0, "idle seconds before a kernel is reaped (0 = never)")
    flush_interval: float = setting(2.0, "seconds output is gathered before `continued`")
    max_kernels: int = setting(32, "kernels this agent runs at most")
    mem_slots_mib: int = setting(0, "memory offered to kernels (MiB; 0 = host memory)")
    cores: list[int] = setting([], "CPU cores offered to kernels (empty: all)")
    heartbeat_interval: float = setting(HEARTBEAT_INTERVAL, "seconds between heartbeats")
    stats_interval: float = setting(KERNEL_STATS_INTERVAL, "seconds between kernel_stats")
    unsafe_local_backend: bool = setting(
        False, "run local kernels without a sandbox (unsafe) where the host cannot give one"
    )
    bwrap_path: Path = setting(Path("/usr/bin/bwrap"), "bubblewrap, the local kernels' sandbox")
    local_uid_base: int = setting(200_000, "first host uid given to local kernels (root agent)")
    local_uid_count: int = setting(1000, "how many host uids local kernels may take")
    keep_kernels_on_shutdown: bool = setting(False, "leave kernels running on shutdown")
    s3_url_expiry: int = setting(86_400, "lifetime of output files' presigned URLs (s)")
    file_workers: int = setting(4, "threads serving kernels' file operations (their own pool)")
    caps: CapsSettings = section(CapsSettings, "limits a kernel request cannot pass")
    redis: RedisSettings = section(RedisSettings, "registry and event stream")
    s3: S3Settings = section(S3Settings, "output file storage")
    logging: LoggingSettings = section(LoggingSettings, "logging")

    def __post_init__(self) -> None:
        if not 0 <= self.rpc_port <= 65535:
            raise ConfigError(f"rpc_port: must be a port number, got {self.rpc_port}")
        for name in ("flush_interval", "heartbeat_interval", "stats_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        if self.idle_timeout < 0:
            raise ConfigError("idle_timeout: must not be negative")
        if self.local_uid_base < 1000 or self.local_uid_count < 1:
            raise ConfigError("local_uid_base: must be at least 1000, local_uid_count positive")
        if self.max_kernels < 1:
            raise ConfigError("max_kernels: must be at least 1")
        if self.agent_id and not AGENT_ID_RE.fullmatch(self.agent_id):
            raise ConfigError(
                f"agent_id: {self.agent_id!r} is not 1-128 characters of [A-Za-z0-9._-]"
            )
        if self.file_workers < 1:
            raise ConfigError("file_workers: must be at least 1")

    @property
    def effective_agent_id(self) -> str:
        """The configured agent id, else the one kept in the scratch root (made on first use).

        Two agents on one host are told apart by their scratch roots; a restarted agent keeps
        its id, so it re-adopts its own kernels and no one else's.
        """
        if self.agent_id:
            return self.agent_id
        try:
            return kept_agent_id(self.scratch_root)
        except OSError as e:
            raise ConfigError(
                f"scratch_root: cannot keep the agent id in {self.scratch_root}: {e.strerror}"
            ) from None


def kept_agent_id(scratch_root: Path) -> str:
    """Read the agent id kept in ``scratch_root``, generating ``<hostname>-<8 hex>`` once.

    The file is written whole under a temporary name and linked into place, so concurrent
    first starts agree on one id and a crash never leaves a half-written file.
    """
    path = scratch_root / AGENT_ID_FILE
    scratch_root.mkdir(parents=True, exist_ok=True)
    try:
        return _read_agent_id(path)
    except FileNotFoundError:
        pass
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname().split(".")[0])[:100] or "agent"
    fresh = f"{host}-{secrets.token_hex(4)}"
    fd, tmp = tempfile.mkstemp(prefix=f".{AGENT_ID_FILE}.", dir=scratch_root)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, f"{fresh}\n".encode())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        with contextlib.suppress(FileExistsError):  # another process won the race: use its id
            os.link(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
    return _read_agent_id(path)


def _read_agent_id(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(4096)
    text = raw.decode("ascii", "replace").strip()
    if not AGENT_ID_RE.fullmatch(text):
        raise ConfigError(f"{path}: does not hold an agent id (remove it to make a new one)")
    return text
