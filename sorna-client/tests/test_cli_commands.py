"""The other ``sorna`` commands (ps, info, upload, ls, download, terminate, admin, shell) and
every command's ``--help``, through the real console script."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from sorna.client import AsyncKernel

from .conftest import Stack
from .test_cli_run import BIN, cli

COMMANDS = ["run", "ps", "terminate", "info", "upload", "download", "ls", "shell", "admin"]


def run_help(*argv: str, script: str = "sorna") -> str:
    done = subprocess.run(
        [str(BIN / script), *argv, "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def test_top_level_help_lists_every_command() -> None:
    text = run_help()
    for command in COMMANDS:
        assert f"    {command}" in text
    assert "SORNA_ACCESS_KEY" in text and "Exit status" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    text = run_help(command)
    assert text.startswith(f"usage: sorna {command}")
    assert "--endpoint" in text and "--quiet" in text


def test_run_help_documents_every_option() -> None:
    text = run_help("run")
    for option in ("-c CODE", "--build CMD", "--exec CMD", "-t TOKEN", "--rm", "--no-rm"):
        assert option in text
    for option in ("--download DIR", "--media-dir DIR", "--max-mem KIB", "--exec-timeout MS"):
        assert option in text


@pytest.mark.parametrize(("script", "lang"), [("lcc", "c"), ("lpython", "python3")])
def test_shortcut_help(script: str, lang: str) -> None:
    text = run_help(script=script)
    assert text.startswith(f"usage: {script}")
    assert f"sorna run {lang} FILE..." in " ".join(text.split())


async def test_kernel_commands(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("payload\n")
    kernel = await AsyncKernel.get_or_create("python3", config=stack.user)
    try:
        kid = kernel.kernel_id
        info = await cli(stack, tmp_path, "info", kid)
        assert info.returncode == 0, info.stderr
        assert "lang: python3" in info.stdout and "memory limit:" in info.stdout

        up = await cli(stack, tmp_path, "upload", kid, "in.txt")
        assert up.returncode == 0, up.stderr
        ls = await cli(stack, tmp_path, "ls", kid)
        assert "in.txt" in ls.stdout and ls.stdout.startswith("NAME")

        out_dir = tmp_path / "out"
        down = await cli(stack, tmp_path, "download", kid, "in.txt", "-o", str(out_dir))
        assert down.returncode == 0, down.stderr
        assert (out_dir / "in.txt").read_text() == "payload\n"

        ps = await cli(stack, tmp_path, "ps", config=stack.admin)
        assert ps.returncode == 0 and kid in ps.stdout
        denied = await cli(stack, tmp_path, "ps")
        assert denied.returncode == 2 and "403 forbidden" in denied.stderr

        gone = await cli(stack, tmp_path, "terminate", kid, "no-such-kernel")
        assert gone.returncode == 2
        assert f"terminated {kid}" in gone.stdout
        assert "no-such-kernel: 404 kernel-not-found" in gone.stderr
        missing = await cli(stack, tmp_path, "info", kid)
        assert missing.returncode == 2 and "kernel-not-found" in missing.stderr
    finally:
        await kernel.close()


async def test_admin_listings(stack: Stack, tmp_path: Path) -> None:
    keypairs = await cli(stack, tmp_path, "admin", "keypairs", config=stack.admin)
    assert keypairs.returncode == 0, keypairs.stderr
    assert stack.user.access_key in keypairs.stdout
    assert stack.user.secret_key not in keypairs.stdout
    agents = await cli(stack, tmp_path, "admin", "agents", config=stack.admin)
    assert agents.returncode == 0 and stack.agent.settings.agent_id in agents.stdout
    kernels = await cli(stack, tmp_path, "admin", "kernels", config=stack.admin)
    assert kernels.returncode == 0 and kernels.stdout.strip() == "(none)"


async def test_shell_through_the_pty_stream(stack: Stack, tmp_path: Path) -> None:
    done = await asyncio.wait_for(
        cli(stack, tmp_path, "shell", stdin="echo sorna-$((6*7))\n"), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "sorna-42" in done.stdout
