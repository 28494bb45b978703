"""The manager's exception tree. Each error names its API problem type; the gateway maps it.

::

    SornaError
    └── ManagerError                 (problem name on ``problem``)
        ├── InvalidAPIParams         malformed body, missing or invalid field
        ├── InvalidAuthParams        malformed auth/date/version headers, clock skew
        ├── AuthFailed               unknown or inactive key, wrong signature
        ├── Forbidden                admin API without an admin keypair
        ├── NotFound                 unknown route or object
        │   ├── KernelNotFound       unknown kernel, or another keypair's
        │   └── UnsupportedLang      no agent offers the language
        ├── QuotaExceeded            concurrency limit reached
        ├── PayloadTooLarge          body, code or upload over its limit
        ├── RateLimitExceeded        rate window exhausted
        ├── AgentFailure             an agent-side failure (``agent_details``)
        │   ├── KernelCreationFailed
        │   └── KernelExecutionFailed
        └── ServiceUnavailable       grace period, PostgreSQL or Redis unreachable
            └── InstanceNotAvailable no agent with room, or the kernel's agent is lost
                └── AgentRestarted   the kernel's agent restarted while the call was pending

``sorna.manager`` knows nothing of HTTP; ``sorna.gateway.problems`` holds the status table.
:data:`AGENT_ERRORS` says what each error an agent answers with is to the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final

from sorna.common.errors import ErrorType, SornaError


class ManagerError(SornaError):
    """An error a caller of the API sees as a problem document."""

    problem: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error."

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra


class InvalidAPIParams(ManagerError):
    problem = "invalid-api-params"
    title = "Missing or invalid API parameters."


class InvalidAuthParams(ManagerError):
    problem = "invalid-auth-params"
    title = "Missing or invalid authorization parameters."


class AuthFailed(ManagerError):
    problem = "auth-failed"
    title = "Credential/signature mismatch."


class Forbidden(ManagerError):
    problem = "forbidden"
    title = "This operation needs an admin keypair."


class NotFound(ManagerError):
    problem = "not-found"
    title = "No such resource."


class KernelNotFound(NotFound):
    problem = "kernel-not-found"
    title = "No such kernel."


class UnsupportedLang(NotFound):
    problem = "unsupported-lang"
    title = "No agent offers this language."


class QuotaExceeded(ManagerError):
    problem = "quota-exceeded"
    title = "The keypair's concurrency limit is reached."


class PayloadTooLarge(ManagerError):
    problem = "payload-too-large"
    title = "The request is larger than allowed."


class RateLimitExceeded(ManagerError):
    problem = "rate-limit-exceeded"
    title = "Rate limit exceeded."


class AgentFailure(ManagerError):
    problem = "agent-failure"
    title = "The agent failed."


class KernelCreationFailed(AgentFailure):
    problem = "kernel-creation-failed"
    title = "Kernel creation failed."


class KernelExecutionFailed(AgentFailure):
    problem = "kernel-execution-failed"
    title = "The kernel failed to run the request."


class ServiceUnavailable(ManagerError):
    problem = "service-unavailable"
    title = "The service is temporarily unavailable."


class InstanceNotAvailable(ServiceUnavailable):
    problem = "instance-not-available"
    title = "No agent instance is available."


class AgentRestarted(InstanceNotAvailable):
    problem = "agent-restarted"
    title = "The kernel's agent restarted; the request in flight was lost."


AGENT_ERRORS: Final[Mapping[ErrorType, type[ManagerError] | None]] = MappingProxyType(
    {
        ErrorType.KERNEL_NOT_FOUND: KernelNotFound,  # and the kernel is settled: it is gone
        ErrorType.INVALID_API_PARAMS: InvalidAPIParams,
        ErrorType.BAD_REQUEST: InvalidAPIParams,
        ErrorType.PAYLOAD_TOO_LARGE: PayloadTooLarge,  # e.g. an upload onto a full kernel disk
        # None: the call's own failure (kernel-creation-failed or kernel-execution-failed),
        # with the agent's error in ``agent_details``.
        ErrorType.UNSUPPORTED_LANG: None,
        ErrorType.KERNEL_CREATION_FAILED: None,
        ErrorType.KERNEL_EXECUTION_FAILED: None,
        ErrorType.INSTANCE_FULL: None,
        ErrorType.LOCAL_SANDBOX_UNAVAILABLE: None,
        ErrorType.METHOD_NOT_FOUND: None,
        ErrorType.BAD_REPLY: None,
        ErrorType.CODEC_ERROR: None,
        ErrorType.CONFIG_ERROR: None,
        ErrorType.RPC_TIMEOUT: None,
        ErrorType.RPC_CLOSED: None,
        ErrorType.INTERNAL_ERROR: None,
    }
)
"""What each error type an agent answers with is to the API: the problem raised, or None for
the failure of the call. Every :class:`ErrorType` has its entry."""
