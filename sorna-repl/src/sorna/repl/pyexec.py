"""In-process Python execution for the python3 kernel.

User code runs on the daemon's main thread in one persistent namespace, so state survives
between ``code`` ops and ``interrupt`` can raise ``KeyboardInterrupt`` inside it (a SIGINT
aimed at the main thread, honoured only while user code runs). ``sys.stdout``/``sys.stderr``
stream into the daemon's output; ``input()``, ``sys.stdin`` and ``getpass.getpass()`` go
through ``waiting-input``; ``builtins._sorna_emit`` turns media records into frames.
"""

from __future__ import annotations

import ast
import builtins
import getpass
import io
import linecache
import os
import re
import rlcompleter
import signal
import sys
import threading
import traceback
import types
from collections.abc import Mapping
from typing import Any, TextIO

from .backend import LanguageBackend
from .protocol import DEFAULT_COMMAND, OutputOp, json_payload
from .runner import ProcessRunner, child_env, shell_argv

#: The file name user code is compiled under; tracebacks start at its frames.
INPUT_FILENAME = "<input>"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_TOKEN_AT_END = re.compile(r"[A-Za-z_][\w.]*$|$")
_MAX_CANDIDATES = 500


class OutputLimitExceeded(BaseException):
    """Raised inside user code when its run exceeds the output cap.

    A ``BaseException`` so that ``except Exception`` in user code does not swallow it.
    """


class _OutputStream(io.TextIOBase):
    """A text stream writing into the daemon's stdout or stderr."""

    def __init__(self, backend: PythonBackend, stream: OutputOp) -> None:
        super().__init__()
        self._backend = backend
        self._stream = stream
        self._buffer = _BinaryOutput(self)

    encoding = "utf-8"
    errors = "replace"

    @property
    def buffer(self) -> _BinaryOutput:
        return self._buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if not self._backend.io.write(self._stream, s):
            raise OutputLimitExceeded("output limit exceeded")
        return len(s)


class _BinaryOutput(io.RawIOBase):
    """``sys.stdout.buffer``: bytes decoded as UTF-8 into the text stream."""

    def __init__(self, text: _OutputStream) -> None:
        super().__init__()
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._text.write(data.decode("utf-8", errors="replace"))
        return len(data)


class _InputStream(io.TextIOBase):
    """``sys.stdin``: each line is asked for through ``waiting-input``."""

    def __init__(self, backend: PythonBackend) -> None:
        super().__init__()
        self._backend = backend

    encoding = "utf-8"

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return self._backend.io.read_input() + "\n"

    def read(self, size: int | None = -1) -> str:
        return self.readline()


