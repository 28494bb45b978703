"""Benchmark the Sorna API gateway end to end, and the registry at scale.

1. Warm ``POST /v2/kernel/:id`` with ``print(1)`` on python3 (local-backend agent, gateway
   and agent each in their own process), p50/p99 and throughput at 1, 16 and 64 concurrent
   clients, beside (a) an aiohttp hello-world handler under the same load and (b)
   ``jupyter_client`` executing ``print(1)`` on an ipykernel. Targets: p50 <= 0.5x the
   ipykernel execute; throughput at 64 clients >= 25% of the hello-world handler's.
2. Registry scale: 1,000 simulated agents heartbeating and 10,000 kernels routed; p50 of a
   scheduling decision (reserve + release) at 10, 100 and 1,000 agents, and the cost of one
   heartbeat write. Target: p50 <= 1 ms and flat (within 1.5x) from 10 to 1,000 agents.

Usage: ``python bench/api.py [--seconds S] [--skip-api] [--skip-registry]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from sorna.common.ids import AgentId, KernelId
from sorna.common.keys import RedisKeys
from sorna.common.servers import PostgresServer, ValkeyServer, free_port
from sorna.gateway import signing
from sorna.manager.registry import Placement, Registry

VERSION = "v2.20170315"
LEVELS = (1, 16, 64)
MAX_KERNELS = 16  # clients beyond this share kernels (runs on one kernel are FIFO)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


class Signer:
    def __init__(self, base: str, ak: str, sk: str) -> None:
        self.base, self.ak, self.sk = base, ak, sk
        self.host = base.split("//", 1)[1]

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        date = datetime.datetime.now(datetime.UTC).isoformat()
        sig = signing.sign(
            secret_key=self.sk,
            method=method,
            path_with_query=path,
            date=date,
            host=self.host,
            content_type="application/json",
            version=VERSION,
            body=body,
        )
        return {
            "Date": date,
            "Host": self.host,
            "Content-Type": "application/json",
            "X-Sorna-Version": VERSION,
            "Authorization": signing.authorization("HMAC-SHA256", self.ak, sig),
        }


async def load(
    session: aiohttp.ClientSession,
    clients: int,
    seconds: float,
    request: Any,
) -> tuple[list[float], float]:
    """Run ``clients`` loops of ``request(i)`` for ``seconds``; return latencies (ms), req/s."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await request(i)
            latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, len(latencies) / (time.perf_counter() - t0)


