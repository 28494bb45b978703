"""``sorna run`` (and the ``lcc`` / ``lpython`` shortcuts): run code or files in a kernel."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
from pathlib import Path

from ..exceptions import KernelNotFound, SornaError
from ..kernel import AsyncKernel, ExecMode
from ..session import AsyncSession
from ..types import RunResult, RunStatus
from .common import EXIT_OK, EXIT_PROGRAM_FAILED, UsageError
from .output import ConsoleWriter, Status
from .prompt import TerminalInput


def add_run_arguments(parser: argparse.ArgumentParser, *, with_lang: bool = True) -> None:
    """The options of ``sorna run`` (shared with the shortcuts, which fix the language)."""
    if with_lang:
        parser.add_argument("lang", metavar="LANG", help="kernel language, e.g. python3, c, cpp")
    parser.add_argument(
        "files",
        metavar="FILE",
        nargs="*",
        type=Path,
        help="files to upload into /home/work (named relative to the current directory); "
        "without -c they are built and run in batch mode",
    )
    parser.add_argument("-c", "--code", metavar="CODE", help="code to run in query mode")
    parser.add_argument(
        "--build",
        metavar="CMD",
        default="*",
        help="batch build command: '*' the kernel's default build (default), '' none, "
        "or a shell command",
    )
    parser.add_argument(
        "--exec",
        metavar="CMD",
        default=None,
        help="batch run command: '*' the kernel's default run (default; for python kernels "
        "'python3 FILE' of the first FILE unless it is main.py), or a shell command",
    )
    parser.add_argument(
        "-t",
        "--token",
        metavar="TOKEN",
        help="client session token (4-64 of [A-Za-z0-9._-]): reuse the live kernel of this "
        "token, or create one kept for later runs",
    )
    parser.add_argument(
        "--rm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="destroy the kernel afterwards (default: yes for a fresh session, no with -t)",
    )
    parser.add_argument(
        "--download",
        metavar="DIR",
        type=Path,
        help="download the files the run wrote under /home/work into DIR",
    )
    parser.add_argument(
        "--media-dir",
        metavar="DIR",
        type=Path,
        help="where media and html output are saved (default: a new temporary directory); "
        "each saved path is printed on stderr",
    )
    parser.add_argument("--max-mem", metavar="KIB", type=int, help="kernel memory limit in KiB")
    parser.add_argument(
        "--exec-timeout", metavar="MS", type=int, help="execution time limit in milliseconds"
    )


async def run_command(args: argparse.Namespace, session: AsyncSession, status: Status) -> int:
    """Create (or reuse) a kernel, upload, run with streamed output; the exit status says how."""
    lang: str = args.lang
    files: list[Path] = args.files
    if args.code is None and not files:
        raise UsageError("give code with -c CODE, or FILE... to build and run")
    for path in files:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
    remove = args.rm if args.rm is not None else args.token is None

    status(f"creating a {lang} kernel")
    kernel = await AsyncKernel.get_or_create(
        lang, args.token, args.max_mem, args.exec_timeout, session=session
    )
    writer = ConsoleWriter(media_dir=args.media_dir, show_logs=not args.quiet)
    try:
        if files:
            status(f"uploading {len(files)} file(s)")
            await kernel.upload(files)
        status("running")
        try:
            if args.code is not None:
                result = await kernel.run(args.code, on_input=TerminalInput(), on_output=writer)
            else:
                opts = {"build": args.build, "exec": _exec_command(args.exec, lang, files)}
                result = await kernel.run(
                    mode=ExecMode.BATCH, opts=opts, on_input=TerminalInput(), on_output=writer
                )
        except asyncio.CancelledError:
            # Ctrl-C: stop the program too, even in a kernel that is kept.
            with contextlib.suppress(SornaError):
                await kernel.interrupt()
            raise
        if args.download is not None:
            await _download(kernel, result, args.download)
        elif result.files:
            status(f"{len(result.files)} output file(s) (fetch them with --download DIR)")
    finally:
        if remove:
            try:
                await kernel.destroy()
            except KernelNotFound:
                pass
    if not remove and args.token is None:
        print(
            f"sorna: kernel {kernel.kernel_id} kept; reuse it with -t {kernel.client_token}",
            file=sys.stderr,
        )
    if result.status == RunStatus.EXEC_TIMEOUT:
        print("sorna: the program passed its execution time limit", file=sys.stderr)
    if result.failed:
        code = result.exit_code
        status("failed" + (f" (exit status {code})" if code is not None else ""))
        return EXIT_PROGRAM_FAILED
    status("done")
    return EXIT_OK


def _exec_command(given: str | None, lang: str, files: list[Path]) -> str:
    if given is not None:
        return given
    # The python kernels' default run is main.py; a single script is run by its own name.
    if lang.startswith("py") and files and files[0].name != "main.py":
        return "python3 " + shlex.quote(files[0].name)
    return "*"


async def _download(kernel: AsyncKernel, result: RunResult, dest: Path) -> None:
    for name, target in _download_targets(result, dest):
        saved = await kernel.download(name, target)
        print(f"[downloaded {name} to {saved}]", file=sys.stderr)


def _download_targets(result: RunResult, dest: Path) -> list[tuple[str, Path]]:
    """Where each output file goes under ``dest`` (made ready); names escaping it are skipped."""
    root = dest.resolve()
    targets = []
    for file in result.files:
        target = (root / file.name).resolve()
        if not target.is_relative_to(root):
            print(f"sorna: skipped {file.name!r}: outside {dest}", file=sys.stderr)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        targets.append((file.name, target))
    return targets
