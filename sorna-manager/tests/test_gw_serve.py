"""``sorna-manager serve`` as operators run it, and Redis going away under a gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time

import aiohttp
import pytest

from sorna.common.config import RedisSettings
from sorna.common.servers import ValkeyServer, free_port
from sorna.gateway.testing import Gateway
from sorna.manager.config import ManagerSettings

PROB = "https://api.sorna.io/probs/"


@pytest.mark.slow
async def test_serve_workers_and_separate_metrics(redis_url: str, postgres_url: str) -> None:
    port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SORNA_")},
        "SORNA_REDIS_URL": redis_url,
        "SORNA_DB_URL": postgres_url,
        "SORNA_SERVER_HOST": "127.0.0.1",
        "SORNA_SERVER_METRICS_HOST": "127.0.0.1",
        "SORNA_SERVER_METRICS_PORT": str(metrics_port),
        "SORNA_LOGGING_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the event loop matters
        [sys.executable, "-m", "sorna.manager.cli", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/v2") as r:
                        assert r.status == 200
                        assert r.headers["Server"] == "Sorna-API/v2.20170315"
                        break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    await asyncio.sleep(0.2)
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 404  # not on the API address when bound separately
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                        assert r.status == 200
                        assert "sorna_live_agents" in await r.text()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("no metrics listener")
    finally:
        os.killpg(proc.pid, 15)
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            await asyncio.to_thread(proc.wait)


async def test_separate_metrics_listener_is_the_gateways(
    start_gateway,  # type: ignore[no-untyped-def]
    settings: ManagerSettings,
) -> None:
    """With ``server.metrics_host`` set, the gateway app itself serves its /metrics there, and
    only there: the API address has no /metrics, the metrics address nothing but it."""
    metrics_port = free_port()
    own = dataclasses.replace(
        settings,
        server=dataclasses.replace(
            settings.server, metrics_host="127.0.0.1", metrics_port=metrics_port
        ),
    )
    gw: Gateway = await start_gateway(own)
    api = await gw.api()
    assert (await api.json("GET", "/v2/authorize"))[0] == 200
    async with api.session.get(api.server.make_url("/metrics")) as r:
        assert r.status == 404
    base = f"http://127.0.0.1:{metrics_port}"
    async with api.session.get(f"{base}/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    # The counters of the API's own requests: the same app's metrics, not a copy's.
    assert 'sorna_http_requests_total{method="GET",route="/v2/authorize",status="200"} 1' in text
    assert 'route="/metrics"' not in text
    assert "sorna_live_kernels 0" in text and "sorna_live_agents 0" in text
    async with api.session.get(f"{base}/v2") as r:
        assert r.status == 404
    async with api.session.post(f"{base}/metrics") as r:
        assert r.status == 405


async def test_redis_unreachable_is_503(start_gateway, settings: ManagerSettings) -> None:  # type: ignore[no-untyped-def]
    valkey = ValkeyServer()
    await asyncio.to_thread(valkey.start)
    try:
        own = dataclasses.replace(settings, redis=RedisSettings(url=valkey.url))
        gw: Gateway = await start_gateway(own)
        api = await gw.api()
        assert (await api.json("GET", "/v2/authorize"))[0] == 200
        await asyncio.to_thread(valkey.stop)
        for _ in range(3):
            status, problem = await api.json("GET", "/v2/authorize")
            assert status == 503, problem
            assert problem["type"] == PROB + "service-unavailable"
        async with api.session.get(api.server.make_url("/v2")) as r:
            assert r.status == 200
    finally:
        if valkey.running:
            await asyncio.to_thread(valkey.stop)
