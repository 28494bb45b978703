"""A persistent evaluator process: one interpreter per kernel, fed framed snippets.

Query mode of a stateful language keeps one interpreter alive for the kernel's whole life, so
that what one run defines is there in the next. :class:`PersistentEvaluator` starts it with
four channels:

- its stdin: the *command stream*, where the daemon writes one frame per snippet (the
  language decides how a frame looks, see :class:`EvaluatorSpec`);
- a *report* pipe (fd number in ``$SORNA_EVAL_REPORT_FD``), where the interpreter writes one
  line ``S <seq>`` when it starts snippet ``seq`` and ``D <seq> <status>`` when it is done
  (a repeated ``D`` of an old snippet is ignored);
- a *user input* pipe (fd number in ``$SORNA_EVAL_INPUT_FD``), which the interpreter makes
  the snippet's standard input;
- stdout and stderr pipes, streamed while a snippet runs.

What stays the runner's job, as for one-shot programs (:mod:`sorna.repl.runner`): streaming
stdout/stderr as produced, ``waiting-input`` when the interpreter (or a program it started)
sits blocked reading the user input pipe, the output cap, and interrupts (SIGINT to the
interpreter's process group, sent only once the snippet has started, so that it never lands
while the interpreter is reading its next frame). A second interrupt of the same run, or an
interpreter that ignores the one sent on the output cap, gets it killed; an interpreter that
exits (``exit`` in a snippet) is reported on stderr and started afresh for the next run.
Processes a snippet left in the background are killed when the snippet is done: they would
write into the next run's output.
"""

from __future__ import annotations

import codecs
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .backend import KernelIO
from .protocol import OutputOp
from .runner import InputFeeder, child_env, descendants, pipe_pending

log = logging.getLogger(__name__)

#: Environment variables that tell the interpreter its report and user-input descriptors.
ENV_REPORT_FD = "SORNA_EVAL_REPORT_FD"
ENV_INPUT_FD = "SORNA_EVAL_INPUT_FD"
#: Poll period of the pump loop.
_TICK = 0.025
#: How long an interpreter may take to say it is ready.
START_TIMEOUT = 30.0
#: After the output cap stopped a run, how long the interpreter gets to report done.
_CAP_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class EvaluatorSpec:
    """What is language-specific about a persistent evaluator."""

    #: The interpreter's command line.
    argv: Sequence[str]
    #: Written to the command stream once at start; the interpreter answers ``D 0 0``.
    init: bytes
    #: ``frame(seq, code)``: the bytes that make the interpreter run ``code`` as snippet ``seq``.
    frame: Callable[[int, str], bytes]


