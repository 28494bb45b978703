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
    │       └── MethodNotFound   the peer has no such method
    └── EventStreamError         the Redis event stream misbehaved

``sorna.common`` knows nothing of HTTP; the gateway maps these to problem+json.
"""

from __future__ import annotations

from typing import Any


class SornaError(Exception):
    """Root of every Sorna exception."""


class ConfigError(SornaError):
    """A setting is missing or invalid; the message names the field."""


class CodecError(SornaError):
    """Bytes could not be decoded as a Sorna msgpack message."""


class RPCError(SornaError):
    """A remote procedure call failed."""


class RPCTimeout(RPCError):
    """The peer did not answer before the call's deadline."""


class RPCClosed(RPCError):
    """The RPC client was closed while a call was pending."""


class RPCPeerRestarted(RPCClosed):
    """The peer was restarted (a new process) while the call was pending: no reply will come."""


class RemoteError(RPCError):
    """The peer answered with an error; ``type`` is the wire ``error.type``."""

    def __init__(self, type_: str, message: str, data: Any = None) -> None:
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message
        self.data = data


class MethodNotFound(RemoteError):
    """The peer does not serve the requested method."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__("method-not-found", message, data)


class EventStreamError(SornaError):
    """The Redis event stream could not be read or written."""
