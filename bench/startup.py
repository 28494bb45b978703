"""Benchmark single-PC start-up and one ``sorna run`` against a bare ``docker run``.

Starts a stack with ``sorna up -d`` in a temporary home and data folder on a free port (the
python3 image must already be built: ``make image LANG=python3``) and measures:

* the time from ``sorna up -d`` to the first successful ``sorna run python3 -c 'print(1)'``;
* the wall time of ``sorna run python3 -c 'print(1)'`` on the running stack (create, run,
  destroy a kernel), beside ``docker run --rm sorna/kernel-python3 python3 -c 'print(1)'``
  in the same run. Target: ``sorna run`` <= 1.5x the bare ``docker run``.

Without a Docker engine the stack uses the local backend and the docker baseline is skipped.

Usage: ``python bench/startup.py [--runs N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sorna.common.servers import free_port

BIN = Path(sys.executable).parent
PRINT1 = ["python3", "-c", "print(1)"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    return time.perf_counter() - t0, done


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command")
    args = parser.parse_args()
    docker = docker_answers()
    home = Path(tempfile.mkdtemp(prefix="sb-", dir="/tmp"))
    home.chmod(0o755)  # as root the embedded PostgreSQL runs as nobody below it
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORNA_")}
    env.update(HOME=str(home), SORNA_UP_DATA_DIR=str(home / "data"))
    sorna = str(BIN / "sorna")
    port = free_port()
    try:
        t0 = time.perf_counter()
        up = subprocess.run(
            [sorna, "up", "-d", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if up.returncode != 0:
            print(up.stdout + up.stderr, file=sys.stderr)
            return 1
        t_up = time.perf_counter() - t0
        while True:
            _, first = timed([sorna, "run", *PRINT1], env)
            if first.returncode == 0 and first.stdout == "1\n":
                break
            if time.perf_counter() - t0 > 300:
                print(first.stderr, file=sys.stderr)
                return 1
        t_first = time.perf_counter() - t0
        backend = "docker" if "backend     docker" in up.stdout else "local"
        print(f"backend: {backend}")
        print(f"sorna up -d returned after      {t_up:6.2f} s")
        print(f"first print(1) after sorna up   {t_first:6.2f} s")

        runs = []
        for _ in range(args.runs):
            took, done = timed([sorna, "run", *PRINT1], env)
            assert done.stdout == "1\n", done.stderr
            runs.append(took)
        run_p50 = statistics.median(runs)
        print(f"sorna run print(1), p50         {run_p50:6.3f} s  (min {min(runs):.3f})")
        if docker:
            bare = []
            for _ in range(args.runs):
                took, done = timed(["docker", "run", "--rm", "sorna/kernel-python3", *PRINT1], env)
                assert done.stdout == "1\n", done.stderr
                bare.append(took)
            bare_p50 = statistics.median(bare)
            print(f"docker run --rm print(1), p50   {bare_p50:6.3f} s  (min {min(bare):.3f})")
            print(f"ratio sorna run / docker run    {run_p50 / bare_p50:6.2f}x  (target <= 1.5x)")
        else:
            print("no Docker engine: the docker run baseline is skipped")
    finally:
        subprocess.run([sorna, "down"], env=env, capture_output=True, timeout=300, check=False)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
