"""Answering a program's ``waiting-input`` from the user's terminal or piped stdin."""

from __future__ import annotations

import asyncio
import getpass
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from ..kernel import InputRequest

_T = TypeVar("_T")


async def in_daemon_thread(fn: Callable[[], _T]) -> _T:
    """Run a blocking read without holding up interpreter exit (a Ctrl-C mid-read must work)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def target() -> None:
        try:
            value = fn()
        except BaseException as e:  # handed to the awaiting task
            loop.call_soon_threadsafe(_set_exception, future, e)
        else:
            loop.call_soon_threadsafe(_set_result, future, value)

    threading.Thread(target=target, name="sorna-stdin", daemon=True).start()
    return await future


def _set_result(future: asyncio.Future[_T], value: _T) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[_T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class TerminalInput:
    """An ``on_input`` callback: a line from the terminal (hidden for passwords) or the pipe.

    The prompt itself was already printed: it is part of the program's stdout. At the end of
    piped input the program gets empty lines.
    """

    async def __call__(self, request: InputRequest) -> str:
        return await in_daemon_thread(lambda: read_line(secret=request.is_password))


def read_line(*, secret: bool) -> str:
    """Read one line from stdin without its newline; ``""`` at end of input."""
    try:
        if sys.stdin.isatty():
            return getpass.getpass(prompt="") if secret else input()
        line = sys.stdin.readline()
    except EOFError:
        return ""
    return line.removesuffix("\n").removesuffix("\r")
