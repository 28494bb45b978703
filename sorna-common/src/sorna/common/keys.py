"""The Redis key layout (PROTOCOLS.md section 2). Nothing else in Sorna spells a key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from sorna.common.constants import REDIS_NAMESPACE
from sorna.common.ids import AccessKey, AgentId, KernelId


class AgentField(StrEnum):
    """The fields of the ``agent`` hash: the agent writes them, gateways read them."""

    ID = "id"
    ADDR = "addr"
    REGION = "region"
    BACKEND = "backend"
    MAX_KERNELS = "max_kernels"
    NUM_KERNELS = "num_kernels"
    MEM_SLOTS = "mem_slots"
    CPU_SLOTS = "cpu_slots"
    USED_MEM_SLOTS = "used_mem_slots"
    USED_CPU_SLOTS = "used_cpu_slots"
    LANGS = "langs"
    #: Known languages (kernel folders of the agent's sorna-repl) it has no image of.
    UNBUILT_LANGS = "unbuilt_langs"
    #: ``alias=lang`` pairs of the languages above (sorna.common.langs.encode_aliases).
    ALIASES = "aliases"
    KERNELS = "kernels"
    BOOT_ID = "boot_id"
    HEARTBEAT_INTERVAL = "heartbeat_interval"
    STARTED_AT = "started_at"
    LAST_HEARTBEAT = "last_heartbeat"
    STATUS = "status"


#: The separator of the list-valued agent fields (``langs``, ``kernels``).
FIELD_LIST_SEP: Final = ","


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names under one namespace (default ``sorna``)."""

    namespace: str = REDIS_NAMESPACE

    def __post_init__(self) -> None:
        if not self.namespace or ":" in self.namespace or any(c.isspace() for c in self.namespace):
            raise ValueError(f"invalid Redis namespace {self.namespace!r}")

    def agent(self, agent_id: AgentId) -> str:
        """Hash with an agent's address, capacity, load and languages."""
        return f"{self.namespace}:agent:{agent_id}"

    def agent_alive(self, agent_id: AgentId) -> str:
        """String with a TTL, renewed by each heartbeat."""
        return f"{self.namespace}:agent:{agent_id}:alive"

    def agent_lost(self, agent_id: AgentId) -> str:
        """String set by a gateway when the agent's alive key expired, until it is taken back."""
        return f"{self.namespace}:agent:{agent_id}:lost"

    def agent_settled_boot(self, agent_id: AgentId) -> str:
        """String: the agent boot id whose predecessors' kernels a gateway has settled."""
        return f"{self.namespace}:agent:{agent_id}:settled-boot"

    def agent_reserved(self, agent_id: AgentId) -> str:
        """Counter of kernel slots gateways have reserved on the agent (scheduling)."""
        return f"{self.namespace}:agent:{agent_id}:reserved"

    def schedule_index(self, lang: str) -> str:
        """Sorted set of the agents offering ``lang``, scored by free slots (a scheduling hint)."""
        return f"{self.namespace}:sched:{lang}"

    def agents(self) -> str:
        """Set of known agent ids."""
        return f"{self.namespace}:agents"

    def kernel(self, kernel_id: KernelId) -> str:
        """Hash routing a kernel to its agent."""
        return f"{self.namespace}:kernel:{kernel_id}"

    def session(self, access_key: AccessKey, lang: str, token: str) -> str:
        """String mapping an owner's session token to a kernel id."""
        return f"{self.namespace}:session:{access_key}:{lang}:{token}"

    def rate_limit(self, access_key: AccessKey) -> str:
        """Sorted set holding one keypair's sliding rate window."""
        return f"{self.namespace}:rlim:{access_key}"

    def events(self) -> str:
        """The event stream."""
        return f"{self.namespace}:events"

    def event_handled(self, group: str, entry_id: str) -> str:
        """Marker set once a consumer group has handled a stream entry (idempotency)."""
        return f"{self.namespace}:events:handled:{group}:{entry_id}"
