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
from collections.abc import Iterator

from ..exceptions import KernelNotFound
from ..kernel import AsyncKernel
from ..session import AsyncSession
from ..streams import AsyncPtyStream
from .common import EXIT_OK
from .output import Status
from .prompt import in_daemon_thread

# Sent when piped input ends, so that the remote shell sees end-of-file too.
_EOT = b"\x04"


async def shell_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """Open a kernel's terminal and bridge it to this one until the remote side closes."""
    remove = args.rm if args.rm is not None else args.token is None
    status(f"creating a {args.lang} kernel")
    kernel = await AsyncKernel.get_or_create(args.lang, args.token, session=session)
    try:
        async with kernel.stream_pty() as pty:
            status("connected (the session ends when the remote shell exits)")
            await bridge(pty)
    finally:
        if remove:
            with contextlib.suppress(KernelNotFound):
                await kernel.destroy()
    return EXIT_OK


async def bridge(pty: AsyncPtyStream) -> None:
    """Copy stdin to the pty and the pty's output to stdout until the pty closes."""
    fd = sys.stdin.fileno()
    interactive = os.isatty(fd)
    loop = asyncio.get_running_loop()
    resizes: set[asyncio.Task[None]] = set()

    def on_resize() -> None:
        size = os.get_terminal_size(fd)
        task = loop.create_task(pty.resize(size.lines, size.columns))
        resizes.add(task)
        task.add_done_callback(resizes.discard)

    with _raw_mode(fd, interactive):
        if interactive:
            on_resize()
            loop.add_signal_handler(signal.SIGWINCH, on_resize)
        sender = loop.create_task(_send_stdin(pty, fd, interactive))
        try:
            async for chunk in pty:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        finally:
            if interactive:
                loop.remove_signal_handler(signal.SIGWINCH)
            for task in (sender, *resizes):
                task.cancel()
            await asyncio.gather(sender, *resizes, return_exceptions=True)


async def _send_stdin(pty: AsyncPtyStream, fd: int, interactive: bool) -> None:
    while True:
        data = await in_daemon_thread(lambda: os.read(fd, 4096))
        if not data:
            if not interactive:
                await pty.send(_EOT)
            return
        await pty.send(data)


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
