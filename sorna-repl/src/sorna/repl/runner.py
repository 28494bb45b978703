"""Run user programs as child processes, streaming their output and feeding their stdin.

:class:`ProcessRunner` runs one command in its own process group: stdout/stderr are read as
produced and streamed; queued ``input`` lines are written to the child's stdin; when the
child (or any descendant) sits blocked reading an empty stdin, a ``waiting-input`` frame is
sent. Blocking is read from ``/proc/<pid>/syscall`` (a ``read`` on an fd that is our stdin
pipe), checked on two consecutive ticks with the output pipes drained, so the prompt always
reaches the client before ``waiting-input``.

:class:`SubprocessBackend` builds query and batch mode for compiled and scripting languages
on top of it; a language subclass only names its compiler and file suffix.
"""

from __future__ import annotations

import codecs
import fcntl
import logging
import os
import platform
import selectors
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .backend import KernelIO, LanguageBackend
from .protocol import DEFAULT_COMMAND, OutputOp, WaitingInputPayload, json_payload

log = logging.getLogger(__name__)

#: Poll period of the pump loop (stdin feeding, waiting-input detection, exit checks).
_TICK = 0.025
#: After the main child exits, how long to keep reading pipes held open by stray descendants.
_EXIT_GRACE = 0.5
#: The query-mode scratch directory inside the work dir (hidden: batch globbing skips it).
QUERY_DIR = ".sorna"

# Syscall numbers that mean "blocked reading": read, pread64, readv, preadv.
_READ_SYSCALLS: dict[str, frozenset[int]] = {
    "x86_64": frozenset({0, 17, 19, 295}),
    "aarch64": frozenset({63, 65, 67, 69}),
    "arm64": frozenset({63, 65, 67, 69}),
}
_LIBSTDBUF_CANDIDATES = (
    "/usr/libexec/coreutils/libstdbuf.so",
    "/usr/lib/coreutils/libstdbuf.so",
)