def _hello_server(port: int) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def wait_http(url: str, session: aiohttp.ClientSession) -> None:
    for _ in range(300):
        try:
            async with session.get(url) as r:
                if r.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def ipykernel_p50(rounds: int) -> float:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        times = []
        for i in range(rounds + 20):
            t0 = time.perf_counter()
            kc.execute_interactive("print(1)", output_hook=lambda msg: None, timeout=30)
            if i >= 20:
                times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _start_stack(
    env: dict[str, str], procs: list[subprocess.Popen[bytes]], scratch: Path, api_port: int
) -> dict[str, Any]:
    """Create a keypair, start an agent and a gateway; return the keypair."""
    out = subprocess.run(
        [sys.executable, "-m", "sorna.manager.cli", "keypair", "create"],
        env={**env, "SORNA_LIMITS_DEFAULT_RATE_LIMIT": "100000000"},
        capture_output=True,
        check=True,
    )
    kp = json.loads(out.stdout)
    subprocess.run(
        [sys.executable, "-m", "sorna.manager.cli", "keypair", "set-limits",
         kp["accessKey"], "--concurrency", "100"],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    procs.append(
        subprocess.Popen(
            [sys.executable, "-m", "sorna.agent.cli"],
            env={
                **env,
                "SORNA_AGENT_ID": "bench-agent",
                "SORNA_BACKEND": "local",
                "SORNA_RPC_HOST": "127.0.0.1",
                "SORNA_RPC_PORT": str(free_port()),
                "SORNA_SCRATCH_ROOT": str(scratch),
                "SORNA_MAX_KERNELS": "64",
            },
        )
    )
    procs.append(
        subprocess.Popen(
            [sys.executable, "-m", "sorna.manager.cli", "serve", "--port", str(api_port)],
            env={**env, "SORNA_TIMINGS_STARTUP_GRACE_S": "0"},
        )
    )
    return kp  # type: ignore[no-any-return]


async def bench_api(seconds: float) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="ab-", dir="/tmp"))
    data = Path(tempfile.mkdtemp(prefix="ab-pg-", dir="/tmp"))
    os.chmod(data, 0o755)
    procs: list[subprocess.Popen[bytes]] = []
    with ValkeyServer() as valkey, PostgresServer(data_dir=data) as pg:
        db_url = pg.url()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SORNA_")},
            "SORNA_REDIS_URL": valkey.url,
            "SORNA_DB_URL": db_url,
            "SORNA_LOGGING_LEVEL": "WARNING",
        }
        api_port, hello_port = free_port(), free_port()
        try:
            kp = _start_stack(env, procs, scratch, api_port)
            import multiprocessing

            hello = multiprocessing.get_context("spawn").Process(
                target=_hello_server, args=(hello_port,), daemon=True
            )
            hello.start()
            base = f"http://127.0.0.1:{api_port}"
            signer = Signer(base, kp["accessKey"], kp["secretKey"])
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=conn) as session:
                await wait_http(base + "/v2", session)
                await wait_http(f"http://127.0.0.1:{hello_port}/", session)

                async def call(method: str, path: str, payload: Any = None) -> Any:
                    body = b"" if payload is None else json.dumps(payload).encode()
                    async with session.request(
                        method, base + path, data=body, headers=signer.headers(method, path, body)
                    ) as r:
                        text = await r.text()
                        if r.status >= 300:
                            raise RuntimeError(f"{method} {path}: {r.status} {text}")
                        return json.loads(text) if text else None

                kernels: list[str] = []
                for i in range(MAX_KERNELS):
                    for _ in range(100):
                        try:
                            made = await call(
                                "POST",
                                "/v2/kernel/create",
                                {"lang": "python3", "clientSessionToken": f"bench-{i:03d}"},
                            )
                            break
                        except RuntimeError as e:
                            if "503" not in str(e) and "404" not in str(e):
                                raise
                            await asyncio.sleep(0.2)
                    kernels.append(made["kernelId"])
                bodies = [json.dumps({"mode": "query", "code": "print(1)"}).encode()]

                async def execute(i: int) -> None:
                    kid = kernels[i % len(kernels)]
                    path = f"/v2/kernel/{kid}"
                    async with session.post(
                        base + path, data=bodies[0], headers=signer.headers("POST", path, bodies[0])
                    ) as r:
                        result = await r.json()
                        assert r.status == 200 and result["result"]["status"] == "finished"

                async def hello_req(i: int) -> None:
                    async with session.get(f"http://127.0.0.1:{hello_port}/") as r:
                        await r.read()

                for _ in range(50):
                    await execute(0)
                print(
                    f"== warm execute of print(1), {seconds:g} s per level, {len(kernels)} kernels"
                )
                print(f"{'clients':>8} {'api p50':>9} {'api p99':>9} {'api req/s':>10}"
                      f" {'hello p50':>10} {'hello req/s':>12}")  # fmt: skip
                results: dict[int, tuple[float, float, float, float, float]] = {}
                for n in LEVELS:
                    lat, tput = await load(session, n, seconds, execute)
                    hlat, htput = await load(session, n, seconds, hello_req)
                    results[n] = (pct(lat, 0.5), pct(lat, 0.99), tput, pct(hlat, 0.5), htput)
                    print(f"{n:>8} {results[n][0]:>8.2f}ms {results[n][1]:>8.2f}ms {tput:>10.0f}"
                          f" {results[n][3]:>9.2f}ms {htput:>12.0f}")  # fmt: skip
                for kid in kernels:
                    await call("DELETE", f"/v2/kernel/{kid}")
            hello.terminate()
            hello.join()
            ipy = await asyncio.to_thread(ipykernel_p50, 300)
            p50 = results[1][0]
            ratio_lat = p50 / ipy
            ratio_tput = results[64][2] / results[64][4]
            print(f"ipykernel execute print(1) p50: {ipy:.2f} ms")
            print(f"api p50 / ipykernel p50 = {ratio_lat:.2f} (target <= 0.5): "
                  f"{'OK' if ratio_lat <= 0.5 else 'MISSED'}")  # fmt: skip
            print(f"api req/s / hello req/s at 64 clients = {ratio_tput:.2f} (target >= 0.25): "
                  f"{'OK' if ratio_tput >= 0.25 else 'MISSED'}")  # fmt: skip
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)


