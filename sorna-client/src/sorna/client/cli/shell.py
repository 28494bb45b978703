"""``sorna shell``: an interactive terminal on a tty kernel through the pty WebSocket."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Coroutine, Iterator
from typing import Any

from ..exceptions import KernelNotFound
from ..kernel import AsyncKernel
from ..session import AsyncSession
from ..streams import AsyncPtyStream
from .common import EXIT_OK
from .output import Status
from .prompt import in_daemon_thread

#: Typed at the terminal, ends the session locally (as telnet's Ctrl-]).
ESCAPE = b"\x1d"
#: After piped input ends, the session ends once the remote side is quiet this long.
QUIET_AFTER_EOF_S = 1.0


async def shell_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """Open a kernel's terminal and bridge it to this one until it ends."""
    remove = args.rm if args.rm is not None else args.token is None
    status(f"creating a {args.lang} kernel")
    kernel = await AsyncKernel.get_or_create(args.lang, args.token, session=session)
    try:
        async with kernel.stream_pty() as pty:
            status("connected; Ctrl-] ends the session")
            await bridge(pty)
    finally:
        if remove:
            with contextlib.suppress(KernelNotFound):
                await kernel.destroy()
    return EXIT_OK


async def bridge(pty: AsyncPtyStream) -> None:
    """Copy stdin to the pty and its output to stdout until the remote side closes, Ctrl-] is
    typed, or piped input has ended and the remote side has gone quiet."""
    fd = sys.stdin.fileno()
    interactive = os.isatty(fd)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    last_output = loop.time()

    def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def on_resize() -> None:
        size = os.get_terminal_size(fd)
        spawn(pty.resize(size.lines, size.columns))

    async def copy_output() -> None:
        nonlocal last_output
        async for chunk in pty:
            last_output = loop.time()
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()

    async def copy_input() -> None:
        while True:
            data = await in_daemon_thread(lambda: os.read(fd, 4096))
            if not data:
                return
            if interactive and ESCAPE in data:
                raise _Escape
            await pty.send(data)

    with _raw_mode(fd, interactive):
        if interactive:
            on_resize()
            loop.add_signal_handler(signal.SIGWINCH, on_resize)
        output = spawn(copy_output())
        sender = spawn(copy_input())
        try:
            while not output.done():
                if sender.done():
                    if sender.exception() is not None or interactive:
                        break
                    if loop.time() - last_output >= QUIET_AFTER_EOF_S:
                        break
                await asyncio.wait({output, sender}, timeout=0.1)
            if output.done():
                output.result()  # a stream error surfaces here
        finally:
            if interactive:
                loop.remove_signal_handler(signal.SIGWINCH)
            pending = list(tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class _Escape(Exception):
    """Ctrl-] was typed."""


@contextlib.contextmanager
def _raw_mode(fd: int, interactive: bool) -> Iterator[None]:
    if not interactive:
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
