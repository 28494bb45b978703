"""Benchmark sorna.client against a bare signed aiohttp request to the same gateway.

Starts Valkey, PostgreSQL, a gateway and a local-backend agent in this process
(:func:`sorna.gateway.testing.live_stack`), then measures
the warm round trip of ``print(1)`` on python3 three ways: a minimal hand-signed aiohttp POST
(the baseline), ``AsyncKernel.execute``, and the blocking ``Kernel.execute`` called from a
plain thread (one hop to its loop thread per call). Prints p50/p99 and each client's ratio to
the baseline (target <= 1.15 async, <= 1.3 blocking), then the wall time of ``sorna --help``
and of one ``sorna run python3 -c 'print(1)'`` (create, run, destroy) beside
``python -c pass``.

Usage: ``python bench/client.py [--calls N]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from sorna.client import AsyncKernel, ClientConfig, Kernel
from sorna.common.servers import PostgresServer, ValkeyServer
from sorna.common.testing.leftovers import scratch_folder
from sorna.gateway.testing import live_stack
from sorna.manager.config import ManagerTimings

ASYNC_TARGET = 1.15
SYNC_TARGET = 1.3
VERSION = "v2.20170315"


def bare_headers(cfg: ClientConfig, host: str, path: str, body: bytes) -> dict[str, str]:
    """The signature of API.md in the fewest lines: the baseline the client is held to."""
    now = datetime.now(UTC)
    date = now.isoformat()
    key = hmac.new(cfg.secret_key.encode(), now.strftime("%Y%m%d").encode(), "sha256").digest()
    key = hmac.new(key, host.encode(), "sha256").digest()
    body_hash = hashlib.sha256(body).hexdigest()
    to_sign = f"POST\n{path}\n{date}\nhost:{host}\ncontent-type:application/json\n"
    to_sign += f"x-sorna-version:{VERSION}\n{body_hash}"
    sig = hmac.new(key, to_sign.encode(), "sha256").hexdigest()
    return {
        "Date": date,
        "Host": host,
        "Content-Type": "application/json",
        "X-Sorna-Version": VERSION,
        "Authorization": f"Sorna signMethod=HMAC-SHA256, credential={cfg.access_key}:{sig}",
    }


async def timed(calls: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(20):  # warm-up
        await fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


def timed_blocking(calls: int, fn: Callable[[], object]) -> list[float]:
    for _ in range(20):  # warm-up
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def report(name: str, samples: list[float], base: float | None, target: float | None) -> None:
    p50 = statistics.median(samples)
    p99 = statistics.quantiles(samples, n=100)[98]
    line = f"{name:<28} p50 {p50 * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms"
    if base is not None and target is not None:
        ratio = p50 / base
        verdict = "ok" if ratio <= target else "OVER TARGET"
        line += f"   ratio {ratio:5.2f} (target <= {target}) {verdict}"
    print(line, flush=True)


async def bench(calls: int, redis_url: str, postgres_url: str, scratch: Path) -> None:
    async with live_stack(
        redis_url=redis_url,
        postgres_url=postgres_url,
        scratch_root=scratch,
        gateway={"timings": ManagerTimings(startup_grace_s=0.0)},
        agent={"agent_id": "bench-client"},
    ) as live:
        kp = await live.gateway.keypair(concurrency_limit=10, rate_limit=1_000_000)
        cfg = ClientConfig(kp.access_key, kp.secret_key, endpoint=live.endpoint)
        port = live.gateway.server.port
        async with AsyncKernel.get_or_create("python3", config=cfg) as kernel:
            host = f"127.0.0.1:{port}"
            path = f"/v2/kernel/{kernel.kernel_id}"
            body = json.dumps({"mode": "query", "code": "print(1)"}).encode()
            async with aiohttp.ClientSession() as http:

                async def bare() -> None:
                    headers = bare_headers(cfg, host, path, body)
                    async with http.post(f"http://{host}{path}", data=body, headers=headers) as r:
                        assert r.status == 200, await r.text()
                        await r.read()

                base = await timed(calls, bare)
            client = await timed(calls, lambda: kernel.execute("print(1)"))
            blocking = await asyncio.to_thread(Kernel.get_or_create, "python3", config=cfg)
            try:
                sync_samples = await asyncio.to_thread(
                    timed_blocking, calls, lambda: blocking.execute("print(1)")
                )
            finally:
                await asyncio.to_thread(blocking.destroy)
        b50 = statistics.median(base)
        report("bare signed aiohttp POST", base, None, None)
        report("AsyncKernel.execute", client, b50, ASYNC_TARGET)
        report("Kernel.execute (a thread)", sync_samples, b50, SYNC_TARGET)
        await cli_startup(cfg)


async def cli_startup(cfg: ClientConfig) -> None:
    env = {
        **os.environ,
        "SORNA_ENDPOINT": cfg.endpoint,
        "SORNA_ACCESS_KEY": cfg.access_key,
        "SORNA_SECRET_KEY": cfg.secret_key,
    }
    sorna = str(Path(sys.executable).parent / "sorna")

    async def run(*argv: str) -> float:
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.DEVNULL)
        assert await proc.wait() == 0
        return time.perf_counter() - start

    python = statistics.median([await run(sys.executable, "-c", "pass") for _ in range(5)])
    help_ = statistics.median([await run(sorna, "--help") for _ in range(5)])
    cli = statistics.median(
        [await run(sorna, "run", "-q", "python3", "-c", "print(1)") for _ in range(5)]
    )
    print(
        f"{'sorna --help (start-up)':<28} {help_ * 1e3:7.1f} ms   python -c pass "
        f"{python * 1e3:6.1f} ms   ratio {help_ / python:5.1f}",
        flush=True,
    )
    print(
        f"{'sorna run (create+run+rm)':<28} {cli * 1e3:7.1f} ms   python -c pass "
        f"{python * 1e3:6.1f} ms   ratio {cli / python:5.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per client")
    args = parser.parse_args()
    with scratch_folder("bc-") as scratch, ValkeyServer() as valkey, PostgresServer() as postgres:
        asyncio.run(bench(args.calls, valkey.url, postgres.url(), scratch))


if __name__ == "__main__":
    main()
