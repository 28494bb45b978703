"""Build the kernel images ``sorna/kernel-<lang>:latest`` (``python -m sorna.repl.imagebuild``).

Runs on the host (where ``sorna.common`` is installed), never inside an image. Every image is
built from the one ``sorna-repl/kernels/Dockerfile.template``, filled in from the language's
``kernels/<lang>/kernel.toml`` (:mod:`sorna.repl.kernelspec`), on top of a base image:

* ``debian:bookworm-slim`` when the engine already has it; the template's first ``RUN`` then
  installs the language's Debian packages (that step needs network during the build);
* otherwise ``sorna/base:bookworm``, which this tool makes once with ``debootstrap
  --variant=minbase`` plus ``apt-get`` in a chroot and ``docker import`` (no registry needed),
  with the packages of ``kernels/base.toml`` inside; each language's layer installs what the
  base lacks. The base is cached and rebuilt only when its package list changes or
  ``--rebuild-base`` is given.

The build context is assembled in a temporary directory: the jail binary, the runner package
(``sorna.repl`` without its host-side modules, and ``sorna.common.constants``, the one module
of ``sorna.common`` the runtime reads), the language's policy (base.toml's policy with the
spec's diff) and daemon. The Dockerfile copies them in that order, so that a changed daemon
rebuilds only its own layer. The ``io.sorna.*`` labels come from the spec.

Errors: :class:`ImageBuildError` (one line, printed as ``error: ...`` by the CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from sorna.common import constants as C
from sorna.common.langs import image_name
from sorna.repl import kernelspec, paths
from sorna.repl.kernelspec import KernelSpec, KernelSpecError

log = logging.getLogger(__name__)

#: The public base image, used when the engine already has it.
DEBIAN_BASE: Final = "debian:bookworm-slim"
#: The base image this tool builds with debootstrap when no registry is reachable.
SORNA_BASE: Final = "sorna/base:bookworm"
#: Label on SORNA_BASE holding a digest of its package list (a changed list rebuilds it).
BASE_PACKAGES_LABEL: Final = "io.sorna.base.packages"
#: Debian suite of every base.
SUITE: Final = "bookworm"
DEFAULT_MIRROR: Final = "http://deb.debian.org/debian"
#: Modules of sorna.repl that run on the host only, never copied into an image (they import
#: sorna.common beyond its constants, and aiodocker).
HOST_ONLY_MODULES: Final = ("imagebuild*.py", "dockerkernel.py", "container.py")

#: The one Dockerfile of every kernel image, beside the language folders.
TEMPLATE_FILE: Final = "Dockerfile.template"

ProgressFn = Callable[[str], None]


class ImageBuildError(Exception):
    """An image could not be built; the message is one line meant for the user."""


def base_packages() -> list[str]:
    """The packages of SORNA_BASE (base.toml: the runner's and the preinstalled), sorted."""
    base = kernelspec.base_spec()
    return sorted({*base.runner_packages, *base.preinstalled_packages})


def base_packages_digest() -> str:
    return hashlib.sha256(" ".join(base_packages()).encode()).hexdigest()[:16]


def kernels_dir() -> Path:
    """The per-language folders (``sorna-repl/kernels``, or inside an installed wheel)."""
    return paths.KERNELS_DIR


def runner_package_dir() -> Path:
    """The ``sorna/repl`` package folder copied into images."""
    return Path(__file__).resolve().parent


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (so builds go where the host's network does)."""
    candidates = [Path("/etc/apt/sources.list")]
    src_d = Path("/etc/apt/sources.list.d")
    if src_d.is_dir():
        candidates += sorted(src_d.glob("*.list")) + sorted(src_d.glob("*.sources"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            m = re.search(r"(https?://\S+/debian)/?(\s|$)", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    return DEFAULT_MIRROR


# -- docker CLI ----------------------------------------------------------------------------


async def _run(
    *args: str,
    progress: ProgressFn | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    line_filter: Callable[[str], str | None] | None = None,
) -> str:
    """Run a command; stream filtered lines to ``progress``; return its output.

    Raise ImageBuildError with the last meaningful output line on failure.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    except FileNotFoundError:
        raise ImageBuildError(f"{args[0]} is not installed") from None
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        await proc.stdin.drain()
        proc.stdin.close()
    assert proc.stdout is not None
    lines: list[str] = []
    async for raw in proc.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip()
        lines.append(line)
        if progress is not None and line:
            shown = line_filter(line) if line_filter else line
            if shown:
                progress(shown)
    rc = await proc.wait()
    if rc != 0:
        tail = [ln.strip() for ln in lines if ln.strip()]
        reason = tail[-1] if tail else f"exit status {rc}"
        raise ImageBuildError(f"{Path(args[0]).name} {args[1]} failed: {reason}")
    return "\n".join(lines)


async def image_exists(ref: str) -> bool:
    """True if the engine has image ``ref``."""
    try:
        await _run("docker", "image", "inspect", "--format", "{{.Id}}", ref)
    except ImageBuildError:
        return False
    return True


async def image_labels(ref: str) -> dict[str, str]:
    """The labels of image ``ref`` (empty if it has none)."""
    out = await _run("docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref)
    labels = json.loads(out.strip() or "null")
    return dict(labels or {})


async def check_engine() -> None:
    """Raise ImageBuildError unless a Docker engine answers."""
    try:
        await _run("docker", "version", "--format", "{{.Server.Version}}")
    except ImageBuildError as e:
        raise ImageBuildError(f"no Docker engine answers ({e})") from None


# -- base image ----------------------------------------------------------------------------


async def build_sorna_base(progress: ProgressFn) -> None:
    """Build SORNA_BASE with debootstrap + chroot apt-get + docker import."""
    if os.geteuid() != 0:
        raise ImageBuildError("building the base image with debootstrap needs root")
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap)")
    mirror = debian_mirror()
    pkgs = base_packages()
    with tempfile.TemporaryDirectory(prefix="sorna-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        t0 = time.monotonic()
        progress(f"debootstrap --variant=minbase {SUITE} from {mirror}")
        await _run(
            "debootstrap",
            "--variant=minbase",
            SUITE,
            str(root),
            mirror,
            progress=progress,
            line_filter=lambda ln: ln if ln.startswith(("E:", "W:")) else None,
        )
        progress(f"debootstrap done in {time.monotonic() - t0:.0f}s; installing {' '.join(pkgs)}")
        (root / "etc/apt/sources.list").write_text(
            f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
        )
        # Images never need apt's recommends; keep them out of later installs too.
        (root / "etc/apt/apt.conf.d/90sorna").write_text(
            'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
        )
        apt_env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        await _run("chroot", str(root), "apt-get", "update", "-qq", env=apt_env)
        await _run(
            "chroot",
            str(root),
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            *pkgs,
            env=apt_env,
            progress=progress,
            line_filter=lambda ln: ln if ln.startswith("Setting up python3 ") else None,
        )
        await _run("chroot", str(root), "apt-get", "clean")
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        progress(f"rootfs ready in {time.monotonic() - t0:.0f}s; docker import {SORNA_BASE}")
        await _import_rootfs(root)
    progress(f"base {SORNA_BASE} built in {time.monotonic() - t0:.0f}s")


async def _import_rootfs(root: Path) -> None:
    """Stream ``root`` as a tar into ``docker import`` (a pipe; no temporary tarball)."""
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        f"LABEL {BASE_PACKAGES_LABEL}={base_packages_digest()}",
        'CMD ["/bin/bash"]',
    ]
    read_fd, write_fd = os.pipe()
    try:
        tar = await asyncio.create_subprocess_exec(
            "tar", "-C", str(root), "--numeric-owner", "-c", ".", stdout=write_fd
        )
        try:
            imp = await asyncio.create_subprocess_exec(
                "docker",
                "import",
                *[arg for ch in changes for arg in ("--change", ch)],
                "-",
                SORNA_BASE,
                stdin=read_fd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except BaseException:
            tar.kill()
            await tar.wait()
            raise
    finally:
        os.close(read_fd)
        os.close(write_fd)
    out, _ = await imp.communicate()
    tar_rc = await tar.wait()
    if imp.returncode != 0 or tar_rc != 0:
        lines = out.decode(errors="replace").strip().splitlines()
        raise ImageBuildError(f"docker import failed: {lines[-1] if lines else 'tar failed'}")


async def ensure_base(progress: ProgressFn, *, rebuild: bool = False) -> str:
    """Return the base image to build on, building SORNA_BASE if needed."""
    if not rebuild:
        if await image_exists(DEBIAN_BASE):
            progress(f"base: {DEBIAN_BASE} (present)")
            return DEBIAN_BASE
        if await image_exists(SORNA_BASE):
            labels = await image_labels(SORNA_BASE)
            if labels.get(BASE_PACKAGES_LABEL) == base_packages_digest():
                progress(f"base: {SORNA_BASE} (cached)")
                return SORNA_BASE
            progress(f"base: {SORNA_BASE} has an old package list; rebuilding")
    await build_sorna_base(progress)
    return SORNA_BASE


# -- kernel images -------------------------------------------------------------------------


def _jail_binary() -> Path:
    from sorna.repl import jailbin  # the jail engineer's module; builds the binary if missing

    return jailbin.jail_path()


def assemble_context(spec: KernelSpec, ctx: Path, jail: Path, src: Path | None = None) -> None:
    """Lay out a build context for ``spec`` in the empty folder ``ctx``.

    ``src`` is the language's kernel folder (default: the spec's own). The context holds the
    Dockerfile rendered from the template, the folder as ``kernel/`` with the policy made from
    base + diff as ``kernel/policy.json``, the jail and the runner package.
    """
    src = src or spec.folder
    for name in (spec.daemon, *spec.files):
        if not (src / name).is_file():
            raise ImageBuildError(f"{spec.lang}: missing {src / name}")
    shutil.copytree(
        src, ctx / "kernel", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "policy.json")
    )
    (ctx / "kernel" / "policy.json").write_text(json.dumps(spec.policy, indent=2) + "\n")
    (ctx / "Dockerfile").write_text(render_dockerfile(spec))
    (ctx / "kernel" / "examples").mkdir(exist_ok=True)
    shutil.copy2(jail, ctx / "jail")
    (ctx / "jail").chmod(0o755)
    shutil.copytree(
        runner_package_dir(),
        ctx / "sorna" / "repl",
        ignore=shutil.ignore_patterns(
            # kernels/ and jail/ are there in an installed wheel; the image gets its own copies
            *("__pycache__", "*.pyc", *HOST_ONLY_MODULES, "kernels", "jail"),
        ),
    )
    # The runtime's one module of sorna.common (stdlib only): the rest, with its Redis and
    # msgpack dependencies, stays on the host.
    (ctx / "sorna" / "common").mkdir()
    shutil.copy2(constants_module(), ctx / "sorna" / "common" / "constants.py")
    for name in spec.libraries:
        shutil.copytree(
            library_dir(name),
            ctx / "sorna" / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    (ctx / ".dockerignore").write_text("**/__pycache__\n")


_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render_dockerfile(spec: KernelSpec, template: Path | None = None) -> str:
    """The Dockerfile of ``spec``: the one template with the spec's parts filled in."""
    path = template or spec.folder.parent / TEMPLATE_FILE
    try:
        text = path.read_text()
    except OSError as e:
        raise ImageBuildError(f"cannot read the Dockerfile template {path}: {e.strerror}") from None
    env = "".join(f" \\\n    {key}={json.dumps(value)}" for key, value in spec.env.items())
    daemon = f"{C.KERNEL_SORNA_DIR}/{spec.daemon}"
    values = {
        "env": env,
        "check": f" \\\n    && {spec.check}" if spec.check else "",
        "files": "".join(
            f"COPY kernel/{name} {C.KERNEL_SORNA_DIR}/{name}\n" for name in spec.files
        ),
        "daemon": spec.daemon,
        "cmd": json.dumps(
            [
                C.KERNEL_JAIL_PATH,
                "-policy",
                C.KERNEL_POLICY_PATH,
                "-tcp-repl",
                "--",
                spec.interpreter,
                daemon,
            ]
        ),
    }

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ImageBuildError(f"{path}: unknown placeholder {match.group(0)}")
        return values[match.group(1)]

    return _PLACEHOLDER.sub(fill, text)


def constants_module() -> Path:
    """The file of ``sorna.common.constants``, the one module of sorna.common in images."""
    path = C.__file__
    if path is None:
        raise ImageBuildError("sorna.common.constants has no source file")
    return Path(path)


def library_dir(name: str) -> Path:
    """The source folder of package ``sorna.<name>`` (installed with its component)."""
    try:
        spec = importlib.util.find_spec(f"sorna.{name}")
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImageBuildError(f"package sorna.{name} is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations)))


def _build_line(line: str) -> str | None:
    if line.startswith("Step "):
        return line if len(line) <= 100 else line[:97] + "..."
    if line.startswith(("E:", "error", "Error", "ERROR")):
        return line
    if line.startswith(" ---> Using cache"):
        return "  (cached)"
    return None


async def build_image(
    spec: KernelSpec,
    base: str,
    progress: ProgressFn,
    *,
    src: Path | None = None,
    tag: str = "latest",
) -> float:
    """Build ``sorna/kernel-<lang>:<tag>`` on ``base``; return the seconds it took.

    ``src`` overrides the kernel folder (``sorna-repl/kernels/<lang>``).
    """
    t0 = time.monotonic()
    jail = _jail_binary()
    ref = image_name(spec.lang, tag)
    old_id = await _image_id(ref)
    with tempfile.TemporaryDirectory(prefix=f"sorna-ctx-{spec.lang}-") as tmp:
        ctx = Path(tmp)
        assemble_context(spec, ctx, jail, src)
        args = ["docker", "build", "--tag", ref, "--build-arg", f"BASE_IMAGE={base}"]
        args += ["--build-arg", f"WORK_UID={C.KERNEL_WORK_UID}"]
        packages = (*kernelspec.base_spec(spec.folder.parent).runner_packages, *spec.packages)
        args += ["--build-arg", f"PACKAGES={' '.join(packages)}"]
        for key, value in spec.labels().items():
            args += ["--label", f"{key}={value}"]
        args.append(str(ctx))
        await _run(
            *args,
            progress=progress,
            line_filter=_build_line,
            env={"DOCKER_BUILDKIT": "0"},
        )
    if old_id and old_id != await _image_id(ref):
        # The image this build replaced is now untagged: drop it (fails harmlessly if in use).
        with contextlib.suppress(ImageBuildError):
            await _run("docker", "rmi", old_id)
    return time.monotonic() - t0


async def _image_id(ref: str) -> str | None:
    try:
        return (await _run("docker", "image", "inspect", "--format", "{{.Id}}", ref)).strip()
    except ImageBuildError:
        return None


async def build_images(
    langs: Sequence[str],
    *,
    rebuild_base: bool = False,
    progress: ProgressFn | None = None,
    tag: str = "latest",
) -> dict[str, float]:
    """Build the kernel images of ``langs`` (canonical names); return seconds per image."""
    say = progress or (lambda line: log.info("%s", line))
    specs = _specs()
    await check_engine()
    base = await ensure_base(say, rebuild=rebuild_base)
    took: dict[str, float] = {}
    for i, lang in enumerate(langs, 1):
        ref = image_name(lang, tag)
        say(f"[{i}/{len(langs)}] {ref}")
        took[lang] = await build_image(specs[lang], base, lambda ln: say(f"    {ln}"), tag=tag)
        say(f"[{i}/{len(langs)}] {ref} built in {took[lang]:.1f}s")
    return took


def _specs() -> Mapping[str, KernelSpec]:
    try:
        return kernelspec.kernel_specs()
    except KernelSpecError as e:
        raise ImageBuildError(str(e)) from None


async def missing_images(langs: Sequence[str]) -> list[str]:
    """The languages among ``langs`` whose image the engine lacks."""
    return [lang for lang in langs if not await image_exists(image_name(lang))]


# -- CLI -----------------------------------------------------------------------------------


def _parse_langs(names: Sequence[str], all_: bool) -> list[str]:
    specs = _specs()
    if all_ or not names:
        return list(specs)
    langs: list[str] = []
    for name in names:
        lang = kernelspec.resolve(name, specs)
        if lang is None:
            known = ", ".join(specs)
            raise ImageBuildError(f"unknown language {name!r} (known: {known})")
        if lang not in langs:
            langs.append(lang)
    return langs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sorna.repl.imagebuild",
        description=(
            "Build Sorna kernel images sorna/kernel-<lang>:latest from sorna-repl/kernels/. "
            f"The base is {DEBIAN_BASE} if the engine has it, else {SORNA_BASE}, "
            "built once with debootstrap and docker import (needs root) and then cached."
        ),
    )
    parser.add_argument(
        "langs",
        nargs="*",
        metavar="LANG",
        help="languages or aliases to build (default: every folder of sorna-repl/kernels/)",
    )
    parser.add_argument(
        "--tag",
        default="latest",
        help="tag of the images built (default: latest), e.g. a test build's own",
    )
    parser.add_argument("--all", action="store_true", help="build every language")
    parser.add_argument(
        "--rebuild-base", action="store_true", help=f"rebuild {SORNA_BASE} even if cached"
    )
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        langs = _parse_langs(args.langs, args.all)
        t0 = time.monotonic()
        asyncio.run(build_images(langs, rebuild_base=args.rebuild_base, progress=say, tag=args.tag))
    except ImageBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    say(f"done: {len(langs)} image(s) in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