class PythonBackend(LanguageBackend):
    """Run Python snippets in-process, with persistent globals."""

    lang = "python3"

    def __init__(self) -> None:
        super().__init__()
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self._in_user_code = False
        self._main_ident = threading.main_thread().ident
        self._runner: ProcessRunner | None = None
        self._stdout: _OutputStream | None = None

    # -- setup -----------------------------------------------------------------------------

    def attach(self, io: Any) -> None:
        """Install the stream, input and emit hooks (must run on the main thread)."""
        super().attach(io)
        self._stdout = _OutputStream(self, OutputOp.STDOUT)
        sys.stdout = self._stdout
        sys.stderr = _OutputStream(self, OutputOp.STDERR)
        sys.stdin = _InputStream(self)
        builtins.input = self._input
        getpass.getpass = self._getpass
        builtins._sorna_emit = self.emit_record  # type: ignore[attr-defined]
        signal.signal(signal.SIGINT, self._on_sigint)
        self._runner = ProcessRunner(io)

    def _on_sigint(self, signum: int, frame: types.FrameType | None) -> None:
        # Only user code is interruptible; a late signal must not break the daemon loop.
        if self._in_user_code:
            raise KeyboardInterrupt

    def _input(self, prompt: object = "") -> str:
        if prompt:
            sys.stdout.write(str(prompt))
        return self.io.read_input()

    def _getpass(self, prompt: str = "Password: ", stream: TextIO | None = None) -> str:
        if prompt:
            sys.stdout.write(prompt)
        return self.io.read_input(is_password=True)

    def emit_record(self, record: Mapping[str, Any]) -> None:
        """Turn a media record ``{"type": mime, "data": ...}`` into a media/html frame."""
        if not isinstance(record, Mapping) or not isinstance(record.get("type"), str):
            raise TypeError('a media record is a mapping with a str "type" and "data"')
        if record["type"] == "text/html":
            self.io.emit(OutputOp.HTML, str(record.get("data", "")).encode("utf-8"))
        else:
            payload = {"type": record["type"], "data": record.get("data")}
            self.io.emit(OutputOp.MEDIA, json_payload(payload))

    # -- runs ------------------------------------------------------------------------------

    def run_code(self, code: str) -> int:
        """Run a snippet in the persistent namespace; print a trimmed traceback on error."""
        try:
            tree = ast.parse(code, INPUT_FILENAME, "exec")
            body_code, last_code = self._compile(tree)
        except (SyntaxError, ValueError, OverflowError) as e:
            self._print_exception(e)
            return 1
        linecache.cache[INPUT_FILENAME] = (
            len(code),
            None,
            [line + "\n" for line in code.splitlines()],
            INPUT_FILENAME,
        )
        try:
            self._in_user_code = True
            try:
                exec(body_code, self.namespace)
                if last_code is not None:
                    exec(last_code, self.namespace)
            finally:
                self._in_user_code = False
        except OutputLimitExceeded:
            return 1
        except SystemExit as e:
            return self._system_exit(e)
        except BaseException as e:
            self._print_exception(e)
            return 1
        return 0

    @staticmethod
    def _compile(tree: ast.Module) -> tuple[types.CodeType, types.CodeType | None]:
        # Like the interactive interpreter, show the value of a trailing expression.
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Interactive(body=[tree.body.pop()])
            return (
                compile(tree, INPUT_FILENAME, "exec"),
                compile(last, INPUT_FILENAME, "single"),
            )
        return compile(tree, INPUT_FILENAME, "exec"), None

    def _system_exit(self, e: SystemExit) -> int:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        sys.stderr.write(f"{e.code}\n")
        return 1

    def _print_exception(self, e: BaseException) -> None:
        te = traceback.TracebackException.from_exception(e)
        _trim(te)
        try:
            sys.stderr.write("".join(te.format()))
        except OutputLimitExceeded:
            pass

    def build(self, command: str) -> int:
        """Batch build: nothing by default, else the given command."""
        if command.strip() == DEFAULT_COMMAND:
            return 0
        return self._run_process(shell_argv(command))

    def execute(self, command: str) -> int:
        """Batch exec: ``python3 main.py`` by default, else the given command."""
        if command.strip() == DEFAULT_COMMAND:
            return self._run_process([sys.executable, "main.py"])
        return self._run_process(shell_argv(command))

    def _run_process(self, argv: list[str]) -> int:
        assert self._runner is not None
        return self._runner.run(argv, env=child_env())

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in user code (or SIGINT the batch child)."""
        if self._runner is not None:
            self._runner.interrupt()
        if self._in_user_code and self._main_ident is not None:
            signal.pthread_kill(self._main_ident, signal.SIGINT)

    def complete(self, code: str, options: Mapping[str, Any]) -> list[str]:
        """Names and attributes completing the token before the cursor."""
        cursor = options.get("cursor")
        if isinstance(cursor, int):
            code = code[:cursor]
        match = _TOKEN_AT_END.search(code)
        text = match.group(0) if match else ""
        if not text:
            return []
        completer = rlcompleter.Completer(self.namespace)
        seen: dict[str, None] = {}
        for state in range(_MAX_CANDIDATES):
            candidate = completer.complete(text, state)
            if candidate is None:
                break
            seen[candidate.rstrip("( ")] = None
        return list(seen)


def _trim(te: traceback.TracebackException) -> None:
    """Keep the frames from the first ``<input>`` one up to the first daemon frame."""
    frames = list(te.stack)
    start = next((i for i, f in enumerate(frames) if f.filename == INPUT_FILENAME), len(frames))
    kept = []
    for f in frames[start:]:
        if f.filename.startswith(_PACKAGE_DIR):
            break
        kept.append(f)
    te.stack = traceback.StackSummary.from_list(kept)
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _trim(chained)


__all__ = ["INPUT_FILENAME", "OutputLimitExceeded", "PythonBackend"]
