"""REPL latency in a kernel container, each figure beside its baseline from the same run.

1. Warm round trip: ``code: print(1)`` -> ``finished`` against a running python3 kernel
   container (jail + daemon), beside a bare pyzmq PULL->PUSH echo process over the same kind
   of ipc sockets, driven by the same client loop. Target: <= 1 ms added at p50.
2. Cold start: ``docker run`` of the kernel (as the agent starts it) to the first
   ``finished``, beside ``docker run --rm <same image> true``. Target ratio <= 1.3.

Usage: python bench/repl.py [--lang python3] [--rounds 2000] [--cold 5]
Builds the image through sorna.repl.imagebuild if it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from sorna.common.langs import image_name
from sorna.repl import imagebuild
from sorna.repl.dockerkernel import docker_kernel

SNIPPETS = {"python3": "print(1)", "nodejs": "console.log(1)"}

ECHO = """
import sys, zmq
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL); pull.bind(sys.argv[1])
push = ctx.socket(zmq.PUSH); push.bind(sys.argv[2])
print("ready", flush=True)
while True:
    msg = pull.recv_multipart()
    if msg[0] == b"quit":
        break
    push.send_multipart([b"finished", b""])
"""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def round_trips(input_addr: str, output_addr: str, code: str, rounds: int) -> list[float]:
    """Time ``rounds`` code -> finished exchanges with plain blocking pyzmq sockets (ms)."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    pull = ctx.socket(zmq.PULL)
    try:
        for s in (push, pull):
            s.setsockopt(zmq.LINGER, 0)
        push.connect(input_addr)
        pull.connect(output_addr)
        payload = code.encode()
        times = []
        for i in range(rounds + 50):
            t0 = time.perf_counter()
            push.send_multipart([b"code", payload])
            while True:
                if not pull.poll(30_000):
                    raise RuntimeError("no answer within 30 s")
                if pull.recv_multipart()[0] == b"finished":
                    break
            if i >= 50:  # warm-up rounds are not counted
                times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        push.close()
        pull.close()
        ctx.term()


def echo_round_trips(rounds: int, code: str) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="sorna-bench-echo-") as tmp:
        inp, out = f"ipc://{tmp}/in.sock", f"ipc://{tmp}/out.sock"
        proc = subprocess.Popen(
            [sys.executable, "-c", ECHO, inp, out], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            times = round_trips(inp, out, code, rounds)
        finally:
            proc.kill()
            proc.wait()
    return times


async def kernel_round_trips(lang: str, rounds: int, code: str) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="sorna-bench-work-") as tmp:
        async with docker_kernel(lang, workdir=Path(tmp)) as client:
            client.close()  # a second PULL peer would take every other reply
            return await asyncio.to_thread(
                round_trips, client.input_addr, client.output_addr, code, rounds
            )


async def cold_start(lang: str, code: str) -> float:
    """Seconds from `docker run` to the first `finished`."""
    with tempfile.TemporaryDirectory(prefix="sorna-bench-work-") as tmp:
        t0 = time.perf_counter()
        async with docker_kernel(lang, workdir=Path(tmp)) as client:
            result = await client.run_code(code)
            took = time.perf_counter() - t0
            assert result.ops[-1] == "finished", result.ops
    return took


def docker_run_true(ref: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "--network", "none", ref, "true"], check=True)
    return time.perf_counter() - t0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="python3", choices=sorted(SNIPPETS))
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--cold", type=int, default=5, help="cold starts to time")
    args = parser.parse_args()
    lang, code = args.lang, SNIPPETS[args.lang]
    ref = image_name(lang)
    if await imagebuild.missing_images([lang]):
        print(f"building {ref} ...", flush=True)
        await imagebuild.build_images([lang], progress=lambda line: None)

    echo = await asyncio.to_thread(echo_round_trips, args.rounds, code)
    kernel = await kernel_round_trips(lang, args.rounds, code)
    e50, e99 = percentile(echo, 0.50), percentile(echo, 0.99)
    k50, k99 = percentile(kernel, 0.50), percentile(kernel, 0.99)
    print(f"warm round trip, {args.rounds} rounds of `{code}` -> finished ({lang} container):")
    print(f"  raw pyzmq PUSH/PULL echo: p50 {e50:.3f} ms  p99 {e99:.3f} ms")
    print(f"  kernel (jail + daemon):   p50 {k50:.3f} ms  p99 {k99:.3f} ms")
    added = k50 - e50
    verdict = "OK" if added <= 1.0 else "over target"
    print(f"  added at p50: {added:.3f} ms (target <= 1 ms: {verdict})")

    cold, bare = [], []
    for _ in range(args.cold):
        bare.append(await asyncio.to_thread(docker_run_true, ref))
        cold.append(await cold_start(lang, code))
    c50, b50 = statistics.median(cold), statistics.median(bare)
    ratio = c50 / b50
    print(f"cold start, median of {args.cold}:")
    print(f"  docker run --rm {ref} true:   {b50 * 1000:.0f} ms")
    print(f"  kernel start -> first finished: {c50 * 1000:.0f} ms")
    verdict = "OK" if ratio <= 1.3 else "over target"
    print(f"  ratio {ratio:.2f} (target <= 1.3: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
