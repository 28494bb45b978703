"""How soon Sorna notices what did not happen: the timings the tests assert only in order.

Each figure beside its baseline from the same run (medians of ``--rounds``):

1. RPC deadline: a call with ``timeout=0.2`` to a method that never answers, until
   ``RPCTimeout``; and one whose per-method default is 0.1 s. Baseline: ``asyncio.wait_for``
   of an event never set, with the same deadline, in the same loop.
2. A kernel container killed from outside (Docker and the sorna/kernel-python3 image;
   skipped without an engine or with ``--skip-docker``): from the ``kill`` request to the
   agent's ``kernel_terminated`` event. Baseline: from the same request to the ``die`` event
   at a bare Docker event subscriber of this process.
3. An agent SIGKILLed in the middle of a run: from the SIGKILL to the gateway's answer to the
   waiting request (503 or 404). Baseline: what was left of the agent's alive key at the kill
   plus one liveness interval, the bound the sweep promises.

Usage: ``python bench/deadlines.py [--rounds N] [--skip-docker]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from sorna.common.constants import LABEL_KERNEL_ID
from sorna.common.errors import RPCTimeout
from sorna.common.events import decode_entry
from sorna.common.keys import RedisKeys
from sorna.common.rpc import RPCClient, RPCServer
from sorna.common.servers import PostgresServer, ValkeyServer
from sorna.common.testing.leftovers import scratch_folder
from sorna.common.testing.plugin import docker_problem
from sorna.gateway.testing import (
    TEST_TIMINGS,
    AgentProcesses,
    agent_env,
    gateway_settings,
    live_stack,
    start_gateway,
    until,
)

KEYS = RedisKeys()
LANG = {"lang": "python3"}


def line(name: str, samples: list[float], base: list[float], base_name: str) -> None:
    measured, baseline = statistics.median(samples), statistics.median(base)
    print(
        f"{name:<34} {measured * 1e3:8.1f} ms   {base_name:<26} {baseline * 1e3:8.1f} ms   "
        f"ratio {measured / baseline:5.2f}",
        flush=True,
    )


# ------------------------------------------------------------------ 1. RPC deadlines


async def _never(params: dict[str, Any]) -> Any:
    await asyncio.Event().wait()


async def _time(call: Callable[[], Awaitable[object]], expected: type[BaseException]) -> float:
    started = time.perf_counter()
    try:
        await call()
    except expected:
        return time.perf_counter() - started
    raise AssertionError(f"expected {expected.__name__}")


async def rpc_deadlines(rounds: int) -> None:
    async with RPCServer(address="tcp://127.0.0.1:0", handlers={"hang": _never}) as server:
        async with RPCClient(server.address, timeout=3600.0, method_timeouts={"hang": 0.1}) as c:
            explicit, default, bare, bare_short = [], [], [], []
            for _ in range(rounds):
                explicit.append(await _time(lambda: c.call("hang", timeout=0.2), RPCTimeout))
                bare.append(
                    await _time(lambda: asyncio.wait_for(asyncio.Event().wait(), 0.2), TimeoutError)
                )
                default.append(await _time(lambda: c.call("hang"), RPCTimeout))
                bare_short.append(
                    await _time(lambda: asyncio.wait_for(asyncio.Event().wait(), 0.1), TimeoutError)
                )
    line("RPC call, timeout=0.2 s", explicit, bare, "wait_for(0.2 s)")
    line("RPC call, method default 0.1 s", default, bare_short, "wait_for(0.1 s)")


# ------------------------------------------------------------------ 2. kernel killed (Docker)


async def _next_event(redis: Redis, since: str, name: str, kernel_id: str) -> None:
    while True:
        for _, entries in await redis.xread({KEYS.events(): since}, block=1000) or []:
            for eid, fields in entries:
                since = eid.decode()
                event = decode_entry(since, fields)
                if event.name == name and getattr(event.body, "kernel_id", None) == kernel_id:
                    return


async def _die_event(docker: Any, container_id: str, subscribed: asyncio.Event) -> None:
    subscriber = docker.events.subscribe(create_task=False)
    runner = asyncio.create_task(docker.events.run(filters='{"event": ["die"]}'))
    try:
        await asyncio.sleep(0.2)  # the stream is open once Docker answered
        subscribed.set()
        while (event := await subscriber.get()) is not None:
            if (event.get("Actor") or {}).get("ID") == container_id:
                return
    finally:
        runner.cancel()
        with contextlib.suppress(BaseException):
            await runner


async def kernel_killed(rounds: int, redis_url: str, postgres_url: str, scratch: Path) -> None:
    import aiodocker

    agent_seen, engine_seen = [], []
    async with (
        live_stack(
            redis_url=redis_url,
            postgres_url=postgres_url,
            scratch_root=scratch,
            agent={"backend": "docker"},
        ) as live,
        Redis.from_url(redis_url) as redis,
    ):
        docker = aiodocker.Docker()
        api = await live.gateway.api(concurrency_limit=rounds + 1)
        try:
            for n in range(rounds):
                status, made = await api.json(
                    "POST", "/v2/kernel/create", {**LANG, "clientSessionToken": f"kill-{n}"}
                )
                assert status == 201, made
                kid = made["kernelId"]
                found = await docker.containers.list(
                    filters=f'{{"label": ["{LABEL_KERNEL_ID}={kid}"]}}'
                )
                cid = found[0].id
                since = (await redis.xrevrange(KEYS.events(), count=1) or [(b"0-0", {})])[0][0]
                subscribed = asyncio.Event()
                die = asyncio.create_task(_die_event(docker, cid, subscribed))
                await subscribed.wait()
                terminated = asyncio.create_task(
                    _next_event(redis, since.decode(), "kernel_terminated", kid)
                )
                killed = time.perf_counter()  # the engine's event can precede kill()'s reply
                await docker.containers.container(cid).kill()
                await die
                engine_seen.append(time.perf_counter() - killed)
                await terminated
                agent_seen.append(time.perf_counter() - killed)
        finally:
            await docker.close()
    line("container killed -> kernel_terminated", agent_seen, engine_seen, "bare `die` subscriber")


# ------------------------------------------------------------------ 3. agent killed


async def agent_killed(rounds: int, redis_url: str, postgres_url: str, scratch: Path) -> None:
    patient = dataclasses.replace(TEST_TIMINGS, rpc_timeout_s=3600.0, execute_timeout_s=3600.0)
    settings = gateway_settings(redis_url=redis_url, postgres_url=postgres_url, timings=patient)
    measured, bound = [], []
    async with aiohttp.ClientSession() as session, Redis.from_url(redis_url) as redis:
        await redis.flushall()  # no agents of an earlier section
        gateway = await start_gateway(settings, session)
        try:
            api = await gateway.api()
            for n in range(rounds):
                agent_id, root = f"bench-killable-{n}", scratch / f"a{n}"
                env = agent_env(agent_id=agent_id, scratch_root=root, redis_url=redis_url)
                agents = AgentProcesses(env, root)
                proc = agents.start()
                try:
                    alive = KEYS.agent_alive(agent_id)  # type: ignore[arg-type]

                    async def joined(alive: str = alive) -> bool:
                        return bool(await redis.exists(alive))

                    await until(joined, within=60)
                    status, made = await api.json(
                        "POST", "/v2/kernel/create", {**LANG, "clientSessionToken": f"ak-{n}"}
                    )
                    assert status == 201, made
                    path = f"/v2/kernel/{made['kernelId']}"

                    async def long_run(path: str = path) -> int:
                        body = {"code": "import time\ntime.sleep(600)"}
                        status, r = await api.json("POST", path, body)
                        while status == 200 and r["result"]["status"] == "continued":
                            body = {"mode": "continue", "code": "", "runId": r["result"]["runId"]}
                            status, r = await api.json("POST", path, body)
                        return status

                    waiting = asyncio.create_task(long_run())
                    await asyncio.sleep(1.0)  # the run is under way
                    left = await redis.pttl(alive) / 1e3
                    proc.send_signal(signal.SIGKILL)
                    killed = time.perf_counter()
                    status = await waiting
                    measured.append(time.perf_counter() - killed)
                    bound.append(left + patient.liveness_interval_s)
                    assert status in (503, 404), status
                finally:
                    await asyncio.to_thread(agents.close)
        finally:
            await gateway.server.close()
    line("agent SIGKILLed -> request answered", measured, bound, "alive TTL left + 1 sweep")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measurements per figure")
    parser.add_argument("--skip-docker", action="store_true", help="no killed container")
    args = parser.parse_args()
    asyncio.run(rpc_deadlines(args.rounds * 4))
    no_docker = "--skip-docker" if args.skip_docker else docker_problem()
    with scratch_folder("bd-") as scratch, ValkeyServer() as valkey, PostgresServer() as pg:
        if no_docker:
            print(f"container killed: skipped ({no_docker})", flush=True)
        else:
            asyncio.run(kernel_killed(args.rounds, valkey.url, pg.url(), scratch / "docker"))
        asyncio.run(agent_killed(args.rounds, valkey.url, pg.url(), scratch / "agents"))


if __name__ == "__main__":
    sys.exit(main())
