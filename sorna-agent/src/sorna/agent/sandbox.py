"""The local backend's sandbox: bubblewrap namespaces around each kernel, as its own uid.

When the agent is root a sandboxed kernel is started as::

    bwrap --unshare-{ipc,pid,net,uts,cgroup} ... -- setpriv --reuid U --regid U ... -- jail ...

bwrap runs as root (so it can bind folders that sit below private ones, such as an
interpreter under ``/root``) with only the capabilities ``setpriv`` needs, and ``setpriv``,
inside, drops to the kernel's own unprivileged uid with no capabilities, an empty bounding
set, no supplementary groups and ``no_new_privs``. An agent that is not root runs bwrap alone
in a fresh unprivileged user namespace (``--unshare-user --disable-userns``), as its own uid.

Either way the kernel has fresh mount, IPC, PID, network (loopback only), UTS and cgroup
namespaces and sees only read-only system folders, a minimal ``/etc`` with its own user, the
interpreter and the Sorna packages its daemon imports, a fresh ``/proc``, a minimal ``/dev``,
size-capped private ``/tmp`` and ``/dev/shm``, and, writable, its work folder and REPL socket
folder at their host paths. Nothing else of the host (other kernels, the data folder, home
folders, sockets) exists for it.

:func:`local_sandbox_problem` says why this host cannot give the sandbox (None when it can).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sorna.repl.localkernel import KERNELS_DIR, Launch, daemon_argv

#: The bubblewrap program the agent runs by default (Debian's ``bubblewrap``).
DEFAULT_BWRAP = Path("/usr/bin/bwrap")
#: Top-level host paths that are symlinks into /usr on merged-/usr systems, else bound.
_TOP_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Host /etc entries a language runtime reads (all read-only; missing ones are skipped).
_ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "localtime",
    "timezone",
    "alternatives",
    "ssl",
    "ca-certificates",
    "fonts",
    "mime.types",
    "bash.bashrc",
    "profile",
    "inputrc",
)
#: util-linux programs the sandbox uses (setpriv runs inside it, from its read-only /usr).
SETPRIV = "/usr/bin/setpriv"
PRLIMIT = "/usr/bin/prlimit"
#: The Sorna packages kernels import (the daemons, and the media library of python3 kernels),
#: found without importing them: editable installs keep them outside the interpreter's prefix.
KERNEL_SIDE_PACKAGES = (
    "sorna.repl",
    "sorna.common",
    "sorna.types",
    "sorna.drawing",
    "sorna.display",
    "sorna.matplotlib",
)
#: How long the probe's trial sandbox may take.
PROBE_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """What one kernel's sandbox holds."""

    #: The kernel's host uid and gid (the agent's own when it is not root).
    uid: int
    gid: int
    #: Writable folders, bound at their host paths (work folder, REPL socket folder).
    writable: tuple[Path, ...]
    #: Extra read-only paths bound at their host paths (e.g. the jail policy file).
    readable: tuple[Path, ...] = ()
    #: Size of the private /tmp and /dev/shm (bytes each).
    tmp_bytes: int = 64 << 20
    #: Working folder inside the sandbox.
    chdir: Path | None = None


def runtime_paths(lang: str) -> list[Path]:
    """Host paths ``lang``'s daemon reads: interpreter prefixes, Sorna packages, its folder."""
    paths: list[Path] = []
    program = Path(daemon_argv(lang)[0])
    paths.append(Path(os.path.abspath(program)).parent)
    paths.append(program.resolve().parent)
    if program.resolve().parent.name == "bin":
        paths.append(program.resolve().parent.parent)
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        paths.append(Path(prefix))
    # Only the packages the daemons import, never the whole checkout (a data folder or the
    # admin keypair may sit beside them).
    for name in KERNEL_SIDE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            paths.extend(Path(p).resolve() for p in spec.submodule_search_locations)
    paths.append((KERNELS_DIR / lang).resolve())
    return _outermost(paths)


