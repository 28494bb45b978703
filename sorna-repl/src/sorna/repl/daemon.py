"""The REPL daemon core: sockets, op dispatch, the run queue and the output stream.

One :class:`ReplDaemon` per kernel process. Its I/O thread owns the PULL socket and serves
``input``/``complete``/``interrupt``/``status`` at once; ``code``/``build``/``exec`` go to a
FIFO queue that :meth:`ReplDaemon.run` works through on the calling (main) thread, so that
user code runs on the main thread where signals land. Each run ends with exactly one
``finished`` (``build-finished`` for builds), whatever happens inside it.

Errors::

    ReplError            anything the runner reports
     +-- ProtocolError   a malformed input message
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import zmq

from .backend import LanguageBackend
from .output import OutputSink
from .protocol import (
    DEFAULT_INPUT_ADDR,
    DEFAULT_OUTPUT_ADDR,
    DEFAULT_OUTPUT_LIMIT,
    ENV_INPUT_ADDR,
    ENV_OUTPUT_ADDR,
    ENV_OUTPUT_LIMIT,
    ENV_PTY_INPUT_ADDR,
    ENV_PTY_OUTPUT_ADDR,
    Frame,
    InputOp,
    OutputOp,
    StatusPayload,
    WaitingInputPayload,
    default_pty_addrs,
    json_payload,
)
from .ptybridge import PtyBridge

log = logging.getLogger(__name__)

#: How often blocking waits wake up to notice close() and pending signals.
_TICK = 0.1


class ReplError(Exception):
    """Anything the REPL runner reports."""


class ProtocolError(ReplError):
    """A malformed input message."""


class ReplDaemon:
    """Serve one language backend over the REPL protocol."""

    def __init__(
        self,
        *,
        backend: LanguageBackend,
        input_addr: str = DEFAULT_INPUT_ADDR,
        output_addr: str = DEFAULT_OUTPUT_ADDR,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        workdir: Path | None = None,
        pty_input_addr: str | None = None,
        pty_output_addr: str | None = None,
    ) -> None:
        """Set up (nothing is bound until :meth:`run`). The tty bridge starts when the
        backend has a ``tty_argv`` and both PTY addresses are given."""
        self._backend = backend
        self._input_addr = input_addr
        self._output_addr = output_addr
        self._workdir = workdir or Path.cwd()
        self._ctx = zmq.Context()
        self._pull = self._ctx.socket(zmq.PULL)
        self._push = self._ctx.socket(zmq.PUSH)
        self._push_lock = threading.Lock()
        self._sink = OutputSink(self._send, limit=output_limit)
        self._runs: queue.Queue[Frame] = queue.Queue()
        self._inputs: queue.Queue[str] = queue.Queue()
        self._busy = threading.Event()
        self._closing = threading.Event()
        self._closed = False
        self._io_thread: threading.Thread | None = None
        self._pty: PtyBridge | None = None
        if backend.tty_argv and pty_input_addr and pty_output_addr:
            self._pty = PtyBridge(
                argv=backend.tty_argv,
                input_addr=pty_input_addr,
                output_addr=pty_output_addr,
                context=self._ctx,
                workdir=self._workdir,
            )
        self._handlers: dict[str, Callable[[Frame], None]] = {
            InputOp.CODE: self._enqueue,
            InputOp.BUILD: self._enqueue,
            InputOp.EXEC: self._enqueue,
            InputOp.INPUT: self._on_input,
            InputOp.COMPLETE: self._on_complete,
            InputOp.INTERRUPT: self._on_interrupt,
            InputOp.STATUS: self._on_status,
        }
        self._runners: dict[str, tuple[Callable[[str], int], OutputOp]] = {
            InputOp.CODE: (backend.run_code, OutputOp.FINISHED),
            InputOp.BUILD: (backend.build, OutputOp.BUILD_FINISHED),
            InputOp.EXEC: (backend.execute, OutputOp.FINISHED),
        }
        backend.attach(self)

    # -- KernelIO, for the backend -------------------------------------------------------

    @property
    def workdir(self) -> Path:
        """The directory runs start in."""
        return self._workdir

    def write(self, stream: OutputOp, text: str) -> bool:
        """Stream text; False once the current run is over its output cap."""
        return self._sink.write(stream, text)

    def emit(self, op: OutputOp, payload: bytes = b"") -> None:
        """Send a non-stream frame after the output written so far."""
        self._sink.emit(op, payload)

    def poll_input(self) -> str | None:
        """Return a queued input line, or None."""
        try:
            return self._inputs.get_nowait()
        except queue.Empty:
            return None

    def read_input(self, *, is_password: bool = False) -> str:
        """Ask for a line (``waiting-input``) unless one is queued; block until it comes."""
        line = self.poll_input()
        if line is not None:
            return line
        waiting: WaitingInputPayload = {"is_password": is_password}
        self.emit(OutputOp.WAITING_INPUT, json_payload(waiting))
        while True:
            # A timed wait, so the main thread's signal handlers (interrupt) get to run.
            try:
                return self._inputs.get(timeout=_TICK)
            except queue.Empty:
                if self._closing.is_set():
                    raise EOFError("kernel is shutting down") from None

    # -- lifecycle --------------------------------------------------------------------------

    def run(self) -> None:
        """Bind, then serve until :meth:`close` (or SIGTERM when on the main thread)."""
        self._pull.setsockopt(zmq.LINGER, 0)
        self._push.setsockopt(zmq.LINGER, 2000)
        try:
            self._pull.bind(self._input_addr)
            self._push.bind(self._output_addr)
        except zmq.ZMQError as e:
            self.close()
            raise ReplError(
                f"cannot bind the REPL sockets {self._input_addr} and {self._output_addr}: {e}"
            ) from e
        log.info(
            "%s kernel serving: input %s, output %s",
            self._backend.lang,
            self._input_addr,
            self._output_addr,
        )
        if self._pty is not None:
            try:
                self._pty.start()
            except (OSError, zmq.ZMQError) as e:
                # The REPL is the kernel's job; a missing terminal only loses the tty feature.
                log.error("tty bridge unavailable: %s", e)
                self._pty.close()
                self._pty = None
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        self._io_thread = threading.Thread(target=self._io_loop, name="sorna-io", daemon=True)
        self._io_thread.start()
        try:
            while not self._closing.is_set():
                try:
                    frame = self._runs.get(timeout=_TICK)
                except queue.Empty:
                    continue
                except KeyboardInterrupt:  # a late interrupt after a run ended
                    continue
                self._run_one(frame)
        finally:
            self.close()

    def close(self) -> None:
        """Stop serving and release sockets, threads and the backend. Idempotent."""
        self._closing.set()
        if threading.current_thread() is not threading.main_thread() or self._closed:
            return
        self._closed = True
        if self._io_thread is not None:
            self._io_thread.join(timeout=2)
        self._backend.close()
        if self._pty is not None:
            self._pty.close()
        self._sink.close()
        with self._push_lock:
            self._pull.close()
            self._push.close()
        self._ctx.term()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self._closing.set()
        self._backend.interrupt()

    # -- the run queue ---------------------------------------------------------------------

    def _run_one(self, frame: Frame) -> None:
        run, done_op = self._runners[frame.op]
        self._busy.set()
        status = 1
        self._sink.begin_run()
        try:
            status = run(frame.text)
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt | SystemExit):
                log.exception("%s run failed inside the runner", frame.op)
            self.write(OutputOp.STDERR, f"[sorna] run aborted: {type(e).__name__}: {e}\n")
        finally:
            # Stale answers must not feed the next run.
            while self.poll_input() is not None:
                pass
            self._busy.clear()
            self._sink.end_run()
            self.emit(done_op, json_payload({"exit_code": status}))

    # -- the I/O thread ----------------------------------------------------------------------

    def _send(self, op: str, payload: bytes) -> None:
        # Block while nobody reads (back-pressure on user code), but never past close():
        # a daemon whose agent went away must still shut down.
        frames = [op.encode("ascii"), payload]
        with self._push_lock:
            while not self._push.closed:
                try:
                    self._push.send_multipart(frames, flags=zmq.NOBLOCK)
                    return
                except zmq.Again:
                    if self._closing.is_set():
                        log.warning("dropping a %r frame: no reader at shutdown", op)
                        return
                    self._push.poll(int(_TICK * 1000), zmq.POLLOUT)

    def _io_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._pull, zmq.POLLIN)
        while not self._closing.is_set():
            try:
                if not poller.poll(int(_TICK * 1000)):
                    continue
                frame = Frame.decode(self._pull.recv_multipart())
            except zmq.ZMQError:
                if self._closing.is_set():
                    return
                log.exception("receive failed")
                continue
            handler = self._handlers.get(frame.op)
            if handler is None:
                log.warning("ignoring unknown op %r", frame.op)
                continue
            try:
                handler(frame)
            except Exception:
                log.exception("handling op %r failed", frame.op)

    def _enqueue(self, frame: Frame) -> None:
        self._runs.put(frame)

    def _on_input(self, frame: Frame) -> None:
        text = frame.text
        self._inputs.put(text[:-1] if text.endswith("\n") else text)

    def _on_complete(self, frame: Frame) -> None:
        try:
            request = frame.json() or {}
            code = str(request.get("code", ""))
            options = request.get("options") or {}
        except (ValueError, AttributeError):
            code, options = frame.text, {}
        try:
            candidates = self._backend.complete(code, options)
        except Exception:
            log.exception("completion failed")
            candidates = []
        self.emit(OutputOp.COMPLETION, json_payload(candidates))

    def _on_interrupt(self, frame: Frame) -> None:
        if self._busy.is_set():
            self._backend.interrupt()

    def _on_status(self, frame: Frame) -> None:
        status: StatusPayload = {"busy": self._busy.is_set(), "runs_queued": self._runs.qsize()}
        self.emit(OutputOp.STATUS, json_payload(status))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The daemon command line shared by every language."""
    parser = argparse.ArgumentParser(description="Sorna REPL daemon")
    parser.add_argument(
        "--input",
        default=os.environ.get(ENV_INPUT_ADDR, DEFAULT_INPUT_ADDR),
        help=f"PULL bind address for input ops (env {ENV_INPUT_ADDR})",
    )
    parser.add_argument(
        "--output",
        default=os.environ.get(ENV_OUTPUT_ADDR, DEFAULT_OUTPUT_ADDR),
        help=f"PUSH bind address for output ops (env {ENV_OUTPUT_ADDR})",
    )
    parser.add_argument(
        "--output-limit",
        type=int,
        default=int(os.environ.get(ENV_OUTPUT_LIMIT, DEFAULT_OUTPUT_LIMIT)),
        help=f"stdout+stderr bytes per run before it is cut (env {ENV_OUTPUT_LIMIT})",
    )
    parser.add_argument(
        "--pty-input",
        default=os.environ.get(ENV_PTY_INPUT_ADDR),
        help="PULL bind address of the tty bridge (keys); default: beside --input",
    )
    parser.add_argument(
        "--pty-output",
        default=os.environ.get(ENV_PTY_OUTPUT_ADDR),
        help="PUSH bind address of the tty bridge (screen); default: beside --output",
    )
    parser.add_argument("--log-level", default=os.environ.get("SORNA_REPL_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def serve(backend: LanguageBackend, argv: Sequence[str] | None = None) -> None:
    """Entry point of a language daemon: parse the command line and serve until killed."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.__stderr__,
    )
    pty_input, pty_output = default_pty_addrs(args.input)
    daemon = ReplDaemon(
        backend=backend,
        input_addr=args.input,
        output_addr=args.output,
        output_limit=args.output_limit,
        pty_input_addr=args.pty_input or pty_input,
        pty_output_addr=args.pty_output or pty_output,
    )
    try:
        daemon.run()
    except ReplError as e:
        # The Python backend points sys.stderr at the (unserved) output socket: use the
        # process's own stderr, so `docker logs` says why the kernel is gone.
        print(f"sorna {backend.lang} kernel cannot start: {e}", file=sys.__stderr__, flush=True)
        raise SystemExit(1) from None
    except Exception:
        traceback.print_exc(file=sys.__stderr__)
        raise SystemExit(1) from None


__all__ = ["ProtocolError", "ReplDaemon", "ReplError", "parse_args", "serve"]
