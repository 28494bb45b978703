"""One dataclass per RPC message (PROTOCOLS.md section 1) and per event (section 2).

Each is a frozen dataclass with ``to_wire()`` / ``from_wire()``; ``RPC_METHODS`` maps a method
name to its params and result types, ``EVENT_TYPES`` an event name to its body type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from sorna.common.ids import AgentId, KernelId, RunId
from sorna.common.types import EventName
from sorna.common.wire import WireMessage

# ---------------------------------------------------------------- RPC: gateway -> agent


@dataclass(frozen=True, slots=True)
class PingParams(WireMessage):
    echo: Any = None


@dataclass(frozen=True, slots=True)
class PingResult(WireMessage):
    echo: Any = None


@dataclass(frozen=True, slots=True)
class KernelLimits(WireMessage):
    """Resource limits asked for a kernel; None means the image's default.

    ``disk_kib`` caps the kernel's /home/work (0 or None: the image's default; in a result,
    0 means the agent caps no disks).
    """

    mem_kib: int | None = None
    cpus: float | None = None
    exec_timeout_ms: int | None = None
    disk_kib: int | None = None


@dataclass(frozen=True, slots=True)
class CreateKernelParams(WireMessage):
    kernel_id: KernelId
    lang: str
    owner: str
    limits: KernelLimits = field(default_factory=KernelLimits)


@dataclass(frozen=True, slots=True)
class CreateKernelResult(WireMessage):
    kernel_id: KernelId
    lang: str
    image: str
    limits: KernelLimits
    features: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class KernelRef(WireMessage):
    """Params of the calls that name only a kernel (destroy, restart, interrupt)."""

    kernel_id: KernelId


@dataclass(frozen=True, slots=True)
class DestroyKernelResult(WireMessage):
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Empty(WireMessage):
    """The empty result ``{}``."""


@dataclass(frozen=True, slots=True)
class ExecuteParams(WireMessage):
    kernel_id: KernelId
    run_id: RunId
    mode: str
    code: str = ""
    options: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ExecuteResult(WireMessage):
    """The API result object of API.md, with wire names as the API spells them."""

    runId: RunId  # the API's own spelling
    status: str
    console: list[list[Any]] = field(default_factory=list)
    options: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompletionParams(WireMessage):
    kernel_id: KernelId
    code: str
    options: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CompletionResult(WireMessage):
    completions: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UploadFileParams(WireMessage):
    kernel_id: KernelId
    path: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ListFilesParams(WireMessage):
    kernel_id: KernelId
    path: str = ""


@dataclass(frozen=True, slots=True)
class ListFilesResult(WireMessage):
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DownloadFileParams(WireMessage):
    kernel_id: KernelId
    path: str
    offset: int = 0
    length: int = 1 << 20


@dataclass(frozen=True, slots=True)
class DownloadFileResult(WireMessage):
    data: bytes
    eof: bool


@dataclass(frozen=True, slots=True)
class ResetResult(WireMessage):
    destroyed: list[KernelId] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RPCMethod:
    """A method's name with the types of its params and result."""

    name: str
    params: type[WireMessage]
    result: type[WireMessage]


RPC_METHODS: Final = MappingProxyType(
    {
        m.name: m
        for m in (
            RPCMethod("ping", PingParams, PingResult),
            RPCMethod("create_kernel", CreateKernelParams, CreateKernelResult),
            RPCMethod("destroy_kernel", KernelRef, DestroyKernelResult),
            RPCMethod("restart_kernel", KernelRef, Empty),
            RPCMethod("execute", ExecuteParams, ExecuteResult),
            RPCMethod("interrupt_kernel", KernelRef, Empty),
            RPCMethod("get_completions", CompletionParams, CompletionResult),
            RPCMethod("upload_file", UploadFileParams, Empty),
            RPCMethod("list_files", ListFilesParams, ListFilesResult),
            RPCMethod("download_file", DownloadFileParams, DownloadFileResult),
            RPCMethod("reset", Empty, ResetResult),
        )
    }
)

# ---------------------------------------------------------------- events: agent -> stream


@dataclass(frozen=True, slots=True)
class InstanceStarted(WireMessage):
    agent_id: AgentId
    addr: str
    langs: list[str] = field(default_factory=list)
    boot_id: str = ""  # new on every start of the agent process (empty from an old agent)


@dataclass(frozen=True, slots=True)
class InstanceHeartbeat(WireMessage):
    agent_id: AgentId
    num_kernels: int = 0
    kernels: list[KernelId] = field(default_factory=list)
    boot_id: str = ""


@dataclass(frozen=True, slots=True)
class InstanceTerminated(WireMessage):
    agent_id: AgentId
    reason: str = "shutdown"
    kept: list[KernelId] = field(default_factory=list)  # left running for the next start


@dataclass(frozen=True, slots=True)
class KernelStarted(WireMessage):
    kernel_id: KernelId
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class KernelTerminated(WireMessage):
    kernel_id: KernelId
    reason: str
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KernelStats(WireMessage):
    """Usage of each live kernel of one agent: kernel id -> stats map."""

    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


EVENT_TYPES: Final = MappingProxyType(
    {
        EventName.INSTANCE_STARTED: InstanceStarted,
        EventName.INSTANCE_HEARTBEAT: InstanceHeartbeat,
        EventName.INSTANCE_TERMINATED: InstanceTerminated,
        EventName.KERNEL_STARTED: KernelStarted,
        EventName.KERNEL_TERMINATED: KernelTerminated,
        EventName.KERNEL_STATS: KernelStats,
    }
)

EVENT_NAMES: Final = MappingProxyType({cls: name for name, cls in EVENT_TYPES.items()})
