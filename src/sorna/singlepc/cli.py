"""``sorna up``, ``sorna down`` and ``sorna status``: subcommands of the ``sorna`` CLI.

They reach the client's command line through its ``sorna.cli_commands`` entry-point group.
``sorna up`` is a front end: it starts the supervisor (:mod:`sorna.singlepc.supervisor`) in
its own session, shows its progress, then either returns (``-d``) or shows a status line until
Ctrl-C, when it asks the supervisor to stop everything and waits for it.

Exit statuses: 0 success; 1 the stack failed (or ``up`` found one running); 2 a usage or
configuration error; 3 ``status`` found nothing running.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, Final

from sorna.common.config import load_settings
from sorna.common.errors import ConfigError

from .config import ENV_PREFIX, Layout, UpSettings, check_embedded_postgres, resolve_data_dir
from .state import State, is_running

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3
STOP_WAIT: Final = 150.0


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data folder (default: ~/.local/share/sorna; env SORNA_UP_DATA_DIR)",
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="TOML file of single-PC settings"
    )


def _settings(args: argparse.Namespace) -> tuple[UpSettings, Layout]:
    settings = load_settings(UpSettings, path=args.config, prefix=ENV_PREFIX)
    overrides: dict[str, Any] = {}
    if getattr(args, "unsafe_local_backend", False):
        overrides["unsafe_local_backend"] = True
    for name in ("data_dir", "host", "port", "redis_url", "db_url", "backend"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    images = getattr(args, "images", None)
    if images is not None:
        overrides["images"] = [i.strip() for i in images.split(",") if i.strip()]
    settings = dataclasses.replace(settings, **overrides)
    data_dir = resolve_data_dir(settings)
    check_embedded_postgres(settings)
    return dataclasses.replace(settings, data_dir=str(data_dir)), Layout(data_dir)


def _error(command: str, message: str) -> int:
    print(f"sorna {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


class _Tail:
    """New lines of a growing log file."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *done, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in done]


