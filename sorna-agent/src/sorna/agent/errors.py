"""Errors the agent answers RPC calls with (the wire type is the class name, dashed).

::

    SornaError
    └── AgentError
        ├── KernelNotFound          no such kernel on this agent
        ├── UnsupportedLang         no image offers the language
        ├── KernelCreationFailed    the backend could not start the kernel
        ├── KernelExecutionFailed   the kernel's daemon misbehaved
        ├── InstanceFull            max_kernels or free cores exhausted
        ├── InvalidApiParams        malformed params, a path outside /home/work
        ├── PayloadTooLarge         an upload over the size cap
        ├── AgentIdInUse            another live agent process has this agent id (start-up)
        └── LocalSandboxUnavailable the local backend cannot sandbox kernels on this host
"""

from __future__ import annotations

from sorna.common.errors import SornaError


class AgentError(SornaError):
    """Root of the agent's errors."""


class KernelNotFound(AgentError):
    """No such kernel on this agent."""


class UnsupportedLang(AgentError):
    """No kernel image offers the language."""


class KernelCreationFailed(AgentError):
    """The backend could not start the kernel."""


class KernelExecutionFailed(AgentError):
    """The kernel's daemon misbehaved."""


class InstanceFull(AgentError):
    """This agent has no room for another kernel."""


class InvalidApiParams(AgentError):
    """The call's params are malformed (or name a path outside /home/work)."""


class PayloadTooLarge(AgentError):
    """An upload is over the size cap."""


class AgentIdInUse(AgentError):
    """Another live agent process heartbeats under this agent id: refuse to start."""


class LocalSandboxUnavailable(AgentError):
    """The host cannot sandbox local kernels, and running them unsafe was not allowed."""
