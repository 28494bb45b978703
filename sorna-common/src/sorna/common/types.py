"""Status enums shared by the gateway, the agent and the REPL protocol."""

from __future__ import annotations

from enum import StrEnum


class AgentStatus(StrEnum):
    """Life of an agent in the registry."""

    ALIVE = "alive"
    LOST = "lost"
    TERMINATED = "terminated"


class KernelStatus(StrEnum):
    """Life of a kernel, in the registry and the books."""

    PREPARING = "preparing"
    RUNNING = "running"
    RESTARTING = "restarting"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    ERROR = "error"


class TerminationReason(StrEnum):
    """Why a kernel ended."""

    DESTROYED = "destroyed"
    EXITED = "exited"
    OOM_KILLED = "oom-killed"
    KILLED = "killed"
    IDLE_TIMEOUT = "idle-timeout"
    AGENT_LOST = "agent-lost"
    AGENT_RESET = "agent-reset"
    AGENT_TERMINATED = "agent-terminated"
    AGENT_RESTARTED = "agent-restarted"
    CREATION_FAILED = "creation-failed"


class RunStatus(StrEnum):
    """The ``status`` of an API result object."""

    FINISHED = "finished"
    CONTINUED = "continued"
    WAITING_INPUT = "waiting-input"
    BUILD_FINISHED = "build-finished"
    EXEC_TIMEOUT = "exec-timeout"


class ExecMode(StrEnum):
    """The ``mode`` of an execute request."""

    QUERY = "query"
    BATCH = "batch"
    COMPLETE = "complete"
    CONTINUE = "continue"
    INPUT = "input"


class EventName(StrEnum):
    """Events agents publish on the Redis stream."""

    INSTANCE_STARTED = "instance_started"
    INSTANCE_HEARTBEAT = "instance_heartbeat"
    INSTANCE_TERMINATED = "instance_terminated"
    KERNEL_STARTED = "kernel_started"
    KERNEL_TERMINATED = "kernel_terminated"
    KERNEL_STATS = "kernel_stats"