C_SUFFIXES = frozenset({".c"})
CXX_SUFFIXES = frozenset({".cc", ".cpp", ".cxx", ".c++", ".C"})


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for user programs: unbuffered Python, line-buffered C stdio.

    Line-buffered stdout and unbuffered stdin (via coreutils' ``libstdbuf``) make glibc flush
    a prompt written with ``printf`` before the program blocks in ``scanf``, as on a terminal.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    env.setdefault("LANG", "C.UTF-8")
    for candidate in _LIBSTDBUF_CANDIDATES:
        if os.path.exists(candidate):
            preload = env.get("LD_PRELOAD", "")
            if candidate not in preload.split(":"):
                env["LD_PRELOAD"] = f"{candidate}:{preload}" if preload else candidate
            env["_STDBUF_O"] = "L"
            # glibc flushes line-buffered stdout before a read only when stdin itself is
            # line-buffered or unbuffered; a pipe stdin is fully buffered otherwise.
            env["_STDBUF_I"] = "0"
            break
    if extra:
        env.update(extra)
    return env


def shell_argv(command: str) -> list[str]:
    """Run a batch command line through bash (or sh)."""
    shell = shutil.which("bash") or "/bin/sh"
    return [shell, "-c", command]


def pipe_pending(fd: int) -> int:
    """Bytes waiting to be read in the pipe ``fd`` (0 when unknown)."""
    try:
        raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
    return found


def blocked_reading(root_pid: int, pipe_inode: int) -> bool:
    """Whether a thread of ``root_pid``'s tree is blocked in read() on the given pipe."""
    read_nrs = _READ_SYSCALLS.get(platform.machine(), _READ_SYSCALLS["x86_64"])
    target = f"pipe:[{pipe_inode}]"
    for pid in descendants(root_pid):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                    fields = f.read().split()
            except OSError:
                continue
            if len(fields) < 2 or not fields[0].isdigit() or int(fields[0]) not in read_nrs:
                continue
            try:
                if os.readlink(f"/proc/{pid}/fd/{int(fields[1], 16)}") == target:
                    return True
            except (OSError, ValueError):
                continue
    return False


class InputFeeder:
    """Feed user input to a program's stdin pipe, one tick of a pump loop at a time, and say
    ``waiting-input`` when the program sits blocked reading that pipe with nothing to read.

    ``write_fd`` is the (non-blocking) end the lines are written to, ``probe_fd`` an end whose
    unread bytes tell whether the program has input left, ``pipe_inode`` the pipe's inode and
    ``out_fds`` the program's output pipes (output still in flight means it is not waiting).
    """

    def __init__(
        self, io: KernelIO, *, write_fd: int, probe_fd: int, pipe_inode: int, out_fds: Sequence[int]
    ) -> None:
        self._io = io
        self._write_fd = write_fd
        self._probe_fd = probe_fd
        self._inode = pipe_inode
        self._out_fds = tuple(out_fds)
        self._pending = b""
        self._waiting_sent = False
        self._blocked_ticks = 0

    def tick(self, pid: int, *, busy: bool) -> None:
        """Write the lines the user gave, else look whether ``pid`` (or a descendant) waits
        for input; ``busy``: the program showed life this tick (it is not waiting)."""
        while (line := self._io.poll_input()) is not None:
            self._pending += (line + "\n").encode("utf-8")
            self._waiting_sent = False
        if self._pending:
            try:
                self._pending = self._pending[os.write(self._write_fd, self._pending) :]
            except BlockingIOError:
                pass
            except OSError:  # the program closed its stdin: the rest can never be read
                self._pending = b""
            self._blocked_ticks = 0
            return
        if self._waiting_sent or busy:
            self._blocked_ticks = 0
            return
        if (
            pipe_pending(self._probe_fd) == 0
            and not any(pipe_pending(fd) for fd in self._out_fds)
            and blocked_reading(pid, self._inode)
        ):
            self._blocked_ticks += 1
        else:
            self._blocked_ticks = 0
        if self._blocked_ticks >= 2:
            waiting: WaitingInputPayload = {"is_password": False}
            self._io.emit(OutputOp.WAITING_INPUT, json_payload(waiting))
            self._waiting_sent = True
            self._blocked_ticks = 0


class ProcessRunner:
    """Run commands one at a time for a backend; interruptible from another thread."""

    def __init__(self, io: KernelIO) -> None:
        self._io = io
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._interrupted = False

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Run ``argv`` to completion, streaming its output; return its exit status.

        A child killed by a signal returns ``128 + signum`` (as a shell reports it), after a
        short notice on stderr.
        """
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd or self._io.workdir,
                env=dict(env) if env is not None else child_env(),
                start_new_session=True,
            )
        except OSError as e:
            self._io.write(OutputOp.STDERR, f"{argv[0]}: {e.strerror or e}\n")
            return 127
        with self._lock:
            self._proc = proc
            self._interrupted = False
        try:
            self._pump(proc)
            rc = proc.wait()
        finally:
            with self._lock:
                self._proc = None
            self._kill_group(proc, signal.SIGKILL)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        if rc < 0:
            signum = -rc
            if signum == signal.SIGINT and self._interrupted:
                self._io.write(OutputOp.STDERR, "\n[sorna] interrupted\n")
            elif not (signum == signal.SIGKILL and self._io_limit_hit):
                name = signal.Signals(signum).name if signum in signal.valid_signals() else ""
                self._io.write(OutputOp.STDERR, f"[sorna] process killed by signal {name}\n")
            return 128 + signum
        return rc

    def interrupt(self) -> None:
        """Send SIGINT to the running command's process group."""
        with self._lock:
            if self._proc is not None:
                self._interrupted = True
                self._kill_group(self._proc, signal.SIGINT)

    def kill(self) -> None:
        """Kill the running command's process group."""
        with self._lock:
            if self._proc is not None:
                self._kill_group(self._proc, signal.SIGKILL)

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes], signum: int) -> None:
        try:
            os.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    _io_limit_hit = False

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._io_limit_hit = False
        stdin_fd = proc.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        stdin_inode = os.fstat(stdin_fd).st_ino
        out_fds = (proc.stdout.fileno(), proc.stderr.fileno())
        decoders = {
            out_fds[0]: (OutputOp.STDOUT, codecs.getincrementaldecoder("utf-8")("replace")),
            out_fds[1]: (OutputOp.STDERR, codecs.getincrementaldecoder("utf-8")("replace")),
        }
        selector = selectors.DefaultSelector()
        for fd in out_fds:
            selector.register(fd, selectors.EVENT_READ)
        feeder = InputFeeder(
            self._io, write_fd=stdin_fd, probe_fd=stdin_fd, pipe_inode=stdin_inode, out_fds=out_fds
        )
        exited_at: float | None = None
        try:
            while selector.get_map():
                events = selector.select(timeout=_TICK)
                for key, _ in events:
                    fd = int(key.fd)
                    stream, decoder = decoders[fd]
                    data = os.read(fd, 65536)
                    text = decoder.decode(data, final=not data)
                    if not data:
                        selector.unregister(fd)
                    if text and not self._io_limit_hit and not self._io.write(stream, text):
                        self._io_limit_hit = True
                        self._kill_group(proc, signal.SIGKILL)
                if proc.poll() is not None:
                    now = time.monotonic()
                    if exited_at is None:
                        # Background leftovers would hold the pipes open forever.
                        exited_at = now
                        self._kill_group(proc, signal.SIGKILL)
                    elif now - exited_at > _EXIT_GRACE:
                        break
                    continue
                feeder.tick(proc.pid, busy=bool(events))
        finally:
            selector.close()