class _Process:
    """One running interpreter and the daemon's ends of its pipes."""

    def __init__(self, spec: EvaluatorSpec, io: KernelIO) -> None:
        report_r, report_w = os.pipe()
        input_r, input_w = os.pipe()
        env = child_env({ENV_REPORT_FD: str(report_w), ENV_INPUT_FD: str(input_r)})
        try:
            self.proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=io.workdir,
                env=env,
                pass_fds=(report_w, input_r),
                start_new_session=True,
            )
        except OSError:
            for fd in (report_r, report_w, input_r, input_w):
                os.close(fd)
            raise
        os.close(report_w)
        # The daemon keeps a read end of the user input pipe: what a snippet was given but
        # did not read is drained, so it never feeds the next run. It stays blocking (the
        # O_NONBLOCK flag would be the interpreter's too): drained by FIONREAD counts.
        self.input_r = input_r
        self.input_w = input_w
        self.report_r = report_r
        self.input_inode = os.fstat(input_w).st_ino
        assert self.proc.stdin is not None and self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.command_fd = self.proc.stdin.fileno()
        self.out_fds = (self.proc.stdout.fileno(), self.proc.stderr.fileno())
        for fd in (input_w, report_r, self.command_fd, *self.out_fds):
            os.set_blocking(fd, False)
        self.decoders = {
            self.out_fds[0]: (OutputOp.STDOUT, codecs.getincrementaldecoder("utf-8")("replace")),
            self.out_fds[1]: (OutputOp.STDERR, codecs.getincrementaldecoder("utf-8")("replace")),
        }
        self.report_buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_leftovers(self) -> None:
        """SIGKILL every descendant of the interpreter (not the interpreter itself)."""
        for _ in range(10):
            leftovers = [p for p in descendants(self.proc.pid) if p != self.proc.pid]
            if not leftovers:
                return
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def drain_input(self) -> None:
        # Called once the snippet is done: nothing else reads the pipe, so a read of what
        # FIONREAD counts never blocks.
        try:
            while (n := pipe_pending(self.input_r)) > 0:
                os.read(self.input_r, n)
        except OSError:
            pass

    def reports(self) -> list[list[str]]:
        """Complete report lines read so far, split into fields; [] when none."""
        try:
            data = os.read(self.report_r, 4096)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            return [["EOF"]]
        self.report_buf += data
        *lines, self.report_buf = self.report_buf.split(b"\n")
        return [line.decode("ascii", "replace").split() for line in lines]

    def close(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.kill_leftovers()
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        for fd in (self.input_r, self.input_w, self.report_r):
            try:
                os.close(fd)
            except OSError:
                pass


class PersistentEvaluator:
    """Run query-mode snippets in one long-lived interpreter (see the module docstring)."""

    def __init__(self, spec: EvaluatorSpec, io: KernelIO, *, name: str) -> None:
        self._spec = spec
        self._io = io
        self._name = name
        # Reentrant: the daemon's SIGTERM handler interrupts on the main thread, which may
        # hold the lock at that moment.
        self._lock = threading.RLock()
        self._process: _Process | None = None
        self._seq = 0
        self._running = False
        self._started = False
        self._interrupts = 0
        self._limit_hit = False

    @property
    def pid(self) -> int | None:
        """The interpreter's pid, or None when none runs."""
        return self._process.pid if self._process is not None else None

    def run(self, code: str) -> int:
        """Run one snippet to its end; return its status."""
        process = self._ensure_started()
        if process is None:
            return 127
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._running = True
            self._started = False
            self._interrupts = 0
            self._limit_hit = False
        try:
            return self._pump(process, seq, self._spec.frame(seq, code))
        finally:
            with self._lock:
                self._running = False

    def interrupt(self) -> None:
        """SIGINT the running snippet (a second interrupt of the same run kills the shell)."""
        with self._lock:
            process = self._process
            if process is None or not self._running:
                return
            self._interrupts += 1
            if self._started:
                self._deliver_interrupt(process)

    def close(self) -> None:
        """Kill the interpreter and everything it started."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.close()

    # -- internals --------------------------------------------------------------------------

    def _deliver_interrupt(self, process: _Process) -> None:
        # Called with the lock held.
        if self._interrupts >= 2:
            process.signal_group(signal.SIGKILL)
        else:
            process.signal_group(signal.SIGINT)

    def _ensure_started(self) -> _Process | None:
        if self._process is not None and self._process.proc.poll() is None:
            return self._process
        if self._process is not None:
            self.close()
        try:
            process = _Process(self._spec, self._io)
        except OSError as e:
            self._io.write(OutputOp.STDERR, f"[sorna] cannot start {self._name}: {e}\n")
            return None
        self._seq = 0
        ready = False
        deadline = time.monotonic() + START_TIMEOUT
        try:
            os.set_blocking(process.command_fd, True)
            os.write(process.command_fd, self._spec.init)
            os.set_blocking(process.command_fd, False)
        except OSError:
            deadline = 0.0
        while not ready and time.monotonic() < deadline and process.proc.poll() is None:
            for fields in process.reports():
                if fields[:2] == ["D", "0"]:
                    ready = True
            if not ready:
                time.sleep(_TICK)
        # What the interpreter said while starting (e.g. "no job control") is not user output.
        startup = b""
        for fd in process.out_fds:
            try:
                while chunk := os.read(fd, 65536):
                    startup += chunk
            except (BlockingIOError, OSError):
                pass
        if not ready:
            process.close()
            detail = startup.decode("utf-8", "replace").strip()
            self._io.write(OutputOp.STDERR, f"[sorna] {self._name} did not start: {detail}\n")
            return None
        if startup:
            log.debug("%s said at start: %r", self._name, startup)
        with self._lock:
            self._process = process
        return process

    def _stream(self, process: _Process, fd: int, data: bytes) -> None:
        stream, decoder = process.decoders[fd]
        text = decoder.decode(data, final=not data)
        if text and not self._limit_hit and not self._io.write(stream, text):
            self._limit_hit = True
            # Stop what runs (children die, the shell gets Ctrl-C); output is dropped.
            process.kill_leftovers()
            process.signal_group(signal.SIGINT)

    def _drain_output(self, process: _Process) -> None:
        for fd in process.out_fds:
            try:
                while data := os.read(fd, 65536):
                    self._stream(process, fd, data)
            except (BlockingIOError, OSError):
                pass

    def _pump(self, process: _Process, seq: int, frame: bytes) -> int:
        pending_cmd = frame
        feeder = InputFeeder(
            self._io,
            write_fd=process.input_w,
            probe_fd=process.input_r,
            pipe_inode=process.input_inode,
            out_fds=process.out_fds,
        )
        limit_at: float | None = None
        selector = selectors.DefaultSelector()
        for fd in (*process.out_fds, process.report_r):
            selector.register(fd, selectors.EVENT_READ)
        try:
            while True:
                if pending_cmd:
                    try:
                        pending_cmd = pending_cmd[os.write(process.command_fd, pending_cmd) :]
                    except BlockingIOError:
                        pass
                    except OSError:
                        pending_cmd = b""
                events = selector.select(timeout=_TICK)
                status: int | None = None
                exited = False
                for key, _ in events:
                    fd = int(key.fd)
                    if fd == process.report_r:
                        for fields in process.reports():
                            if fields == ["EOF"]:
                                selector.unregister(fd)
                                exited = True
                            elif fields[:2] == ["S", str(seq)]:
                                with self._lock:
                                    self._started = True
                                    if self._interrupts:
                                        self._deliver_interrupt(process)
                            elif len(fields) == 3 and fields[:2] == ["D", str(seq)]:
                                status = int(fields[2]) if fields[2].isdigit() else 1
                        continue
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    self._stream(process, fd, data)
                    if not data:
                        selector.unregister(fd)
                if status is not None:
                    # Everything the shell wrote before reporting is in the pipes now.
                    process.kill_leftovers()
                    self._drain_output(process)
                    process.drain_input()
                    return status
                if exited or process.proc.poll() is not None:
                    return self._on_exit(process)
                if self._limit_hit:
                    limit_at = limit_at or time.monotonic()
                    if time.monotonic() - limit_at > _CAP_GRACE:
                        process.signal_group(signal.SIGKILL)
                    continue
                feeder.tick(process.pid, busy=bool(events) or not self._started)
        finally:
            selector.close()

    def _on_exit(self, process: _Process) -> int:
        try:
            rc = process.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.signal_group(signal.SIGKILL)
            rc = process.proc.wait()
        self._drain_output(process)
        with self._lock:
            self._process = None
            killed = self._interrupts >= 2 or self._limit_hit
        process.close()
        if rc < 0:
            status = 128 - rc
            why = "was killed" if killed else f"was killed by signal {-rc}"
        else:
            status = rc
            why = f"exited with status {rc}"
        self._io.write(
            OutputOp.STDERR,
            f"[sorna] the {self._name} {why}; the next run starts a new one"
            " (variables and functions are reset)\n",
        )
        return status


__all__ = ["ENV_INPUT_FD", "ENV_REPORT_FD", "EvaluatorSpec", "PersistentEvaluator"]
