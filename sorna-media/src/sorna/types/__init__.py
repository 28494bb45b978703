"""Types shared by Sorna's media modules, and the one function that hands records to the kernel.

A *media record* is ``{"type": mime, "data": str}`` (PROTOCOLS.md section 6). Inside a Sorna
python3 kernel the REPL daemon installs ``builtins._sorna_emit``; :func:`emit` calls it, and
the daemon turns the record into a ``media`` frame (an ``html`` frame for ``text/html``).

Outside a kernel (a plain ``python3``, a test) there is no hook and :func:`emit` never fails:

* if the environment variable ``SORNA_MEDIA_DIR`` names a folder, each record is written
  there as a file (``media-0001.svg``, ``.png`` decoded from base64, ``.html``, ``.drawing``
  holding the base64 msgpack text) and its path is returned;
* otherwise the record is dropped (``None`` is returned) and a single INFO line is logged.

Errors: none of its own; a record that is not a mapping with a str ``type`` and ``data`` is a
``TypeError``.
"""

from __future__ import annotations

import base64
import builtins
import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, NamedTuple, TypedDict

log = logging.getLogger(__name__)

#: MIME type of a drawing record: base64 of the msgpack'd command list.
DRAWING_MIME: Final = "application/x-sorna-drawing"
SVG_MIME: Final = "image/svg+xml"
PNG_MIME: Final = "image/png"
HTML_MIME: Final = "text/html"
#: Environment variable naming a folder for records emitted outside a kernel.
MEDIA_DIR_ENV: Final = "SORNA_MEDIA_DIR"
#: Name of the hook the REPL daemon installs in ``builtins``.
EMIT_HOOK: Final = "_sorna_emit"

_SUFFIXES: Final = {
    DRAWING_MIME: ".drawing",
    SVG_MIME: ".svg",
    PNG_MIME: ".png",
    HTML_MIME: ".html",
}


class MediaRecord(TypedDict):
    """One media item for the front-end: a MIME type and its text data."""

    type: str
    data: str


class Vec2(NamedTuple):
    """A point or a vector on a canvas (pixels, y pointing down)."""

    x: float
    y: float


EmitHook = Callable[[MediaRecord], None]

_file_counter = itertools.count(1)
_dropped_logged = False


def emit_hook() -> EmitHook | None:
    """The REPL's emit hook, or None outside a Sorna kernel."""
    hook = getattr(builtins, EMIT_HOOK, None)
    return hook if callable(hook) else None


def emit(record: MediaRecord) -> Path | None:
    """Send ``record`` to the front-end (see the module docstring for the fallback)."""
    if not isinstance(record.get("type"), str) or not isinstance(record.get("data"), str):
        raise TypeError('a media record is {"type": str, "data": str}')
    hook = emit_hook()
    if hook is not None:
        hook(record)
        return None
    folder = os.environ.get(MEDIA_DIR_ENV)
    if folder:
        return _write_file(Path(folder), record)
    global _dropped_logged
    if not _dropped_logged:
        _dropped_logged = True
        log.info(
            "not in a Sorna kernel: %s records are dropped (set %s to keep them as files)",
            record["type"],
            MEDIA_DIR_ENV,
        )
    return None


def _write_file(folder: Path, record: MediaRecord) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = _SUFFIXES.get(record["type"], ".txt")
    while True:
        path = folder / f"media-{next(_file_counter):04d}{suffix}"
        if not path.exists():
            break
    if record["type"] == PNG_MIME:
        path.write_bytes(base64.b64decode(record["data"]))
    else:
        path.write_text(record["data"], encoding="utf-8")
    return path


__all__ = [
    "DRAWING_MIME",
    "EMIT_HOOK",
    "HTML_MIME",
    "MEDIA_DIR_ENV",
    "PNG_MIME",
    "SVG_MIME",
    "MediaRecord",
    "Vec2",
    "emit",
    "emit_hook",
]
