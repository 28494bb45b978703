"""Where a run's output goes on the user's side: terminal streams, status lines, media files."""

from __future__ import annotations

import base64
import binascii
import mimetypes
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, TextIO

from ..types import ConsoleItem, ConsoleKind, Media

# Extensions mimetypes does not know (or guesses badly).
_EXTENSIONS: Final = MappingProxyType(
    {
        "image/svg+xml": ".svg",
        "image/png": ".png",
        "image/jpeg": ".jpg",
        "text/html": ".html",
        "text/plain": ".txt",
        "application/json": ".json",
        "application/x-sorna-drawing": ".sorna-drawing",
    }
)
# Media types whose data is text; everything else is base64 of the bytes.
_TEXT_MEDIA: Final = frozenset({"image/svg+xml", "application/json", "application/xml"})


@dataclass(slots=True)
class Status:
    """Progress lines on stderr (creating, running, done, failed), only for a terminal."""

    enabled: bool
    stream: TextIO = field(default_factory=lambda: sys.stderr)

    @classmethod
    def for_terminal(cls, quiet: bool) -> Status:
        """Enabled when stderr is a terminal and ``-q`` was not given."""
        return cls(enabled=not quiet and sys.stderr.isatty())

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"sorna: {message}", file=self.stream, flush=True)


@dataclass(slots=True)
class ConsoleWriter:
    """Writes console items as they arrive: text to stdout/stderr, media and html to files."""

    media_dir: Path | None = None
    show_logs: bool = True
    saved: list[Path] = field(default_factory=list)
    _count: int = 0

    def __call__(self, item: ConsoleItem) -> None:
        if item.kind == ConsoleKind.STDOUT:
            sys.stdout.write(str(item.data))
            sys.stdout.flush()
        elif item.kind == ConsoleKind.STDERR:
            sys.stderr.write(str(item.data))
            sys.stderr.flush()
        elif item.kind == ConsoleKind.MEDIA and isinstance(item.data, Media):
            self._save(item.data.mime, _media_bytes(item.data))
        elif item.kind == ConsoleKind.HTML:
            self._save("text/html", str(item.data).encode())
        elif item.kind == ConsoleKind.LOG and self.show_logs:
            print(f"[log] {item.data}", file=sys.stderr, flush=True)

    def _save(self, mime: str, content: bytes) -> None:
        if self.media_dir is None:
            self.media_dir = Path(tempfile.mkdtemp(prefix="sorna-media-"))
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self._count += 1
        ext = _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".bin"
        path = self.media_dir / f"output-{self._count}{ext}"
        path.write_bytes(content)
        self.saved.append(path)
        print(f"[{mime} saved to {path}]", file=sys.stderr, flush=True)


def _media_bytes(media: Media) -> bytes:
    data = media.data
    if not isinstance(data, str):
        return repr(data).encode()
    if media.mime in _TEXT_MEDIA or media.mime.startswith("text/"):
        return data.encode()
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return data.encode()
