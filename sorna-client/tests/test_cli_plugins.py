"""Extra ``sorna`` subcommands from the ``sorna.cli_commands`` entry-point group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLUGIN = """
import argparse

class Hello:
    help = "Say hello (a test plugin)."

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name")

    def __call__(self, args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 3

HELLO = Hello()
NOT_A_COMMAND = 42
"""


def _sorna(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    for name in ("SORNA_ACCESS_KEY", "SORNA_SECRET_KEY", "SORNA_ENDPOINT"):
        env.pop(name, None)
    code = "import sys; from sorna.client.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _install_plugin(site: Path, entry_points: str) -> None:
    (site / "sornatestplugin.py").write_text(PLUGIN)
    info = site / "sornatestplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sornatestplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_external_command_is_listed_and_runs_without_credentials(tmp_path: Path) -> None:
    _install_plugin(tmp_path, "[sorna.cli_commands]\nhello = sornatestplugin:HELLO\n")
    helped = _sorna(tmp_path, "--help")
    assert helped.returncode == 0
    assert "Say hello (a test plugin)." in helped.stdout
    ran = _sorna(tmp_path, "hello", "world")
    assert (ran.returncode, ran.stdout) == (3, "hello world\n")


def test_broken_or_clashing_plugins_leave_the_client_working(tmp_path: Path) -> None:
    _install_plugin(
        tmp_path,
        "[sorna.cli_commands]\nbroken = sornatestplugin_missing:X\n"
        "run = sornatestplugin:HELLO\nnotacommand = sornatestplugin:NOT_A_COMMAND\n",
    )
    helped = _sorna(tmp_path, "--help")
    assert helped.returncode == 0
    assert "cannot load command 'broken'" in helped.stderr
    assert "is not a sorna command" in helped.stderr
    # A plugin cannot take a built-in name: `run` is still the client's own.
    ran = _sorna(tmp_path, "run", "python3", "-c", "print(1)")
    assert ran.returncode == 2
    assert "no access key configured" in ran.stderr
