"""One dataclass per RPC message (PROTOCOLS.md section 1) and per event (section 2).

Each is a frozen dataclass with ``to_wire()`` / ``from_wire()``. Each RPC method is one
:class:`RPCMethod` constant (``CREATE_KERNEL``, ``EXECUTE``, ...) naming its params and result
types: the caller's ``sorna.common.agentclient.AgentClient`` and the agent's handler table are
both built from them, and ``RPC_METHODS`` maps each wire name to its constant. ``EVENT_TYPES``
maps an event name to its body type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Generic, TypeVar

from sorna.common.ids import AgentId, KernelId, RunId
from sorna.common.types import EventName
from sorna.common.wire import WireMessage

P = TypeVar("P", bound=WireMessage)
R = TypeVar("R", bound=WireMessage)

# ---------------------------------------------------------------- usage statistics


@dataclass(frozen=True, slots=True)
class KernelUsage(WireMessage):
    """A kernel's usage: what the agent reads, the events and destroy_kernel carry, and what
    the books keep (the ``kernels`` columns are :meth:`columns`)."""

    cpu_ms: int = 0
    mem_cur_bytes: int = 0
    mem_max_bytes: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0

    def merged(self, later: KernelUsage) -> KernelUsage:
        """``later``, keeping the highest peak and counters seen (a counter never goes back)."""
        return KernelUsage(
            cpu_ms=max(self.cpu_ms, later.cpu_ms),
            mem_cur_bytes=later.mem_cur_bytes,
            mem_max_bytes=max(self.mem_max_bytes, later.mem_max_bytes, later.mem_cur_bytes),
            io_read_bytes=max(self.io_read_bytes, later.io_read_bytes),
            io_write_bytes=max(self.io_write_bytes, later.io_write_bytes),
            net_rx_bytes=max(self.net_rx_bytes, later.net_rx_bytes),
            net_tx_bytes=max(self.net_tx_bytes, later.net_tx_bytes),
        )

    @property
    def mem_cur_kib(self) -> int:
        return self.mem_cur_bytes // 1024

    def columns(self) -> dict[str, int]:
        """The usage columns of the ``kernels`` table, by column name."""
        return {
            "cpu_used_ms": self.cpu_ms,
            "max_mem_kib": self.mem_max_bytes // 1024,
            "io_read_bytes": self.io_read_bytes,
            "io_write_bytes": self.io_write_bytes,
            "net_rx_bytes": self.net_rx_bytes,
            "net_tx_bytes": self.net_tx_bytes,
        }


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
    stats: KernelUsage = field(default_factory=KernelUsage)


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
class RPCMethod(Generic[P, R]):
    """An RPC method: its wire name and the types of its params and result."""

    name: str
    params: type[P]
    result: type[R]


PING: Final = RPCMethod("ping", PingParams, PingResult)
CREATE_KERNEL: Final = RPCMethod("create_kernel", CreateKernelParams, CreateKernelResult)
DESTROY_KERNEL: Final = RPCMethod("destroy_kernel", KernelRef, DestroyKernelResult)
RESTART_KERNEL: Final = RPCMethod("restart_kernel", KernelRef, Empty)
EXECUTE: Final = RPCMethod("execute", ExecuteParams, ExecuteResult)
INTERRUPT_KERNEL: Final = RPCMethod("interrupt_kernel", KernelRef, Empty)
GET_COMPLETIONS: Final = RPCMethod("get_completions", CompletionParams, CompletionResult)
UPLOAD_FILE: Final = RPCMethod("upload_file", UploadFileParams, Empty)
LIST_FILES: Final = RPCMethod("list_files", ListFilesParams, ListFilesResult)
DOWNLOAD_FILE: Final = RPCMethod("download_file", DownloadFileParams, DownloadFileResult)
RESET: Final = RPCMethod("reset", Empty, ResetResult)

RPC_METHODS: Final[MappingProxyType[str, RPCMethod[Any, Any]]] = MappingProxyType(
    {
        m.name: m
        for m in (
            PING,
            CREATE_KERNEL,
            DESTROY_KERNEL,
            RESTART_KERNEL,
            EXECUTE,
            INTERRUPT_KERNEL,
            GET_COMPLETIONS,
            UPLOAD_FILE,
            LIST_FILES,
            DOWNLOAD_FILE,
            RESET,
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
    stats: KernelUsage = field(default_factory=KernelUsage)


@dataclass(frozen=True, slots=True)
class KernelStats(WireMessage):
    """Usage of each live kernel of one agent: kernel id -> usage."""

    stats: dict[KernelId, KernelUsage] = field(default_factory=dict)


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
