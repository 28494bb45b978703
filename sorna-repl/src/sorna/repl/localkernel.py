"""Run a language daemon as a local child process (the agent's ``local`` backend, and tests).

:func:`local_kernel` starts ``kernels/<lang>/run.py`` (or ``run.js``) with ``ipc://`` sockets
in a fresh temporary folder, under the jail unless told otherwise, and yields a connected
:class:`~sorna.repl.client.ReplClient`. On exit it stops the daemon, kills every process it
left behind (user programs run in their own sessions, so the whole tree is collected first)
and removes the folder.

Errors: :class:`LocalKernelError` (no such daemon, or it died / never bound its sockets; the
message carries the tail of its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sorna.common.constants import REPL_INPUT_IPC_NAME, REPL_OUTPUT_IPC_NAME

from . import paths
from .client import ReplClient
from .kernelspec import KernelSpecError, kernel_specs
from .protocol import ENV_INPUT_ADDR, ENV_OUTPUT_ADDR, ENV_OUTPUT_LIMIT
from .runner import descendants

log = logging.getLogger(__name__)

#: Where the per-language folders (daemon, policy, examples) live.
KERNELS_DIR = paths.KERNELS_DIR
#: The folder that holds the ``sorna`` namespace this module was imported from.
_SRC_DIR = Path(__file__).resolve().parents[2]
#: PATH for jailed kernels (the image's default PATH).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: How long a daemon may take to bind its sockets.
START_TIMEOUT = 30.0
#: How long a daemon gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 3.0


#: Environment variables a sandboxed daemon is started with (besides Sorna's own).
SANDBOX_ENV_KEYS = ("LANG", "LC_ALL", "TERM", "TZ")


class LocalKernelError(Exception):
    """A local kernel could not be started."""


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start a daemon: the full command, its environment, descriptors it inherits."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()


#: Wraps a daemon's command (e.g. in a sandbox); the launch's descriptors stay open while
#: the context is, and the daemon is started inside it.
Launcher = Callable[[list[str], dict[str, str]], contextlib.AbstractContextManager[Launch]]


def daemon_argv(lang: str) -> list[str]:
    """The command that runs ``lang``'s daemon (absolute program path, as the jail wants)."""
    try:
        spec = kernel_specs(KERNELS_DIR).get(lang)
    except KernelSpecError as e:
        raise LocalKernelError(str(e)) from None
    daemon = KERNELS_DIR / lang / spec.daemon if spec is not None else None
    if spec is None or daemon is None or not daemon.is_file():
        raise LocalKernelError(f"no daemon for language {lang!r} under {KERNELS_DIR}")
    if daemon.suffix == ".py":
        # A Python daemon runs on the runner's own interpreter (sorna.repl is installed there).
        return [sys.executable, str(daemon)]
    program = shutil.which(Path(spec.interpreter).name) or shutil.which(spec.interpreter)
    if program is None:
        raise LocalKernelError(f"{lang}: {Path(spec.interpreter).name} is not installed")
    return [program, str(daemon)]


def local_policy(
    lang: str, *, workdir: Path, sockdir: Path, read: list[str] | None = None
) -> dict[str, Any]:
    """``lang``'s jail policy, with paths moved from the image layout to this host's.

    ``read`` replaces the policy's read rules (a sandbox passes the folders it shows).
    """
    # A deep copy: the spec's policy is shared, read-only data.
    policy: dict[str, Any] = json.loads(json.dumps(kernel_specs(KERNELS_DIR)[lang].policy))
    rules = policy.setdefault("path_rules", {})
    if read is not None:
        rules["read"] = list(read)
    work = str(workdir.resolve())
    rules["write"] = [
        f"{work}/**",
        f"{sockdir}/**",
        "/tmp/**",
        "/dev/null",
        "/dev/tty",
        "/dev/ptmx",
        "/dev/pts/*",
        "/dev/shm/**",
        "pipe:*",
        "socket:*",
    ]
    program = Path(daemon_argv(lang)[0])
    execs = [g for g in rules.get("exec", []) if not g.startswith("/home/")]
    execs += [f"{work}/**", str(program), str(program.resolve()), f"{program.resolve().parent}/**"]
    rules["exec"] = execs
    envs = dict(policy.get("extra_envs") or {})
    # A system PATH: the jail denies exec outside its globs with EPERM, which stops
    # execvp's PATH walk at the first entry (e.g. ~/.cargo/bin) instead of moving on.
    envs.update({"HOME": work, "PYTHONPATH": str(_SRC_DIR), "PATH": SYSTEM_PATH})
    # The image's matplotlibrc (selecting the Sorna backend) lives beside the policy here.
    rc = KERNELS_DIR / lang / "matplotlibrc"
    if "MATPLOTLIBRC" in envs and rc.is_file():
        envs.update({"MATPLOTLIBRC": str(rc), "MPLCONFIGDIR": f"{sockdir}/matplotlib"})
    policy["extra_envs"] = envs
    return policy


