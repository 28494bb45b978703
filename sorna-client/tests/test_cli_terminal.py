"""``sorna run`` on a real terminal (a pseudo-terminal made its controlling tty): status lines on
stderr, silence with -q, and password prompts that do not echo."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import termios
import textwrap
import time
from pathlib import Path

from .conftest import Stack
from .test_cli_run import BIN

WAIT_S = 60.0


class Terminal:
    """A command running with a pseudo-terminal as its controlling tty and stdio."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            ["setsid", "-c", *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            close_fds=True,
        )
        os.close(slave)
        self.output = b""

    async def read_until(self, marker: bytes) -> None:
        async with asyncio.timeout(WAIT_S):
            while marker not in self.output:
                self.output += await asyncio.to_thread(self._read)

    def _read(self) -> bytes:
        try:
            return os.read(self.master, 4096)
        except OSError:  # EIO: the other side is gone
            return b""

    async def echo_off(self) -> None:
        """Wait until the program turned echo off (getpass flushes what was typed before)."""
        await asyncio.to_thread(self._wait_echo_off)

    def _wait_echo_off(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while termios.tcgetattr(self.master)[3] & termios.ECHO:
            assert time.monotonic() < deadline, "echo never went off"
            time.sleep(0.02)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def wait(self) -> int:
        rc = await asyncio.to_thread(self.proc.wait, WAIT_S)
        while chunk := await asyncio.to_thread(self._read):
            self.output += chunk
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


async def test_status_lines_and_hidden_password(stack: Stack, tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import getpass
        name = input("name? ")
        secret = getpass.getpass("password: ")
        print("got", name, len(secret))
        """
    )
    term = Terminal(
        [str(BIN / "sorna"), "run", "python3", "-c", code], stack.cli_env(tmp_path), tmp_path
    )
    try:
        await term.read_until(b"name? ")
        term.type("Ada\n")
        await term.read_until(b"password: ")
        await term.echo_off()
        term.type("hunter2\n")
        assert await term.wait() == 0
    finally:
        term.close()
    text = term.output.decode().replace("\r\n", "\n")
    assert "sorna: creating a python3 kernel" in text
    assert "sorna: running" in text
    assert "sorna: done" in text
    assert "Ada" in text  # a plain prompt echoes what is typed
    assert "hunter2" not in text  # a password prompt does not
    assert "got Ada 7" in text


async def test_quiet_and_failed_status(stack: Stack, tmp_path: Path) -> None:
    term = Terminal(
        [str(BIN / "sorna"), "run", "-q", "python3", "-c", "print('quiet')"],
        stack.cli_env(tmp_path),
        tmp_path,
    )
    try:
        assert await term.wait() == 0
    finally:
        term.close()
    assert term.output.decode().replace("\r\n", "\n") == "quiet\n"

    term = Terminal(
        [str(BIN / "sorna"), "run", "python3", "-c", "raise SystemExit(4)"],
        stack.cli_env(tmp_path),
        tmp_path,
    )
    try:
        assert await term.wait() == 1
    finally:
        term.close()
    assert "sorna: failed (exit status 4)" in term.output.decode()
