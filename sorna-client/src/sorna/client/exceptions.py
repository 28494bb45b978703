"""The errors of ``sorna.client``, and decoding of the server's problem+json answers.

::

    SornaError
     +-- SornaClientError            the client could not do its part
     |    +-- ConfigError            missing or malformed configuration (credentials, endpoint)
     |    +-- ConnectionFailed       the endpoint did not answer (refused, DNS, TLS, timeout)
     |    +-- ProtocolError          the server's answer did not have the documented shape
     +-- SornaAPIError               the server answered with an error (status, type, title)
          +-- InvalidRequest         400 invalid-api-params
          +-- AuthenticationError    400 invalid-auth-params, 401 auth-failed
          +-- Forbidden              403 forbidden
          +-- NotFound               404 not-found, unsupported-lang
          |    +-- KernelNotFound    404 kernel-not-found
          +-- QuotaExceeded          412 quota-exceeded
          +-- PayloadTooLarge        413 payload-too-large
          +-- RateLimitExceeded      429 rate-limit-exceeded
          +-- ServerError            500 kernel-creation-failed, kernel-execution-failed, ...
          +-- ServiceUnavailable     503 service-unavailable, instance-not-available,
                                     agent-restarted

A user program that raises or times out is not an error here: its result says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

PROBLEM_TYPE_PREFIX: Final = "https://api.sorna.io/probs/"


class SornaError(Exception):
    """Base of every error raised by ``sorna.client``."""


class SornaClientError(SornaError):
    """The client could not complete a call on its side."""


class ConfigError(SornaClientError):
    """The configuration is missing something or holds a malformed value."""


class ConnectionFailed(SornaClientError):
    """The endpoint could not be reached."""


class ProtocolError(SornaClientError):
    """The server answered, but not in the shape API.md documents."""


class SornaAPIError(SornaError):
    """The server answered with an error status; ``type``/``title`` come from problem+json."""

    def __init__(
        self,
        status: int,
        type_name: str,
        title: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.data: Mapping[str, Any] = MappingProxyType(dict(data or {}))
        detail = self.data.get("detail")
        #: The problem's ``detail`` member, when the server gave one.
        self.detail = detail if isinstance(detail, str) else None
        prefix = f"{status} " if status else ""
        suffix = f" ({self.detail})" if self.detail and self.detail != title else ""
        super().__init__(f"{prefix}{type_name}: {title}{suffix}")
        #: The HTTP status (0 for a problem that arrived on a WebSocket without one).
        self.status = status
        #: The short problem name, e.g. ``kernel-not-found`` (the URL prefix removed).
        self.type = type_name
        self.title = title


class InvalidRequest(SornaAPIError):
    """The request's parameters were refused (400 ``invalid-api-params``)."""


class AuthenticationError(SornaAPIError):
    """The credentials or the signature were refused (400 ``invalid-auth-params``, 401)."""


class Forbidden(SornaAPIError):
    """The keypair may not use this API (403)."""


class NotFound(SornaAPIError):
    """No such route, language or resource (404)."""


class KernelNotFound(NotFound):
    """No such kernel for this keypair (404 ``kernel-not-found``)."""


class QuotaExceeded(SornaAPIError):
    """The keypair's concurrent kernel limit is reached (412)."""


class PayloadTooLarge(SornaAPIError):
    """The code, upload or request body is over the server's limit (413)."""


class RateLimitExceeded(SornaAPIError):
    """The keypair's request window is exhausted (429)."""


class ServerError(SornaAPIError):
    """The server or an agent failed (5xx other than 503)."""


class ServiceUnavailable(SornaAPIError):
    """The service cannot take the call now (503); retrying later may work."""


_BY_TYPE: Final[Mapping[str, type[SornaAPIError]]] = MappingProxyType(
    {
        "invalid-api-params": InvalidRequest,
        "invalid-auth-params": AuthenticationError,
        "auth-failed": AuthenticationError,
        "forbidden": Forbidden,
        "kernel-not-found": KernelNotFound,
        "not-found": NotFound,
        "unsupported-lang": NotFound,
        "quota-exceeded": QuotaExceeded,
        "payload-too-large": PayloadTooLarge,
        "rate-limit-exceeded": RateLimitExceeded,
        "service-unavailable": ServiceUnavailable,
        "instance-not-available": ServiceUnavailable,
        "agent-restarted": ServiceUnavailable,
    }
)

_BY_STATUS: Final[Mapping[int, type[SornaAPIError]]] = MappingProxyType(
    {
        400: InvalidRequest,
        401: AuthenticationError,
        403: Forbidden,
        404: NotFound,
        412: QuotaExceeded,
        413: PayloadTooLarge,
        429: RateLimitExceeded,
        503: ServiceUnavailable,
    }
)


def error_class(status: int, type_name: str) -> type[SornaAPIError]:
    """Return the exception class for a problem type, falling back on the status code."""
    if type_name in _BY_TYPE:
        return _BY_TYPE[type_name]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else SornaAPIError


def decode_problem(status: int, reason: str, body: bytes) -> SornaAPIError:
    """Build the exception for an error answer, from its problem+json body when it has one.

    Bodies that are not a problem document (a proxy's HTML page, say) still give an exception
    of the right class, titled with the HTTP reason phrase.
    """
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    problem = decoded if isinstance(decoded, dict) else {}
    return problem_error(problem, status=status, reason=reason)


def problem_error(
    problem: Mapping[str, Any], *, status: int = 0, reason: str = ""
) -> SornaAPIError:
    """Build the exception for a decoded problem document (its ``status`` member if any)."""
    if not status and isinstance(problem.get("status"), int):
        status = problem["status"]
    raw_type = problem.get("type")
    type_name = ""
    if isinstance(raw_type, str):
        type_name = raw_type.removeprefix(PROBLEM_TYPE_PREFIX).rstrip("/")
    title = problem.get("title")
    if not isinstance(title, str) or not title:
        title = reason or (f"HTTP {status}" if status else "unknown error")
    if not type_name:
        type_name = f"http-{status}" if status else "unknown"
    return error_class(status, type_name)(status, type_name, title, problem)
