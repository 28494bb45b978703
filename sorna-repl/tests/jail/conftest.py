"""Fixtures for the jail integration tests: the built binary and a sandbox box."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sorna.repl.jailbin import jail_path

HOST_PYTHON = "/usr/bin/python3"


@dataclass
class JailBox:
    """Temp dirs standing in for the work dir, /tmp and the world outside."""

    jail: Path
    root: Path
    #: "landlock": the kernel enforces the write globs where it can (the default);
    #: "ptrace": ``-no-landlock``, the tracer checks every write path.
    mode: str = "landlock"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def scratch(self) -> Path:
        return self.root / "tmp"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def policy(self, **overrides: Any) -> Path:
        """Write a policy whose writable globs are the box's work and tmp dirs."""
        policy: dict[str, Any] = {
            "path_rules": {
                "read": ["/**"],
                "write": [f"{self.work}/**", f"{self.scratch}/**", "/dev/null", "pipe:*"],
                "exec": ["/usr/**", "/bin/**", f"{self.work}/**", f"{self.root}/bin/**"],
            },
            "max_child_procs": 64,
            "exec_allowance": -1,
            "fork_allowance": -1,
            "preserved_env_keys": ["PATH"],
            "extra_envs": {"HOME": str(self.work)},
            "allow_network": False,
        }
        policy.update(overrides)
        path = self.root / "policy.json"
        path.write_text(json.dumps(policy))
        return path

    def run(
        self,
        *argv: str,
        flags: tuple[str, ...] = (),
        policy: dict[str, Any] | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv under the jail and return its outcome."""
        if self.mode == "ptrace":
            flags = ("-no-landlock", *flags)
        cmd = [str(self.jail), "-policy", str(self.policy(**(policy or {}))), *flags, "--", *argv]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.work,
            check=False,
            env={**os.environ, **env} if env else None,
        )

    def python(self, code: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(HOST_PYTHON, "-I", "-B", "-c", code, **kw)

    def cc(self, name: str, source: str) -> Path:
        """Compile a C snippet with the host's gcc into the box."""
        bindir = self.root / "bin"
        bindir.mkdir(exist_ok=True)
        src = bindir / f"{name}.c"
        src.write_text(source)
        out = bindir / name
        subprocess.run(["gcc", "-O1", "-o", str(out), str(src)], check=True, timeout=60)
        return out


@pytest.fixture(scope="session")
def jail_bin() -> Path:
    return jail_path()


def landlock_status(jail: Path) -> str:
    """The jail's -debug line about Landlock (``landlock ABI 7 enforces ...`` when in use)."""
    res = subprocess.run(
        [str(jail), "-debug", "--", "/bin/true"], capture_output=True, text=True, timeout=30
    )
    return next((line for line in res.stderr.splitlines() if "landlock" in line), res.stderr)


@pytest.fixture(scope="session")
def landlock_in_use(jail_bin: Path) -> bool:
    return "landlock ABI" in landlock_status(jail_bin)


@pytest.fixture(params=["landlock", "ptrace"])
def jail_box(request: pytest.FixtureRequest, jail_bin: Path) -> Iterator[JailBox]:
    """A box, once with Landlock enforcing the write globs and once with the tracer alone.

    Denials through Landlock fail with EACCES, through the tracer with EPERM: Python raises
    PermissionError for both, and the tests accept either.
    """
    mode: str = request.param
    if mode == "landlock" and not request.getfixturevalue("landlock_in_use"):
        pytest.skip(f"no usable Landlock here: {landlock_status(jail_bin)}")
    root = Path(tempfile.mkdtemp(prefix="sorna-jail-test-"))
    try:
        box = JailBox(jail=jail_bin, root=root, mode=mode)
        for d in (box.work, box.scratch, box.outside):
            d.mkdir()
        yield box
    finally:
        shutil.rmtree(root, ignore_errors=True)
