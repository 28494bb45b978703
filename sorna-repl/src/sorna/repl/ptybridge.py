"""The ``tty`` feature: an interactive program on a pseudo-terminal, bridged over ZMQ.

Bytes pushed to the bridge's PULL socket (``REPL_PTY_INPUT_PORT`` in a kernel with a network)
are typed into the terminal; everything the terminal prints leaves on its PUSH socket
(``REPL_PTY_OUTPUT_PORT``) as raw single-frame messages, for the gateway's WebSocket
terminal. When the program exits (the user typed ``exit``), a fresh one is started. Terminal
output nobody reads is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pty
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import zmq

log = logging.getLogger(__name__)

_TICK_MS = 100


class PtyBridge:
    """Run ``argv`` on a PTY and bridge it to a PULL (keys) and a PUSH (screen) socket."""

    def __init__(
        self,
        *,
        argv: Sequence[str],
        input_addr: str,
        output_addr: str,
        context: zmq.Context[zmq.Socket[bytes]],
        workdir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._argv = list(argv)
        self._workdir = workdir
        self._env = dict(env if env is not None else os.environ)
        self._env.setdefault("TERM", "xterm-256color")
        self._pull = context.socket(zmq.PULL)
        self._push = context.socket(zmq.PUSH)
        self._input_addr = input_addr
        self._output_addr = output_addr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sorna-pty", daemon=True)
        self._pid = -1
        self._master = -1

    def start(self) -> None:
        """Bind both sockets, start the program and the bridging thread."""
        for sock in (self._pull, self._push):
            sock.setsockopt(zmq.LINGER, 0)
        self._pull.bind(self._input_addr)
        self._push.bind(self._output_addr)
        self._spawn()
        self._thread.start()
        log.info("tty bridge: keys %s, screen %s", self._input_addr, self._output_addr)

    def close(self) -> None:
        """Stop the thread, kill the program, close the sockets."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._reap(kill=True)
        self._pull.close()
        self._push.close()

    def _spawn(self) -> None:
        pid, master = pty.fork()
        if pid == 0:  # the child: become the program at once
            try:
                os.chdir(self._workdir)
                os.execvpe(self._argv[0], self._argv, self._env)
            finally:
                os._exit(127)
        self._pid, self._master = pid, master

    def _reap(self, *, kill: bool) -> None:
        if self._pid > 0:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = -1
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = -1

    def _loop(self) -> None:
        while not self._stop.is_set():
            poller = zmq.Poller()
            poller.register(self._pull, zmq.POLLIN)
            poller.register(self._master, zmq.POLLIN)
            respawn = False
            while not self._stop.is_set() and not respawn:
                events = dict(poller.poll(_TICK_MS))
                if self._pull in events:
                    keys = b"".join(self._pull.recv_multipart())
                    with contextlib.suppress(OSError):
                        os.write(self._master, keys)
                if self._master in events:
                    try:
                        screen = os.read(self._master, 65536)
                    except OSError:  # EIO: the program exited and closed the terminal
                        screen = b""
                    if not screen:
                        respawn = True
                        continue
                    with contextlib.suppress(zmq.Again):
                        self._push.send(screen, zmq.NOBLOCK)
            if respawn and not self._stop.is_set():
                self._reap(kill=True)
                self._spawn()
