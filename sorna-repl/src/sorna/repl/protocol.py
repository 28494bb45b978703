"""The agent -> kernel REPL wire protocol (PROTOCOLS.md section 3).

Every message is two ZMQ frames: ``[op (ASCII), payload (bytes)]``. The daemon binds a PULL
socket for input ops and a PUSH socket for output ops.

This module runs inside kernel images, where ``sorna.common`` is not installed: it imports the
standard library and ``sorna.common.constants`` only (the one module of ``sorna.common`` that
the image build copies in, for the REPL ports and socket names).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from sorna.common.constants import (
    REPL_INPUT_PORT,
    REPL_OUTPUT_PORT,
    REPL_PTY_INPUT_IPC_NAME,
    REPL_PTY_INPUT_PORT,
    REPL_PTY_OUTPUT_IPC_NAME,
    REPL_PTY_OUTPUT_PORT,
)

#: Default bind addresses when neither the command line nor the environment gives one.
DEFAULT_INPUT_ADDR: Final = f"tcp://*:{REPL_INPUT_PORT}"
DEFAULT_OUTPUT_ADDR: Final = f"tcp://*:{REPL_OUTPUT_PORT}"
#: Environment variables naming the bind addresses.
ENV_INPUT_ADDR: Final = "SORNA_REPL_INPUT"
ENV_OUTPUT_ADDR: Final = "SORNA_REPL_OUTPUT"
#: Environment variables naming the tty bridge's addresses (keys in, screen out).
ENV_PTY_INPUT_ADDR: Final = "SORNA_REPL_PTY_INPUT"
ENV_PTY_OUTPUT_ADDR: Final = "SORNA_REPL_PTY_OUTPUT"
#: Environment variable overriding the per-run output cap (bytes).
ENV_OUTPUT_LIMIT: Final = "SORNA_REPL_OUTPUT_LIMIT"
#: Default per-run output cap: stdout + stderr bytes.
DEFAULT_OUTPUT_LIMIT: Final = 10 * 1024 * 1024

#: The batch-mode payload meaning "the default command".
DEFAULT_COMMAND: Final = "*"


class InputOp(enum.StrEnum):
    """Ops the daemon receives."""

    CODE = "code"
    BUILD = "build"
    EXEC = "exec"
    INPUT = "input"
    COMPLETE = "complete"
    INTERRUPT = "interrupt"
    STATUS = "status"


class OutputOp(enum.StrEnum):
    """Ops the daemon sends."""

    STDOUT = "stdout"
    STDERR = "stderr"
    MEDIA = "media"
    HTML = "html"
    LOG = "log"
    COMPLETION = "completion"
    WAITING_INPUT = "waiting-input"
    FINISHED = "finished"
    BUILD_FINISHED = "build-finished"
    STATUS = "status"


#: Input ops that queue (FIFO) and run one at a time; the others are served at once.
QUEUED_OPS: Final = frozenset({InputOp.CODE, InputOp.BUILD, InputOp.EXEC})


class StatusPayload(TypedDict):
    """Payload of the ``status`` output op."""

    busy: bool
    runs_queued: int


class WaitingInputPayload(TypedDict):
    """Payload of the ``waiting-input`` output op."""

    is_password: bool


class CompletePayload(TypedDict, total=False):
    """Payload of the ``complete`` input op."""

    code: str
    options: dict[str, Any]


class MediaPayload(TypedDict):
    """Payload of the ``media`` output op (and the record ``_sorna_emit`` accepts)."""

    type: str
    data: Any


@dataclass(frozen=True, slots=True)
class Frame:
    """One protocol message: an op and its raw payload."""

    op: str
    payload: bytes = b""

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The payload parsed as JSON (``None`` for an empty payload)."""
        return json.loads(self.payload) if self.payload else None

    def encode(self) -> list[bytes]:
        """The two wire frames."""
        return [self.op.encode("ascii"), self.payload]

    @classmethod
    def decode(cls, parts: list[bytes]) -> Frame:
        """Parse wire frames; a missing payload frame reads as empty."""
        if not parts:
            raise ValueError("empty message")
        op = parts[0].decode("ascii", errors="replace")
        payload = parts[1] if len(parts) > 1 else b""
        return cls(op, payload)


def default_pty_addrs(input_addr: str) -> tuple[str, str]:
    """The tty bridge's addresses that go with a REPL input address.

    TCP kernels use the tty ports on the same interface; ipc kernels use sockets in the same
    folder as the REPL's.
    """
    if input_addr.startswith("ipc://"):
        folder = input_addr[len("ipc://") :].rsplit("/", 1)[0]
        return (
            f"ipc://{folder}/{REPL_PTY_INPUT_IPC_NAME}",
            f"ipc://{folder}/{REPL_PTY_OUTPUT_IPC_NAME}",
        )
    host = input_addr.rsplit(":", 1)[0] if input_addr.startswith("tcp://") else "tcp://*"
    return f"{host}:{REPL_PTY_INPUT_PORT}", f"{host}:{REPL_PTY_OUTPUT_PORT}"


def json_payload(obj: object) -> bytes:
    """Encode a JSON payload."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")
