"""Fixtures for the media tests: a captured emit hook, as the REPL daemon installs it."""

from __future__ import annotations

import builtins
from collections.abc import Iterator

import pytest

from sorna.types import EMIT_HOOK, MEDIA_DIR_ENV, MediaRecord


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MediaRecord]]:
    """The records emitted during the test (``builtins._sorna_emit`` appends here)."""
    records: list[MediaRecord] = []
    monkeypatch.setattr(builtins, EMIT_HOOK, records.append, raising=False)
    monkeypatch.delenv(MEDIA_DIR_ENV, raising=False)
    yield records


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """No emit hook, no media folder: a plain Python process."""
    monkeypatch.delattr(builtins, EMIT_HOOK, raising=False)
    monkeypatch.delenv(MEDIA_DIR_ENV, raising=False)
