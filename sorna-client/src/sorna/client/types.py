"""The typed shapes of API answers: run results, console items, kernel info, files."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, NewType

from .exceptions import ProtocolError

KernelId = NewType("KernelId", str)
RunId = NewType("RunId", str)


class RunStatus(StrEnum):
    """``result.status`` of an execute call."""

    FINISHED = "finished"
    CONTINUED = "continued"
    WAITING_INPUT = "waiting-input"
    BUILD_FINISHED = "build-finished"
    EXEC_TIMEOUT = "exec-timeout"


class ConsoleKind(StrEnum):
    """The first element of a console item."""

    STDOUT = "stdout"
    STDERR = "stderr"
    MEDIA = "media"
    HTML = "html"
    LOG = "log"


@dataclass(frozen=True, slots=True)
class Media:
    """A media record: a MIME type and its data (text, or base64 for binary types)."""

    mime: str
    data: Any


@dataclass(frozen=True, slots=True)
class ConsoleItem:
    """One console entry of a run."""

    kind: str
    data: Any

    @classmethod
    def from_wire(cls, raw: Any) -> ConsoleItem:
        """Decode ``[kind, data]``; media data becomes a :class:`Media`."""
        if not (isinstance(raw, Sequence) and len(raw) == 2 and isinstance(raw[0], str)):
            raise ProtocolError(f"malformed console item: {raw!r:.200}")
        kind, data = raw
        if kind == ConsoleKind.MEDIA:
            return cls(kind, _media(data))
        return cls(kind, data)


def _media(data: Any) -> Media:
    if isinstance(data, Sequence) and not isinstance(data, str) and len(data) == 2:
        return Media(str(data[0]), data[1])
    if isinstance(data, Mapping) and "type" in data:
        return Media(str(data["type"]), data.get("data"))
    raise ProtocolError(f"malformed media item: {data!r:.200}")


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file the run wrote under ``/home/work``; ``url`` when the server stored it in S3."""

    name: str
    url: str | None = None


# Markers of a failed program in stderr when the kernel reports no exit status.
_ERROR_MARKERS: Final = re.compile(
    r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b|\berror:|"
    r"Segmentation fault|^panic:|core dumped",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class RunResult:
    """The result object of API.md (for :meth:`run`, every chunk of the run merged)."""

    run_id: RunId
    status: RunStatus
    console: tuple[ConsoleItem, ...] = ()
    options: Mapping[str, Any] | None = None
    files: tuple[OutputFile, ...] = field(default=())

    @classmethod
    def from_wire(cls, raw: Any) -> RunResult:
        """Decode the ``result`` member of an execute answer."""
        if not isinstance(raw, Mapping):
            raise ProtocolError(f"malformed run result: {raw!r:.200}")
        try:
            status = RunStatus(str(raw.get("status")))
        except ValueError:
            raise ProtocolError(f"unknown run status {raw.get('status')!r}") from None
        options = raw.get("options")
        return cls(
            run_id=RunId(str(raw.get("runId") or "")),
            status=status,
            console=tuple(ConsoleItem.from_wire(c) for c in raw.get("console") or ()),
            options=options if isinstance(options, Mapping) else None,
            files=tuple(
                OutputFile(str(f["name"]), f.get("url"))
                for f in raw.get("files") or ()
                if isinstance(f, Mapping) and "name" in f
            ),
        )

    def text(self, kind: str) -> str:
        """Return every ``kind`` (``stdout``/``stderr``/``html``/``log``) chunk joined."""
        return "".join(str(c.data) for c in self.console if c.kind == kind)

    @property
    def stdout(self) -> str:
        """Everything the run wrote to stdout."""
        return self.text(ConsoleKind.STDOUT)

    @property
    def stderr(self) -> str:
        """Everything the run wrote to stderr."""
        return self.text(ConsoleKind.STDERR)

    @property
    def media(self) -> list[Media]:
        """The media records of the run, in order."""
        return [c.data for c in self.console if isinstance(c.data, Media)]

    @property
    def exit_code(self) -> int | None:
        """The program's exit status when the kernel reports one."""
        if self.options is None:
            return None
        for key in ("exit_code", "exitCode"):
            value = self.options.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    @property
    def is_password(self) -> bool:
        """For ``waiting-input``: whether the prompt asks for a secret."""
        return bool(self.options and self.options.get("is_password"))

    @property
    def failed(self) -> bool:
        """Whether the user program failed: a timeout, a non-zero exit, or an error on stderr.

        Without an exit status, stderr counts as an error only when it looks like one
        (a traceback, ``...Error``, ``error:``, a crash), so warnings alone do not.
        """
        if self.status == RunStatus.EXEC_TIMEOUT:
            return True
        code = self.exit_code
        if code is not None:
            return code != 0
        return bool(_ERROR_MARKERS.search(self.stderr))


@dataclass(frozen=True, slots=True)
class KernelInfo:
    """``GET /v2/kernel/:id``: units as API.md (memory KiB, times ms, idle timeout s)."""

    lang: str
    age: int
    memory_limit: int
    num_queries_executed: int
    idle: int
    memory_used: int
    cpu_credit_used: int
    exec_timeout: int
    idle_timeout: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, raw: Any) -> KernelInfo:
        """Decode the kernel info answer (missing numbers read as 0)."""
        if not isinstance(raw, Mapping) or "lang" not in raw:
            raise ProtocolError(f"malformed kernel info: {raw!r:.200}")

        def num(key: str) -> int:
            value = raw.get(key)
            return int(value) if isinstance(value, int | float) else 0

        return cls(
            lang=str(raw["lang"]),
            age=num("age"),
            memory_limit=num("memoryLimit"),
            num_queries_executed=num("numQueriesExecuted"),
            idle=num("idle"),
            memory_used=num("memoryUsed"),
            cpu_credit_used=num("cpuCreditUsed"),
            exec_timeout=num("execTimeout"),
            idle_timeout=num("idleTimeout"),
            raw=dict(raw),
        )


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One entry of ``GET /v2/kernel/:id/files``.

    ``type`` is ``file``, ``dir``, ``link`` (a symbolic link, never followed), ``fifo``,
    ``socket`` or ``device``. A name that is not UTF-8 comes with its undecodable bytes as
    ``\\xNN`` escapes and ``downloadable`` false: no request can name that file.
    """

    name: str
    size: int
    mode: str
    mtime: float
    type: str
    downloadable: bool = True

    @classmethod
    def from_wire(cls, raw: Any) -> FileEntry:
        """Decode one listing entry."""
        if not isinstance(raw, Mapping) or "name" not in raw:
            raise ProtocolError(f"malformed file entry: {raw!r:.200}")
        return cls(
            name=str(raw["name"]),
            size=int(raw.get("size") or 0),
            mode=str(raw.get("mode") or ""),
            mtime=float(raw.get("mtime") or 0),
            type=str(raw.get("type") or ""),
            downloadable=raw.get("downloadable", True) is not False,
        )
