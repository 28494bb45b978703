"""Errors the agent answers RPC calls with (each names its wire ``ErrorType``).

::

    SornaError
    └── AgentError
        ├── KernelNotFound          no such kernel on this agent
        ├── UnsupportedLang         no image offers the language
        ├── KernelCreationFailed    the backend could not start the kernel
        ├── KernelExecutionFailed   the kernel's daemon misbehaved
        ├── InstanceFull            max_kernels or free cores exhausted
        ├── InvalidApiParams        malformed params, a path outside /home/work
        ├── PayloadTooLarge         an upload onto a full kernel disk
        ├── AgentIdInUse            another live agent process has this agent id (start-up)
        └── LocalSandboxUnavailable the local backend cannot sandbox kernels on this host
"""

from __future__ import annotations

from sorna.common.errors import ErrorType, SornaError


class AgentError(SornaError):
    """Root of the agent's errors."""


class KernelNotFound(AgentError):
    """No such kernel on this agent."""

    error_type = ErrorType.KERNEL_NOT_FOUND


class UnsupportedLang(AgentError):
    """No kernel image offers the language."""

    error_type = ErrorType.UNSUPPORTED_LANG


class KernelCreationFailed(AgentError):
    """The backend could not start the kernel."""

    error_type = ErrorType.KERNEL_CREATION_FAILED


class KernelExecutionFailed(AgentError):
    """The kernel's daemon misbehaved."""

    error_type = ErrorType.KERNEL_EXECUTION_FAILED


class InstanceFull(AgentError):
    """This agent has no room for another kernel."""

    error_type = ErrorType.INSTANCE_FULL


class InvalidApiParams(AgentError):
    """The call's params are malformed (or name a path outside /home/work)."""

    error_type = ErrorType.INVALID_API_PARAMS


class PayloadTooLarge(AgentError):
    """An upload does not fit on the kernel's disk."""

    error_type = ErrorType.PAYLOAD_TOO_LARGE


class AgentIdInUse(AgentError):
    """Another live agent process heartbeats under this agent id: refuse to start."""


class LocalSandboxUnavailable(AgentError):
    """The host cannot sandbox local kernels, and running them unsafe was not allowed."""

    error_type = ErrorType.LOCAL_SANDBOX_UNAVAILABLE
