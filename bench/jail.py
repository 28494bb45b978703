"""Jail overhead: each workload with the jail over the same without it.

Prints one ratio per workload (median of a few repetitions, both sides
measured in the same run). Targets: CPU loop <= 1.02x, 20,000 files in /tmp
<= 1.3x, stdlib imports <= 1.10x. ``--no-landlock`` measures the tracer-only
mode (what a kernel without Landlock gets).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sorna.repl.jailbin import JAIL_SRC, jail_path

PYTHON = "/usr/bin/python3"
REPS = 5

CPU_LOOP = "s = 0\nfor i in range(15_000_000):\n    s += i * i\n"
FILES = """
import os, sys
d = sys.argv[1]
for i in range(20_000):
    p = os.path.join(d, f"f{i}")
    with open(p, "w") as f:
        f.write("sorna")
    os.unlink(p)
"""
IMPORTS = "import json, asyncio, email, http.client"


def timed(argv: list[str], times: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(times):
        subprocess.run(argv, check=True)
    return time.perf_counter() - start


def ratio(name: str, argv: list[str], jail: list[str], times: int = 1) -> float:
    timed(argv)  # warm caches
    timed(jail + argv)
    ratios = []
    for _ in range(REPS):
        bare = timed(argv, times)
        jailed = timed(jail + argv, times)
        ratios.append(jailed / bare)
    r = statistics.median(ratios)
    print(f"{name:<40} {r:5.3f}x  (runs: {', '.join(f'{x:.3f}' for x in ratios)})", flush=True)
    return r


def main() -> None:
    flags = ["-no-landlock"] if "--no-landlock" in sys.argv[1:] else []
    jail = [str(jail_path()), "-policy", str(JAIL_SRC / "policies" / "default.json"), *flags]
    probe = subprocess.run([*jail, "-debug", "--", "/bin/true"], capture_output=True, text=True)
    print(next((x for x in probe.stderr.splitlines() if "landlock" in x), "landlock: ?"))
    jail.append("--")
    scratch = Path(tempfile.mkdtemp(prefix="sorna-jail-bench-", dir="/tmp"))
    try:
        ratio("cpu-bound python loop (<= 1.02x)", [PYTHON, "-c", CPU_LOOP], jail)
        ratio(
            "create+write+delete 20,000 files (<= 1.3x)",
            [PYTHON, "-c", FILES, str(scratch)],
            jail,
        )
        ratio(
            "import json, asyncio, email, http.client (<= 1.10x)", [PYTHON, "-c", IMPORTS], jail, 20
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