async def bench_registry() -> None:
    keys = RedisKeys()
    with ValkeyServer() as valkey:
        redis = Redis.from_url(valkey.url)
        try:
            reg = Registry(redis, keys)
            print("== registry: scheduling decision (reserve + release), heartbeat write")
            p50s: dict[int, float] = {}
            made = 0
            for n in (10, 100, 1000):
                async with redis.pipeline(transaction=False) as p:
                    for i in range(made, n):
                        aid = AgentId(f"i-{i:05d}")
                        p.hset(keys.agent(aid), mapping=_agent_fields(aid, i))
                        p.set(keys.agent_alive(aid), b"1", px=600_000)
                        p.sadd(keys.agents(), aid)
                    await p.execute()
                made = n
                if n == 1000:
                    async with redis.pipeline(transaction=False) as p:
                        for k in range(10_000):
                            kid = KernelId(f"k-{k:06d}")
                            p.hset(keys.kernel(kid), mapping={"id": kid, "agent": f"i-{k % n:05d}"})
                        await p.execute()
                times = []
                for _ in range(300):
                    t0 = time.perf_counter()
                    got = await reg.reserve("python3")
                    times.append((time.perf_counter() - t0) * 1000)
                    assert isinstance(got, Placement)
                    await reg.release(got.agent_id)
                p50s[n] = statistics.median(times)
                print(
                    f"  {n:>5} agents: decision p50 {p50s[n]:.3f} ms, p99 {pct(times, 0.99):.3f} ms"
                )
            hb = []
            for i in range(300):
                aid = AgentId(f"i-{i % 1000:05d}")
                t0 = time.perf_counter()
                async with redis.pipeline(transaction=True) as tx:
                    tx.hset(keys.agent(aid), mapping=_agent_fields(aid, i))
                    tx.set(keys.agent_alive(aid), b"1", px=600_000)
                    tx.sadd(keys.agents(), aid)
                    await tx.execute()
                hb.append((time.perf_counter() - t0) * 1000)
            hb50 = statistics.median(hb)
            print(f"  heartbeat write p50 {hb50:.3f} ms (1,000 agents, 10,000 kernels)")
            sweeps = []
            for _ in range(10):
                t0 = time.perf_counter()
                await reg.refresh_index(await reg.agents())
                sweeps.append((time.perf_counter() - t0) * 1000)
            sweep = statistics.median(sweeps)
            print(f"  gateway liveness sweep of 1,000 agents p50 {sweep:.1f} ms"
                  f" ({sweep:.3f} us per heartbeat handled)")  # fmt: skip
            flat = p50s[1000] / p50s[10]
            ok = p50s[1000] <= 1.0 and flat <= 1.5
            print(f"  p50 at 1,000 agents {p50s[1000]:.3f} ms, 1,000/10 ratio {flat:.2f} "
                  f"(target <= 1 ms, <= 1.5x): {'OK' if ok else 'MISSED'}")  # fmt: skip
        finally:
            await redis.aclose()


def _agent_fields(aid: str, i: int) -> dict[str, Any]:
    return {
        "id": aid,
        "addr": f"tcp://10.0.{i // 250}.{i % 250}:6001",
        "max_kernels": 32,
        "num_kernels": i % 16,
        "langs": "python3,nodejs,c,cpp,shell",
        "last_heartbeat": time.time(),
        "status": "alive",
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-registry", action="store_true")
    args = parser.parse_args()
    if not args.skip_registry:
        await bench_registry()
    if not args.skip_api:
        await bench_api(args.seconds)


if __name__ == "__main__":
    asyncio.run(main())