def _kill_tree(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.asynccontextmanager
async def local_kernel(
    lang: str,
    *,
    workdir: Path,
    jail: bool = True,
    output_limit: int | None = None,
    env: Mapping[str, str] | None = None,
    sockdir: Path | None = None,
    statedir: Path | None = None,
    launcher: Launcher | None = None,
    read: list[str] | None = None,
) -> AsyncIterator[ReplClient]:
    """Start ``lang``'s daemon as a child process and yield a client connected to it.

    By default the REPL sockets, the jail policy and the daemon's log go to a fresh temporary
    folder removed on exit. The agent passes ``sockdir`` (the kernel's socket folder, only its
    sockets are removed), ``statedir`` (a folder the kernel cannot write, for the policy and
    log), ``launcher`` (the sandbox; the daemon then gets only Sorna's and the locale's
    environment variables) and ``read`` (the jail's read rules).
    """
    argv = daemon_argv(lang)
    own_dir = sockdir is None
    if sockdir is None:
        sockdir = Path(tempfile.mkdtemp(prefix="sorna-local-"))
    if statedir is None:
        statedir = sockdir
    input_addr = f"ipc://{sockdir / REPL_INPUT_IPC_NAME}"
    output_addr = f"ipc://{sockdir / REPL_OUTPUT_IPC_NAME}"
    argv += ["--input", input_addr, "--output", output_addr]
    if launcher is None:
        child_env = dict(os.environ)
    else:
        # The agent's environment (database URL, secrets) never reaches a sandboxed kernel.
        child_env = {k: os.environ[k] for k in SANDBOX_ENV_KEYS if k in os.environ}
        child_env["PATH"] = SYSTEM_PATH
    # The addresses go both ways a daemon may read them: arguments (run.py) and env (run.js).
    child_env[ENV_INPUT_ADDR] = input_addr
    child_env[ENV_OUTPUT_ADDR] = output_addr
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_SRC_DIR), child_env.get("PYTHONPATH", "")) if p
    )
    if output_limit is not None:
        argv += ["--output-limit", str(output_limit)]
        child_env[ENV_OUTPUT_LIMIT] = str(output_limit)
    if env:
        child_env.update(env)
    if jail:
        from .jailbin import jail_path  # the jail is built on demand; only needed here

        policy_file = statedir / "policy.json"
        policy = local_policy(lang, workdir=workdir, sockdir=sockdir, read=read)
        _write_new(policy_file, json.dumps(policy, indent=2).encode())
        argv = [str(jail_path()), "-policy", str(policy_file), "--", *argv]
    log_path = statedir / "daemon.log"
    proc: asyncio.subprocess.Process | None = None
    client: ReplClient | None = None
    try:
        with contextlib.ExitStack() as spawn:
            launch = (
                spawn.enter_context(launcher(argv, child_env))
                if launcher is not None
                else Launch(argv, child_env)
            )
            log_file = spawn.enter_context(_open_new(log_path))
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                cwd=workdir,
                env=launch.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                pass_fds=launch.pass_fds,
            )
        await _wait_ready(proc, sockdir, log_path)
        client = ReplClient(input_addr, output_addr)
        yield client
    finally:
        if client is not None:
            client.close()
        if proc is not None:
            await _stop(proc)
        if own_dir:
            shutil.rmtree(sockdir, ignore_errors=True)
        else:
            for name in (REPL_INPUT_IPC_NAME, REPL_OUTPUT_IPC_NAME):
                with contextlib.suppress(OSError):
                    (sockdir / name).unlink()


def _write_new(path: Path, data: bytes) -> None:
    """Replace ``path`` with a fresh file readable by all (the jail may run as another uid)."""
    with _open_new(path, 0o644) as f:
        f.write(data)


def _open_new(path: Path, mode: int = 0o600) -> Any:
    """A fresh file at ``path`` open for writing, never through a link planted in its place."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    os.fchmod(fd, mode)  # whatever the umask
    return os.fdopen(fd, "wb")


async def _wait_ready(proc: asyncio.subprocess.Process, sockdir: Path, log_path: Path) -> None:
    sockets = [sockdir / REPL_INPUT_IPC_NAME, sockdir / REPL_OUTPUT_IPC_NAME]
    deadline = time.monotonic() + START_TIMEOUT
    while not all(s.exists() for s in sockets):
        if proc.returncode is not None:
            raise LocalKernelError(
                f"kernel daemon exited with status {proc.returncode}:\n{_log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise LocalKernelError(
                f"kernel daemon did not bind within {START_TIMEOUT} s:\n{_log_tail(log_path)}"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.02)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the daemon, SIGKILL it if it lingers, then kill whatever it left behind."""
    tree = descendants(proc.pid) if proc.returncode is None else []
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("kernel daemon %d ignored SIGTERM; killing it", proc.pid)
    # Children run in their own sessions: kill them by pid, and the daemon's group too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _kill_tree(tree)
    await proc.wait()


__all__ = [
    "KERNELS_DIR",
    "SYSTEM_PATH",
    "Launch",
    "Launcher",
    "LocalKernelError",
    "daemon_argv",
    "local_kernel",
    "local_policy",
]