def _outermost(paths: Sequence[Path]) -> list[Path]:
    """``paths`` without duplicates, those below another one, and missing ones."""
    found = sorted({p for p in paths if p.exists() and str(p) != "/"}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in found:
        if not any(p == k or k in p.parents for k in kept) and not _system_path(p):
            kept.append(p)
    return kept


def _system_path(p: Path) -> bool:
    """True for paths the sandbox already binds as system folders (/usr and below)."""
    return p == Path("/usr") or Path("/usr") in p.parents


def passwd_entries(uid: int, gid: int) -> tuple[bytes, bytes]:
    """The sandbox's /etc/passwd and /etc/group: root, nobody and the kernel's user."""
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"work:x:{uid}:{gid}:Sorna kernel:/tmp:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\nwork:x:{gid}:\nnogroup:x:65534:\n"
    return passwd.encode(), group.encode()


def read_globs(lang: str, spec: SandboxSpec) -> list[str]:
    """Jail read rules matching what the sandbox shows (so the jail denies the rest too)."""
    roots = ["/usr", "/etc", "/proc", "/dev", "/tmp"]
    roots += [p for p in _TOP_LINKS if os.path.exists(p)]
    roots += [str(p) for p in runtime_paths(lang)]
    roots += [str(p) for p in (*spec.writable, *spec.readable)]
    globs: list[str] = ["/"]
    for root in roots:
        # The folders on the way hold nothing but the mounts (imports list them).
        globs += [str(a) for a in Path(root).parents if str(a) != "/" and str(a) not in globs]
        globs += [root, f"{root}/**"]
    return globs


class _Fds:
    """Pipes holding generated files for one launch; closed once the child has its copies."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def data(self, content: bytes) -> int:
        read, write = os.pipe()
        self.fds.append(read)
        try:
            os.write(write, content)  # small: fits in the pipe's buffer
        finally:
            os.close(write)
        return read

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _namespaces(as_root: bool) -> list[str]:
    common = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    common += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if as_root:
        # bwrap runs as root (it must reach folders below private ones, e.g. an interpreter
        # under /root) and keeps only what setpriv needs to drop to the kernel's uid.
        keep = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
        return [*common, *(arg for cap in keep for arg in ("--cap-add", cap))]
    return ["--unshare-user", "--disable-userns", *common]


def _bind(args: list[str], made: set[str], option: str, path: Path) -> None:
    """Bind ``path`` at its host path, making its missing parents traversable (0755)."""
    for parent in reversed(path.parents):
        name = str(parent)
        if name not in made:
            made.add(name)
            args += ["--perms", "0755", "--dir", name]
    made.add(str(path))
    args += [option, str(path), str(path)]


def _bwrap_args(lang: str | None, spec: SandboxSpec, fds: _Fds, as_root: bool) -> list[str]:
    args = [*_namespaces(as_root), "--hostname", "sorna", "--ro-bind", "/usr", "/usr"]
    for top in _TOP_LINKS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC_ENTRIES:
        host = Path("/etc") / name
        if host.exists():
            args += ["--ro-bind", str(host), str(host)]
    passwd, group = passwd_entries(spec.uid, spec.gid)
    args += ["--ro-bind-data", str(fds.data(passwd)), "/etc/passwd"]
    args += ["--ro-bind-data", str(fds.data(group)), "/etc/group"]
    args += ["--ro-bind-data", str(fds.data(b"127.0.0.1 localhost sorna\n")), "/etc/hosts"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    size = str(spec.tmp_bytes)
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    made = {"/", "/usr", "/etc", "/proc", "/dev", "/tmp", "/dev/shm"}
    for path in runtime_paths(lang) if lang is not None else []:
        _bind(args, made, "--ro-bind", path)
    for path in spec.readable:
        _bind(args, made, "--ro-bind", path)
    for path in spec.writable:
        _bind(args, made, "--bind", path)
    if spec.chdir is not None:
        args += ["--chdir", str(spec.chdir)]
    return args


def _privilege_drop(spec: SandboxSpec) -> list[str]:
    """``setpriv`` to the kernel's uid, inside the sandbox (only when the agent is root)."""
    return [
        SETPRIV,
        f"--reuid={spec.uid}",
        f"--regid={spec.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


@contextlib.contextmanager
def sandboxed(
    bwrap: Path, lang: str | None, spec: SandboxSpec, argv: list[str], env: Mapping[str, str]
) -> Iterator[Launch]:
    """The launch of ``argv`` inside ``spec``'s sandbox; its descriptors close on exit."""
    if spec.uid == 0 or spec.gid == 0:
        raise ValueError("a sandboxed kernel never runs as root")
    as_root = os.geteuid() == 0
    fds = _Fds()
    try:
        inner = [*_privilege_drop(spec), *argv] if as_root else argv
        full = [str(bwrap), *_bwrap_args(lang, spec, fds, as_root), "--", *inner]
        yield Launch(argv=full, env=dict(env), pass_fds=tuple(fds.fds))
    finally:
        fds.close()


def local_sandbox_problem(bwrap: Path = DEFAULT_BWRAP, probe_uid: int = 65534) -> str | None:
    """Why this host cannot sandbox local kernels (None: it can).

    Runs a trial sandbox like a kernel's (same namespaces, same privilege drop, as
    ``probe_uid`` when the agent is root) around ``/bin/true``.
    """
    if not (bwrap.is_file() and os.access(bwrap, os.X_OK)):
        return f"bubblewrap is not installed at {bwrap} (Debian package bubblewrap)"
    for program in (SETPRIV, PRLIMIT):
        if not os.access(program, os.X_OK):
            return f"{program} is not installed (Debian package util-linux)"
    uid = probe_uid if os.geteuid() == 0 else os.getuid()
    gid = probe_uid if os.geteuid() == 0 else os.getgid()
    with tempfile.TemporaryDirectory(prefix="sorna-probe-") as tmp:
        if os.geteuid() == 0:
            os.chown(tmp, uid, gid)
        spec = SandboxSpec(uid=uid, gid=gid, writable=(Path(tmp),), tmp_bytes=1 << 20)
        true = shutil.which("true") or "/bin/true"
        try:
            with sandboxed(bwrap, None, spec, [true], {"PATH": "/usr/bin:/bin"}) as launch:
                done = subprocess.run(
                    launch.argv,
                    env=launch.env,
                    pass_fds=launch.pass_fds,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=PROBE_TIMEOUT,
                    check=False,
                )
        except (OSError, subprocess.TimeoutExpired, ValueError) as e:
            return f"cannot run bubblewrap: {e}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        return f"bubblewrap cannot make a sandbox here: {why[-1] if why else done.returncode}"
    return None


__all__ = [
    "DEFAULT_BWRAP",
    "SandboxSpec",
    "local_sandbox_problem",
    "passwd_entries",
    "read_globs",
    "runtime_paths",
    "sandboxed",
]