class _StopRequest:
    """Ctrl-C, SIGTERM or SIGHUP, noted instead of raised."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


class UpCommand:
    help = (
        "Start Sorna on this PC: embedded Valkey and PostgreSQL, a gateway and an agent "
        "(Docker if an engine answers, else local processes); print the endpoint and keys."
    )

    def configure(self, parser: argparse.ArgumentParser) -> None:
        _add_data_dir(parser)
        parser.add_argument(
            "-d", "--detach", action="store_true", help="return once it is up; `sorna down` stops"
        )
        parser.add_argument("--port", type=int, help="gateway port (default 8080)")
        parser.add_argument("--host", help="gateway address (default 127.0.0.1)")
        parser.add_argument(
            "--redis-url", metavar="URL", help="use this Redis, not an embedded one"
        )
        parser.add_argument(
            "--db-url", metavar="DSN", help="use this PostgreSQL, not an embedded one"
        )
        parser.add_argument(
            "--backend", choices=["docker", "local", "auto"], help="kernel backend (default auto)"
        )
        parser.add_argument(
            "--unsafe-local-backend",
            action="store_true",
            help="let the local backend run kernels WITHOUT a sandbox where this host cannot "
            "give one (no bubblewrap or user namespaces): kernels can then read this host",
        )
        parser.add_argument(
            "--images", metavar="LANG,...", help="kernel images to build if missing (python3)"
        )

    def __call__(self, args: argparse.Namespace) -> int:
        try:
            settings, layout = _settings(args)
        except ConfigError as e:
            return _error("up", str(e))
        if is_running(layout):
            print(_running_message(layout), file=sys.stderr)
            return EXIT_FAILED
        layout.create()
        log_path = layout.log("supervisor")
        offset = log_path.stat().st_size if log_path.exists() else 0
        stop = _StopRequest()
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sorna.singlepc", "supervise", settings.to_json()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C here must not reach the stack directly
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        tail = _Tail(log_path, offset)
        while proc.poll() is None and not stop.requested:
            for line in tail.lines():
                print(line, flush=True)
            state = State.load(layout)
            if state is not None and state.pid == proc.pid and state.phase == "running":
                break
            time.sleep(0.1)
        for line in tail.lines():
            print(line, flush=True)
        if proc.poll() is not None:
            print(f"sorna up: failed; see {log_path}", file=sys.stderr)
            return EXIT_FAILED
        if not stop.requested:
            _print_banner(layout)
            if args.detach:
                print(
                    f"Running in the background (pid {proc.pid}): `sorna status` reports, "
                    "`sorna down` stops it.",
                    flush=True,
                )
                return EXIT_OK
            print("Press Ctrl-C to stop.", flush=True)
            _show_status(proc, layout, tail, stop, quiet=args.quiet)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        # Wait for the stack to be gone; a second Ctrl-C does not abandon it half-stopped.
        while proc.poll() is None:
            for line in tail.lines():
                print(line, flush=True)
            time.sleep(0.1)
        for line in tail.lines():
            print(line, flush=True)
        return EXIT_OK if proc.returncode == 0 else EXIT_FAILED


def _show_status(
    proc: subprocess.Popen[bytes], layout: Layout, tail: _Tail, stop: _StopRequest, *, quiet: bool
) -> None:
    tty = sys.stdout.isatty()
    shown = ""
    while proc.poll() is None and not stop.requested:
        lines = tail.lines()
        if lines and tty and shown:
            print("\r\033[K", end="")
            shown = ""
        for line in lines:
            print(line, flush=True)
        state = State.load(layout)
        line = state.line if state is not None else ""
        if line and line != shown and not quiet:
            if tty:
                print(f"\r\033[K{line}", end="", flush=True)
            else:
                print(line, flush=True)
            shown = line
        time.sleep(0.25)
    if tty and shown:
        print()


def _print_banner(layout: Layout) -> None:
    state = State.load(layout)
    keypair = json.loads(layout.keypair.read_text())
    endpoint = state.endpoint if state is not None else "?"
    print(
        "\nSorna is up.\n"
        f"  endpoint    {endpoint}\n"
        f"  console     {endpoint}/console/\n"
        f"  access key  {keypair['access_key']}\n"
        f"  secret key  {keypair['secret_key']}\n"
        f"  backend     {state.backend if state is not None else '?'}\n"
        f"  logs        {layout.logs}\n"
        "Try: sorna run python3 -c 'print(1)'\n",
        flush=True,
    )


def _running_message(layout: Layout) -> str:
    state = State.load(layout)
    where = f"at {state.endpoint}, pid {state.pid}" if state is not None else "(starting)"
    return (
        f"sorna up: Sorna is already running {where} for {layout.root}; "
        "`sorna status` reports, `sorna down` stops it"
    )


class DownCommand:
    help = "Stop the Sorna started by `sorna up` (kernels, agent, gateway, databases)."

    def configure(self, parser: argparse.ArgumentParser) -> None:
        _add_data_dir(parser)

    def __call__(self, args: argparse.Namespace) -> int:
        try:
            _, layout = _settings(args)
        except ConfigError as e:
            return _error("down", str(e))
        if not is_running(layout):
            print(f"Sorna is not running (data folder {layout.root}).")
            return EXIT_OK
        state = _wait_state(layout)
        if state is None:
            return _error("down", f"no state file in {layout.run}; stop the supervisor by hand")
        print(f"Stopping Sorna (pid {state.pid})...", flush=True)
        try:
            os.kill(state.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_WAIT
        while is_running(layout) or _alive(state.pid):
            if time.monotonic() > deadline:
                print(f"sorna down: still stopping after {STOP_WAIT:.0f} s", file=sys.stderr)
                return EXIT_FAILED
            time.sleep(0.1)
        print("Stopped.")
        return EXIT_OK


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, waiting for its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _wait_state(layout: Layout) -> State | None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = State.load(layout)
        if state is not None:
            return state
        time.sleep(0.1)
    return None


class StatusCommand:
    help = "Tell whether the Sorna of `sorna up` runs, where, and what it holds."

    def configure(self, parser: argparse.ArgumentParser) -> None:
        _add_data_dir(parser)

    def __call__(self, args: argparse.Namespace) -> int:
        try:
            _, layout = _settings(args)
        except ConfigError as e:
            return _error("status", str(e))
        if not is_running(layout):
            print(f"Sorna is not running (data folder {layout.root}).")
            return EXIT_NOT_RUNNING
        state = _wait_state(layout)
        if state is None:
            print(f"Sorna is starting (data folder {layout.root}).")
            return EXIT_OK
        print(f"Sorna is {state.phase} (pid {state.pid}, data folder {layout.root})")
        print(f"  endpoint  {state.endpoint}")
        if state.backend:
            print(f"  backend   {state.backend}: {state.backend_reason}")
        for name, pid in state.children.items():
            print(f"  {name:<9} pid {pid} (log: {layout.log(name)})")
        if state.line:
            print(f"  {state.line}")
        return EXIT_OK


UP: Final = UpCommand()
DOWN: Final = DownCommand()
STATUS: Final = StatusCommand()
