"""When the jail hands the write globs to Landlock, and when it keeps them in the tracer."""

from __future__ import annotations

import pytest

from .conftest import JailBox

# Only the Landlock mode of the jail_box fixture (it skips when Landlock is unusable here).
pytestmark = [pytest.mark.jail, pytest.mark.parametrize("jail_box", ["landlock"], indirect=True)]

WRITE = """
import sys
for p in sys.argv[1:]:
    try:
        open(p, "w").write("x")
        print("ok")
    except PermissionError:
        print("denied")
"""


def test_globs_landlock_cannot_express_stay_with_the_tracer(jail_box: JailBox) -> None:
    box = jail_box
    txt, py = box.scratch / "a.txt", box.scratch / "a.py"
    res = box.run(
        "/usr/bin/python3", "-I", "-c", WRITE, str(txt), str(py),
        flags=("-debug",),
        policy={"path_rules": {"read": ["/**"], "write": [f"{box.scratch}/*.txt"]}},
    )  # fmt: skip
    assert "not DIR/** or an exact path: the tracer checks every write path" in res.stderr
    assert res.stdout == "ok\ndenied\n", res.stderr
    assert not (box.scratch / "a.py").exists()


def test_policy_can_turn_landlock_off(jail_box: JailBox) -> None:
    box = jail_box
    res = box.run(
        "/usr/bin/python3", "-I", "-c", WRITE, str(box.scratch / "a"), str(box.outside / "a"),
        flags=("-debug",), policy={"use_landlock": False},
    )  # fmt: skip
    assert "landlock: disabled by the policy" in res.stderr
    assert "deny openat" in res.stderr
    assert res.stdout == "ok\ndenied\n", res.stderr


def test_exact_file_and_missing_dirs(jail_box: JailBox) -> None:
    box = jail_box
    single = box.outside / "single"
    single.write_text("")
    res = box.run(
        "/usr/bin/python3", "-I", "-c", WRITE, str(single), str(box.outside / "other"),
        flags=("-debug",),
        policy={"path_rules": {"read": ["/**"],
                               "write": [str(single), f"{box.root}/missing/**", "pipe:*"]}},
    )  # fmt: skip
    assert "landlock ABI" in res.stderr
    assert res.stdout == "ok\ndenied\n", res.stderr
    assert single.read_text() == "x"


def test_script_outside_the_exec_globs_runs_as_the_program(jail_box: JailBox) -> None:
    """The first exec is free: Landlock lets the program and its interpreter run."""
    script = jail_box.outside / "hello.sh"
    script.write_text("#!/bin/sh\necho hi from $0\n")
    script.chmod(0o755)
    res = jail_box.run(str(script))
    assert (res.returncode, res.stdout) == (0, f"hi from {script}\n"), res.stderr
    # ... but nothing else outside the exec globs, even through the shell.
    res = jail_box.run("/bin/sh", "-c", f"{script}; echo rc=$?")
    assert "rc=126" in res.stdout, res.stdout + res.stderr
