"""Kernels as sandboxed child processes of the agent (no Docker).

Each kernel is :func:`sorna.repl.localkernel.local_kernel` held open for the kernel's life:
the language daemon under the jail, inside a bubblewrap sandbox (:mod:`sorna.agent.sandbox`)
as a host uid of its own, with its REPL sockets in its ipc folder and its scratch folder at
its host path, both writable and the only places it can write. Memory is bounded with
``RLIMIT_DATA`` on the daemon.

Where the host cannot sandbox (no bubblewrap, user namespaces refused) the backend refuses to
start, unless ``unsafe`` allows kernels that run unconfined beyond the jail (with a warning).

The jail policy and the daemon's log live in a state folder per kernel that the kernel cannot
see; a kernel left running by an agent that was killed is found on start (its command line
names its ipc folder) and ended, and its state folder is reported as a leftover.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from sorna.common.ids import KernelId
from sorna.common.messages import KernelUsage
from sorna.common.types import TerminationReason
from sorna.repl.client import ReplClient
from sorna.repl.kernelspec import kernel_specs
from sorna.repl.localkernel import LocalKernelError, daemon_argv, local_kernel
from sorna.repl.runner import descendants

from .backend import Endpoint, ExitCallback, KernelBackend, KernelSpec
from .errors import KernelCreationFailed, LocalSandboxUnavailable
from .images import ImageInfo
from .sandbox import (
    DEFAULT_BWRAP,
    PRLIMIT,
    SETPRIV,
    SandboxSpec,
    local_sandbox_problem,
    read_globs,
    sandboxed,
)
from .stats import read_process_tree

log = logging.getLogger(__name__)

#: How often a local kernel's process is checked for life.
WATCH_INTERVAL = 0.25
#: How long destroy waits for a kernel's processes to be gone after killing them.
GONE_TIMEOUT = 5.0
GONE_POLL = 0.02
#: What the warning of an unsandboxed backend says (the terminal shows it too).
UNSAFE_WARNING = (
    "local backend WITHOUT a sandbox (unsafe_local_backend): kernels run as child processes "
    "of the agent with its privileges and can read and change this host"
)


@dataclass
class _LocalKernel:
    stack: contextlib.AsyncExitStack
    root_pid: int
    watcher: asyncio.Task[None] | None = None
    peak: KernelUsage = field(default_factory=KernelUsage)


def _proc_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _pids_with(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (a kernel's socket folder)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class LocalBackend(KernelBackend):
    """Kernels as local, sandboxed and jailed child processes."""

    name = "local"

    def __init__(
        self,
        *,
        ipc_root: Path,
        state_root: Path,
        jail: bool = True,
        bwrap: Path = DEFAULT_BWRAP,
        unsafe: bool = False,
        uid_base: int = 200_000,
        uid_count: int = 1000,
        tmp_bytes: int = 64 << 20,
    ) -> None:
        if uid_base < 1000 or uid_count < 1:
            raise ValueError("the local kernels' uid range must start at 1000 or above")
        self._jail = jail
        self._ipc_root = ipc_root
        self._state_root = state_root
        self._bwrap = bwrap
        self._unsafe = unsafe
        self._uid_base = uid_base
        self._uid_count = uid_count
        self._tmp_bytes = tmp_bytes
        self._root = os.geteuid() == 0
        self._sandbox = False
        self._uids: dict[KernelId, int] = {}
        self._kernels: dict[KernelId, _LocalKernel] = {}
        self._on_exit: ExitCallback | None = None

    @property
    def sandboxed(self) -> bool:
        """Whether kernels run in the sandbox (False only when unsafe was allowed)."""
        return self._sandbox

    async def start(self, on_exit: ExitCallback) -> None:
        problem = await asyncio.to_thread(local_sandbox_problem, self._bwrap, self._uid_base)
        if problem is not None and not self._unsafe:
            raise LocalSandboxUnavailable(
                f"local backend refused: {problem}; set unsafe_local_backend to run local "
                "kernels without a sandbox (unsafe)"
            )
        self._sandbox = problem is None
        if not self._sandbox:
            log.warning("%s (%s)", UNSAFE_WARNING, problem)
        self._state_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self._state_root, 0o700)
        await asyncio.to_thread(self._end_orphans, str(self._ipc_root) + "/")
        self._on_exit = on_exit

    async def close(self) -> None:
        for kernel_id in list(self._kernels):
            await self.destroy(kernel_id)

    async def images(self) -> dict[str, ImageInfo]:
        found: dict[str, ImageInfo] = {}
        for lang, spec in kernel_specs().items():
            try:
                daemon_argv(lang)
            except LocalKernelError:
                continue
            info = ImageInfo.from_labels(f"local:{lang}", spec.labels())
            if info is not None:
                found[lang] = info
        return found

    # -- uids ----------------------------------------------------------------------------

    def work_uid(self, spec: KernelSpec) -> int | None:
        """The kernel's own uid (allocated on first ask; the agent's own when not root)."""
        if not (self._sandbox and self._root):
            return None
        uid = self._uids.get(spec.kernel_id)
        if uid is None:
            taken = set(self._uids.values())
            free = (u for u in range(self._uid_base, self._uid_base + self._uid_count))
            uid = next((u for u in free if u not in taken), None)
            if uid is None:
                raise KernelCreationFailed(f"all {self._uid_count} local kernel uids are in use")
            self._uids[spec.kernel_id] = uid
        return uid

    def _ids(self, spec: KernelSpec) -> tuple[int, int]:
        uid = self.work_uid(spec)
        return (uid, uid) if uid is not None else (os.getuid(), os.getgid())

    def _owned(self, pid: int) -> bool:
        """Whether ``pid`` runs as one of our kernels' uids (so it may be ended)."""
        uid = _proc_uid(pid)
        if uid is None:
            return False
        if pid == os.getpid():
            return False
        return uid == os.getuid() or (
            self._root and self._uid_base <= uid < self._uid_base + self._uid_count
        )

    # -- lifecycle -----------------------------------------------------------------------

    def _box(self, spec: KernelSpec, statedir: Path) -> SandboxSpec:
        uid, gid = self._ids(spec)
        readable: list[Path] = []
        if self._jail:
            from sorna.repl.jailbin import jail_path  # built on demand; only needed here

            readable = [statedir / "policy.json", jail_path()]
        work = spec.scratch.root.resolve()
        return SandboxSpec(
            uid=uid,
            gid=gid,
            writable=(work, spec.ipc_dir.resolve()),
            readable=tuple(readable),
            tmp_bytes=self._tmp_bytes,
            chdir=work,
        )

    async def create(self, spec: KernelSpec) -> Endpoint:
        stack = contextlib.AsyncExitStack()
        env = {name: str(len(spec.cores)) for name in spec.image.corecount_envs}
        statedir = self._state_root / spec.kernel_id
        try:
            box = self._box(spec, statedir) if self._sandbox else None
            await asyncio.to_thread(_fresh_dir, statedir)
            stack.callback(shutil.rmtree, statedir, True)
            client: ReplClient = await stack.enter_async_context(
                local_kernel(
                    spec.lang,
                    workdir=spec.scratch.root,
                    jail=self._jail,
                    env=env,
                    sockdir=spec.ipc_dir.resolve(),
                    statedir=statedir,
                    launcher=functools.partial(sandboxed, self._bwrap, spec.lang, box)
                    if box is not None
                    else None,
                    read=read_globs(spec.lang, box) if box is not None else None,
                )
            )
        except (LocalKernelError, OSError, ValueError) as e:
            await stack.aclose()
            self._uids.pop(spec.kernel_id, None)
            raise KernelCreationFailed(f"{spec.lang} kernel: {e}") from None
        # The client is only how local_kernel reports the socket folder; the agent links itself.
        client.close()
        pids = _pids_with(str(spec.ipc_dir.resolve()) + "/")
        # The daemon and the jail (set once they run: the jail's runtime needs more than a
        # small kernel's heap to start); not bwrap, which runs as root.
        limited = [
            p
            for p in pids
            if b"--input" in _cmdline(p) and (box is None or _proc_uid(p) == box.uid)
        ]
        mem = spec.limits.mem_kib * 1024
        await asyncio.gather(*(_limit(p, mem, box.uid if box else None) for p in limited))
        me = os.getpid()
        root = next((p for p in pids if _ppid(p) == me), pids[0] if pids else -1)
        kernel = _LocalKernel(stack=stack, root_pid=root)
        self._kernels[spec.kernel_id] = kernel
        kernel.watcher = asyncio.create_task(self._watch(spec.kernel_id, kernel))
        return Endpoint(client.input_addr, client.output_addr)

    async def restart(self, spec: KernelSpec) -> Endpoint:
        await self._stop(spec.kernel_id)  # keeps the uid: the scratch folder stays its own
        return await self.create(spec)

    async def destroy(self, kernel_id: KernelId) -> None:
        await self._stop(kernel_id)
        self._uids.pop(kernel_id, None)

    async def _stop(self, kernel_id: KernelId) -> None:
        kernel = self._kernels.pop(kernel_id, None)
        if kernel is None:
            return
        if kernel.watcher is not None:
            kernel.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kernel.watcher
        tree = descendants(kernel.root_pid) if kernel.root_pid > 0 else []
        await kernel.stack.aclose()
        # The sandbox's processes die with its init, asynchronously: destroy returns once
        # they are gone, so that nothing of the kernel outlives it.
        for _ in range(int(GONE_TIMEOUT / GONE_POLL)):
            if not any(_alive(pid) for pid in tree):
                break
            await asyncio.sleep(GONE_POLL)

    async def usage(self, kernel_id: KernelId) -> KernelUsage | None:
        kernel = self._kernels.get(kernel_id)
        if kernel is None or not _alive(kernel.root_pid):
            return None
        usage = await asyncio.to_thread(read_process_tree, descendants(kernel.root_pid))
        if usage is None:
            return None
        kernel.peak = kernel.peak.merged(usage)
        return kernel.peak

    async def _watch(self, kernel_id: KernelId, kernel: _LocalKernel) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if not _alive(kernel.root_pid):
                break
        log.info("local kernel %s: daemon process %d ended", kernel_id, kernel.root_pid)
        kernel.watcher = None
        if self._on_exit is not None:
            self._on_exit(kernel_id, TerminationReason.EXITED)

    # -- a previous life -----------------------------------------------------------------

    def _end_orphans(self, marker: str) -> int:
        """Kill every process (and its tree) of ours whose command line names ``marker``."""
        ended = 0
        for pid in _pids_with(marker):
            if not self._owned(pid):
                continue
            for victim in descendants(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(victim, signal.SIGKILL)
            ended += 1
        if ended:
            log.warning("ended %d process(es) of local kernels of a previous agent", ended)
        return ended

    async def adoptable(self) -> tuple[list[KernelSpec], list[str]]:
        """Local kernels are never adopted: those of a previous life are leftovers."""
        try:
            names = sorted(p.name for p in self._state_root.iterdir() if p.is_dir())
        except FileNotFoundError:
            names = []
        return [], names

    async def remove_leftover(self, ref: str) -> None:
        if "/" in ref or ref in ("", ".", ".."):
            return
        await asyncio.to_thread(self._end_orphans, str(self._ipc_root / ref) + "/")
        await asyncio.to_thread(shutil.rmtree, self._state_root / ref, True)


def _fresh_dir(path: Path) -> None:
    """An empty state folder of the agent's alone (bwrap, run by the agent, binds from it)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


async def _limit(pid: int, mem_bytes: int, uid: int | None) -> None:
    """Bound a daemon's heap (and what it forks later) and forbid core dumps.

    An agent without CAP_SYS_RESOURCE (root in a container) cannot set the limits of
    another uid's process: it then sets them as the kernel's uid, with util-linux prlimit.
    """
    try:
        resource.prlimit(pid, resource.RLIMIT_DATA, (mem_bytes, mem_bytes))
        resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))
        return
    except PermissionError as e:
        if uid is None:
            log.warning("local kernel process %d: cannot set rlimits: %s", pid, e)
            return
    except (OSError, ValueError) as e:
        log.warning("local kernel process %d: cannot set rlimits: %s", pid, e)
        return
    proc = await asyncio.create_subprocess_exec(
        SETPRIV,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--",
        PRLIMIT,
        f"--pid={pid}",
        f"--data={mem_bytes}:{mem_bytes}",
        "--core=0:0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        log.warning("local kernel process %d: cannot set rlimits: %s", pid, err.decode().strip())
