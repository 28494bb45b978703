"""The ``sorna`` command line, and the ``lcc`` / ``lpython`` shortcuts.

Exit statuses: 0 success, 1 the user program failed, 2 an API, configuration or usage error
(one line on stderr: ``sorna: error: ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from .. import __version__
from ..config import ENV_VARS, load_config
from ..exceptions import SornaError
from ..session import AsyncSession
from .commands import (
    ADMIN_LISTINGS,
    admin_command,
    download_command,
    info_command,
    ls_command,
    ps_command,
    terminate_command,
    upload_command,
)
from .common import EXIT_ERROR
from .output import Status
from .plugins import add_external_commands
from .run import add_run_arguments, run_command
from .shell import shell_command

Handler = Callable[[argparse.Namespace, AsyncSession, Status], Awaitable[int]]

EPILOG = (
    "Credentials: "
    + ", ".join(ENV_VARS.values())
    + " (or ~/.config/sorna/client.toml). Exit status: 0 success, 1 the program failed, "
    "2 API, configuration or usage error."
)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--endpoint", metavar="URL", help=f"API endpoint (overrides {ENV_VARS['endpoint']})"
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", help="no status lines on stderr, no kernel logs"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``sorna`` parser: one subcommand per action, each with its own ``--help``."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="sorna",
        description="Run code in Sorna kernels and manage them.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"sorna-client {__version__}")
    parser.set_defaults(external=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, parents=[common], help=help_text, description=help_text, epilog=EPILOG
        )
        p.set_defaults(handler=handler)
        return p

    run = command(
        "run",
        run_command,
        "Run code (-c CODE, query mode) or files (FILE..., uploaded, built and run in batch "
        "mode) in a kernel, streaming its output.",
    )
    add_run_arguments(run)

    command("ps", ps_command, "List live kernels (needs an admin keypair).")

    p = command("terminate", terminate_command, "Destroy kernels.")
    p.add_argument("kernel_ids", metavar="ID", nargs="+", help="kernel id")

    p = command("info", info_command, "Show a kernel's language, age and resource usage.")
    p.add_argument("kernel_id", metavar="ID", help="kernel id")

    p = command("upload", upload_command, "Upload files into a kernel's /home/work.")
    p.add_argument("kernel_id", metavar="ID", help="kernel id")
    p.add_argument("files", metavar="FILE", nargs="+", type=Path, help="local file")

    p = command("download", download_command, "Download files from a kernel's /home/work.")
    p.add_argument("kernel_id", metavar="ID", help="kernel id")
    p.add_argument("paths", metavar="PATH", nargs="+", help="path under /home/work")
    p.add_argument(
        "-o", "--output", metavar="DIR", type=Path, default=Path("."), help="where to save"
    )

    p = command("ls", ls_command, "List files under a kernel's /home/work.")
    p.add_argument("kernel_id", metavar="ID", help="kernel id")
    p.add_argument("path", metavar="PATH", nargs="?", default=".", help="directory (default .)")

    p = command(
        "shell",
        shell_command,
        "Open an interactive terminal on a tty kernel (such as shell) through the WebSocket. "
        "Ctrl-] ends the session; with piped input it ends once the input is used up and the "
        "remote side is quiet.",
    )
    p.add_argument("lang", metavar="LANG", nargs="?", default="shell", help="default: shell")
    p.add_argument("-t", "--token", metavar="TOKEN", help="reuse the live kernel of this token")
    p.add_argument(
        "--rm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="destroy the kernel afterwards (default: yes for a fresh session, no with -t)",
    )

    p = command("admin", admin_command, "Service-wide listings (needs an admin keypair).")
    p.add_argument("what", choices=sorted(ADMIN_LISTINGS), help="what to list")

    def external(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, parents=[common], help=help_text, description=help_text, epilog=EPILOG
        )

    add_external_commands(sub, external)
    return parser


def build_shortcut_parser(prog: str, lang: str) -> argparse.ArgumentParser:
    """The parser of ``lcc`` / ``lpython``: ``sorna run LANG FILE...`` with LANG fixed."""
    parser = argparse.ArgumentParser(
        prog=prog,
        parents=[_common_options()],
        description=f"Upload FILE..., build and run them in a Sorna {lang} kernel "
        f"(the same as `sorna run {lang} FILE...`).",
        epilog=EPILOG,
    )
    add_run_arguments(parser, with_lang=False)
    parser.set_defaults(handler=run_command, lang=lang, external=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sorna`` with ``argv`` (default: the process arguments); returns the exit status."""
    return execute(build_parser().parse_args(argv))


def execute(args: argparse.Namespace) -> int:
    """Run a parsed command; SornaError becomes one line on stderr and status 2."""
    external = args.external
    if external is not None:  # another package's command: it loads what it needs itself
        try:
            return int(external(args))
        except KeyboardInterrupt:
            print("sorna: interrupted", file=sys.stderr)
            return 130
    status = Status.for_terminal(args.quiet)
    try:
        config = load_config(endpoint=args.endpoint)
        return asyncio.run(_run_handler(args.handler, args, AsyncSession(config), status))
    except SornaError as e:
        print(f"sorna: error: {' '.join(str(e).split())}", file=sys.stderr)
        status("failed")
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("sorna: interrupted", file=sys.stderr)
        return 130


async def _run_handler(
    handler: Handler, args: argparse.Namespace, session: AsyncSession, status: Status
) -> int:
    async with session:
        return await handler(args, session, status)


def console_main() -> None:
    """Entry point of the ``sorna`` console script."""
    sys.exit(main())


def lcc_main() -> None:
    """Entry point of ``lcc``: build and run C files."""
    sys.exit(execute(build_shortcut_parser("lcc", "c").parse_args()))


def lpython_main() -> None:
    """Entry point of ``lpython``: run Python files."""
    sys.exit(execute(build_shortcut_parser("lpython", "python3").parse_args()))
