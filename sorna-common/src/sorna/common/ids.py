"""Typed identifiers. They are plain ``str`` at run time; mypy keeps them apart."""

from __future__ import annotations

import secrets
import uuid
from typing import NewType

KernelId = NewType("KernelId", str)
AgentId = NewType("AgentId", str)
AccessKey = NewType("AccessKey", str)
RunId = NewType("RunId", str)


def new_kernel_id() -> KernelId:
    """Return a fresh kernel id (a UUID4 in its canonical text form)."""
    return KernelId(str(uuid.uuid4()))


def new_run_id() -> RunId:
    """Return a fresh run id (16 hex characters)."""
    return RunId(secrets.token_hex(8))


def new_agent_id() -> AgentId:
    """Return a fresh agent id (``i-`` and 12 hex characters)."""
    return AgentId("i-" + secrets.token_hex(6))


def new_boot_id() -> str:
    """Return a fresh boot id, naming one start of an agent process (32 hex characters)."""
    return uuid.uuid4().hex
