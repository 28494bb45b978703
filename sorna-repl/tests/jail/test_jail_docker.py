"""The jail inside a container with Docker's default seccomp profile and no added capability.

That profile denies ``process_vm_readv`` without CAP_SYS_PTRACE, so the tracer must read
path arguments another way (``/proc/<pid>/mem``, then ``PTRACE_PEEKDATA``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.jail, pytest.mark.docker]

IMAGE = "sorna/base:bookworm"

CODE = """
import os, subprocess
open("/tmp/ok", "w").write("ok")
os.symlink("/etc/escape", "/tmp/link")
for f in (lambda: open("/etc/escape", "w"), lambda: open("/tmp/link", "w"),
          lambda: os.rename("/tmp/ok", "/etc/ok")):
    try:
        f()
        print("ALLOWED")
    except PermissionError:
        print("denied")
print(subprocess.run(["/bin/sh", "-c", "cat /tmp/ok"], capture_output=True, text=True).stdout)
"""


@pytest.fixture(scope="module")
def base_image() -> str:
    found = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, timeout=60, check=False
    )
    if found.returncode != 0:
        pytest.skip(f"the kernel base image {IMAGE} is not built (make images)")
    return IMAGE


@pytest.mark.parametrize("mode", ["landlock", "ptrace"])
def test_jail_in_a_container_without_capabilities(
    jail_bin: Path, base_image: str, mode: str
) -> None:
    """Landlock is used if the engine's seccomp profile lets it through, else the tracer."""
    flags = ["-debug"] + (["-no-landlock"] if mode == "ptrace" else [])
    res = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--cap-drop", "SYS_PTRACE",
         "-v", f"{jail_bin}:/opt/jail:ro", base_image,
         "/opt/jail", *flags, "--", "/usr/bin/python3", "-I", "-c", CODE],
        capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == "denied\ndenied\ndenied\nok\n", res.stdout + res.stderr
    assert "bad address" not in res.stderr
    assert "reading tracee memory through /proc/<pid>/mem" in res.stderr
