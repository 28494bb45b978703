"""``make run`` on this checkout: the stack comes up in the foreground, runs code, and Ctrl-C
(SIGINT to the whole process group, as a terminal sends it) stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_make_run_serves_until_ctrl_c(stack_factory: type) -> None:
    stack = stack_factory(BIN)
    out = stack.home / "make-run.log"
    with out.open("wb") as log:
        make = subprocess.Popen(
            ["make", "-C", str(ROOT), "run", f"UP_ARGS=--port {stack.port}"],
            env=stack.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
    try:
        deadline = time.monotonic() + 540
        while "Press Ctrl-C to stop." not in out.read_text():
            assert make.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        stack._note_processes()
        ran = stack.sorna("run", "python3", "-c", "print(6*7)")
        assert (ran.returncode, ran.stdout) == (0, "42\n"), ran.stderr
        os.killpg(make.pid, signal.SIGINT)
        assert make.wait(180) == 0 or "stopped" in out.read_text(), out.read_text()
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    text = out.read_text()
    assert "Sorna is up." in text and text.rstrip().endswith("stopped"), text
    assert stack.leftovers() == []