class SubprocessBackend(LanguageBackend):
    """Query and batch mode for a language whose programs run as child processes.

    Subclasses set :attr:`source_name` and override :meth:`query_commands`; the batch
    defaults (``make`` if there is a Makefile, else compile all C/C++ sources into ``./main``;
    exec runs ``./main``) suit most compiled languages.
    """

    #: File name the query-mode snippet is written to (inside ``.sorna/`` of the work dir).
    source_name = "main.txt"

    def __init__(self) -> None:
        super().__init__()
        self._runner: ProcessRunner | None = None

    @property
    def runner(self) -> ProcessRunner:
        """The process runner bound to this backend's daemon."""
        if self._runner is None:
            self._runner = ProcessRunner(self.io)
        return self._runner

    def query_commands(self, source: Path) -> tuple[list[str] | None, list[str]]:
        """(build argv or None, run argv) for a query-mode snippet stored at ``source``."""
        raise NotImplementedError

    def run_code(self, code: str) -> int:
        """Write the snippet to a file, build it if needed, run it."""
        query_dir = self.io.workdir / QUERY_DIR
        query_dir.mkdir(exist_ok=True)
        source = query_dir / self.source_name
        source.write_text(code if code.endswith("\n") else code + "\n", encoding="utf-8")
        build, run = self.query_commands(source)
        if build is not None:
            rc = self.runner.run(build)
            if rc != 0:
                return rc
        return self.runner.run(run)

    def default_build(self) -> list[str] | None:
        """The ``build *`` command for the work dir's contents, or None if nothing to build."""
        workdir = self.io.workdir
        if any((workdir / name).exists() for name in ("Makefile", "makefile", "GNUmakefile")):
            return ["make"]
        sources = sorted(
            str(p.relative_to(workdir))
            for p in workdir.rglob("*")
            if p.is_file()
            and (p.suffix in C_SUFFIXES or p.suffix in CXX_SUFFIXES)
            and not any(part.startswith(".") for part in p.relative_to(workdir).parts)
        )
        if not sources:
            return None
        if any(Path(s).suffix in CXX_SUFFIXES for s in sources):
            return ["g++", "-std=gnu++17", "-O2", "-I.", "-o", "main", *sources]
        return ["gcc", "-std=gnu17", "-O2", "-I.", "-o", "main", *sources, "-lm"]

    def default_exec(self) -> list[str] | None:
        """The ``exec *`` command, or None if there is nothing to run."""
        main = self.io.workdir / "main"
        if main.is_file() and os.access(main, os.X_OK):
            return ["./main"]
        return None

    def build(self, command: str) -> int:
        """Run a batch build; ``*`` picks make or a compile of all sources."""
        if command.strip() != DEFAULT_COMMAND:
            return self.runner.run(shell_argv(command))
        argv = self.default_build()
        if argv is None:
            self.io.write(OutputOp.STDERR, "[sorna] nothing to build\n")
            return 0
        return self.runner.run(argv)

    def execute(self, command: str) -> int:
        """Run a batch command; ``*`` runs the built program."""
        if command.strip() != DEFAULT_COMMAND:
            return self.runner.run(shell_argv(command))
        argv = self.default_exec()
        if argv is None:
            self.io.write(OutputOp.STDERR, "[sorna] nothing to run: build first\n")
            return 127
        return self.runner.run(argv)

    def interrupt(self) -> None:
        """SIGINT the running child's process group."""
        if self._runner is not None:
            self._runner.interrupt()

    def close(self) -> None:
        """Kill a child still running."""
        if self._runner is not None:
            self._runner.kill()
