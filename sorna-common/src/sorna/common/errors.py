"""The exception tree shared by every Sorna component.

::

    SornaError
    ├── ConfigError              invalid settings (one line naming the field)
    ├── CodecError               bytes that are not a valid Sorna msgpack message
    ├── RPCError                 anything that went wrong with a remote call
    │   ├── RPCTimeout           no reply before the call's deadline
    │   ├── RPCClosed            the client was closed while the call was pending
    │   │   └── RPCPeerRestarted the peer's process was replaced while the call was pending
    │   └── RemoteError          the peer answered with an error (``type`` preserved)
    │       ├── MethodNotFound   the peer has no such method
    │       └── BadReply         the peer's reply does not fit the method's result type
    ├── InvalidParams            a call's params do not fit the method's params type
    └── EventStreamError         the Redis event stream misbehaved

A failed RPC crosses the wire as one :class:`ErrorType`: every Sorna exception names its own
in ``error_type`` (the server sends it, the caller gets it back on ``RemoteError.type``).
``sorna.common`` knows nothing of HTTP; the gateway maps these to problem+json.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar


class ErrorType(enum.StrEnum):
    """The ``error.type`` of a failed RPC reply (PROTOCOLS.md section 1)."""

    # What the agent refuses or fails at.
    KERNEL_NOT_FOUND = "kernel-not-found"
    UNSUPPORTED_LANG = "unsupported-lang"
    KERNEL_CREATION_FAILED = "kernel-creation-failed"
    KERNEL_EXECUTION_FAILED = "kernel-execution-failed"
    INSTANCE_FULL = "instance-full"
    INVALID_API_PARAMS = "invalid-api-params"
    PAYLOAD_TOO_LARGE = "payload-too-large"
    LOCAL_SANDBOX_UNAVAILABLE = "local-sandbox-unavailable"
    # What the RPC layer itself answers.
    METHOD_NOT_FOUND = "method-not-found"
    BAD_REQUEST = "bad-request"
    BAD_REPLY = "bad-reply"
    CODEC_ERROR = "codec-error"
    CONFIG_ERROR = "config-error"
    RPC_TIMEOUT = "rpc-timeout"
    RPC_CLOSED = "rpc-closed"
    INTERNAL_ERROR = "internal-error"


class SornaError(Exception):
    """Root of every Sorna exception."""

    #: What a failed RPC that raised this answers (subclasses name their own).
    error_type: ClassVar[ErrorType] = ErrorType.INTERNAL_ERROR


class ConfigError(SornaError):
    """A setting is missing or invalid; the message names the field."""

    error_type = ErrorType.CONFIG_ERROR


class CodecError(SornaError):
    """Bytes could not be decoded as a Sorna msgpack message."""

    error_type = ErrorType.CODEC_ERROR


class InvalidParams(SornaError):
    """A call's params do not fit its method's params type."""

    error_type = ErrorType.INVALID_API_PARAMS


class RPCError(SornaError):
    """A remote procedure call failed."""


class RPCTimeout(RPCError):
    """The peer did not answer before the call's deadline."""

    error_type = ErrorType.RPC_TIMEOUT


class RPCClosed(RPCError):
    """The RPC client was closed while a call was pending."""

    error_type = ErrorType.RPC_CLOSED


class RPCPeerRestarted(RPCClosed):
    """The peer was restarted (a new process) while the call was pending: no reply will come."""


class RemoteError(RPCError):
    """The peer answered with an error; ``type`` is its wire ``error.type``."""

    def __init__(self, type_: ErrorType, message: str, data: Any = None) -> None:
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message
        self.data = data


class MethodNotFound(RemoteError):
    """The peer does not serve the requested method."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(ErrorType.METHOD_NOT_FOUND, message, data)


class BadReply(RemoteError):
    """The peer's reply is not the method's result type (or not a reply at all)."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(ErrorType.BAD_REPLY, message, data)


class EventStreamError(SornaError):
    """The Redis event stream could not be read or written."""
