"""Coalesced, capped stdout/stderr streaming for one daemon.

Writers (user code, pipe readers) append text; a flusher thread sends what piled up after a
short time slice, so output streams as produced without one frame per ``write()``. Every other
output frame goes through :meth:`OutputSink.emit`, which flushes first: frames leave in the
order things happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .protocol import DEFAULT_OUTPUT_LIMIT, OutputOp

log = logging.getLogger(__name__)

#: Signature of the raw sender: (op, payload) -> None. Must be safe to call from any thread.
SendFn = Callable[[str, bytes], None]

#: Time slice over which writes are coalesced into one frame.
FLUSH_INTERVAL = 0.02
#: A pending chunk this large is sent at once, without waiting for the time slice.
MAX_CHUNK = 64 * 1024


def _format_size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


class OutputSink:
    """Ordered stdout/stderr buffer with a per-run byte cap."""

    def __init__(
        self,
        send: SendFn,
        *,
        limit: int = DEFAULT_OUTPUT_LIMIT,
        interval: float = FLUSH_INTERVAL,
        max_chunk: int = MAX_CHUNK,
    ) -> None:
        self._send = send
        self._limit = limit
        self._interval = interval
        self._max_chunk = max_chunk
        # One lock covers buffering and sending, so frames never overtake each other.
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[tuple[str, list[str]]] = []
        self._pending_chars = 0
        self._used = 0
        self._exceeded = False
        self._on_limit: Callable[[], None] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._flusher, name="sorna-output", daemon=True)
        self._thread.start()

    @property
    def limit(self) -> int:
        """The per-run cap in bytes."""
        return self._limit

    @property
    def exceeded(self) -> bool:
        """Whether the current run hit the cap."""
        return self._exceeded

    def begin_run(self, on_limit: Callable[[], None] | None = None) -> None:
        """Reset the cap for a new run; ``on_limit`` is called once if the run exceeds it."""
        with self._cond:
            self._used = 0
            self._exceeded = False
            self._on_limit = on_limit

    def end_run(self) -> None:
        """Flush everything of the finished run."""
        with self._cond:
            self._flush_locked()
            self._on_limit = None

    def write(self, stream: OutputOp, text: str) -> bool:
        """Queue ``text`` on ``stream``; False once the run is over its cap (text dropped)."""
        if not text:
            return not self._exceeded
        callback: Callable[[], None] | None = None
        with self._cond:
            if self._exceeded:
                return False
            size = len(text.encode("utf-8", errors="surrogatepass"))
            if self._used + size > self._limit:
                room = self._limit - self._used
                head = text.encode("utf-8", errors="surrogatepass")[:room]
                self._append(stream, head.decode("utf-8", errors="ignore"))
                self._used = self._limit
                self._exceeded = True
                notice = (
                    f"\n[sorna] output limit of {_format_size(self._limit)} per run exceeded;"
                    " the run was stopped and further output discarded.\n"
                )
                self._append(OutputOp.STDERR, notice)
                self._flush_locked()
                callback = self._on_limit
            else:
                self._used += size
                self._append(stream, text)
                if self._pending_chars >= self._max_chunk:
                    self._flush_locked()
                else:
                    self._cond.notify()
        if callback is not None:
            callback()
            return False
        return True

    def emit(self, op: str, payload: bytes = b"") -> None:
        """Send a non-stream frame after everything written so far."""
        with self._cond:
            self._flush_locked()
            self._send(op, payload)

    def flush(self) -> None:
        """Send pending output now."""
        with self._cond:
            self._flush_locked()

    def close(self) -> None:
        """Flush and stop the flusher thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2)
        self.flush()

    def _append(self, stream: str, text: str) -> None:
        if not text:
            return
        if self._pending and self._pending[-1][0] == stream:
            self._pending[-1][1].append(text)
        else:
            self._pending.append((stream, [text]))
        self._pending_chars += len(text)

    def _flush_locked(self) -> None:
        pending, self._pending, self._pending_chars = self._pending, [], 0
        step = 4 * self._max_chunk
        for stream, parts in pending:
            text = "".join(parts)
            # Keep frames bounded even if one write was huge; split on characters so that
            # every frame is valid UTF-8 by itself.
            for start in range(0, len(text), step):
                self._send(stream, text[start : start + step].encode("utf-8", errors="replace"))

    def _flusher(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            # Let more writes pile up for one time slice, then send them as one frame.
            time.sleep(self._interval)
            try:
                self.flush()
            except Exception:  # a closed socket at shutdown
                log.exception("output flush failed")
                return
