"""The demo console through a live stack: a real gateway (console enabled) and a real agent
(local backend, a python3 kernel of this venv) on the harness's Valkey and PostgreSQL
(:func:`sorna.gateway.testing.live_stack`).

The API test checks that ``plt.show()`` comes back as an ``image/svg+xml`` console item; the
browser tests open ``/console/`` in Debian's chromium, type the keys into the page and run code.
``make screenshots`` runs :func:`test_console_screenshots` with ``SORNA_SCREENSHOTS=1``, which
writes ``docs/console-drawing.png`` and ``docs/console-plot.png``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sorna.client import AsyncSession, ClientConfig
from sorna.gateway.app import create_app
from sorna.gateway.testing import live_stack
from sorna.manager.config import ManagerSettings, ServerSettings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LANG = {"lang": "python3", "clientSessionToken": "media-console-test"}
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.show()\n"
DRAWING = """\
from sorna.drawing import Canvas, Colors, Turtle

c = Canvas(320, 200, bgcolor=Colors.White)
c.rectangle(20, 20, 80, 50, stroke=Colors.Blue, fill=Colors.Blue)
c.circle(250, 60, 35, stroke=Colors.Red, fill=Colors.Red)
t = Turtle(c)
t.penup()
t.setpos(120, 180)
t.pendown()
for _ in range(4):
    t.forward(80)
    t.left(90)
c.update()
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("SORNA_REQUIRE_DOCKER") == "1":  # CI: every test must run
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@dataclasses.dataclass(frozen=True)
class Live:
    endpoint: str
    user: ClientConfig


@pytest.fixture
async def live(redis_url: str, postgres_url: str, scratch_root: Path) -> AsyncIterator[Live]:
    """A gateway with the console enabled and one local-backend agent."""
    async with live_stack(
        redis_url=redis_url,
        postgres_url=postgres_url,
        scratch_root=scratch_root,
        gateway={"server": ServerSettings(console_enabled=True)},
    ) as stack:
        kp = await stack.gateway.keypair(concurrency_limit=10, rate_limit=10_000)
        user = ClientConfig(kp.access_key, kp.secret_key, endpoint=stack.endpoint)
        yield Live(endpoint=stack.endpoint, user=user)


async def test_plt_show_through_the_api_is_an_svg_item(live: Live) -> None:
    if not HAVE_MATPLOTLIB:
        pytest.skip("this venv lacks matplotlib (pip install -e sorna-media[test])")
    async with AsyncSession(live.user) as session:
        made = await session.request("POST", session.url("kernel", "create"), json_body=LANG)
        kernel = session.url("kernel", made.json_object()["kernelId"])
        console: list[Any] = []
        try:
            body: dict[str, Any] = {"mode": "query", "code": PLOT}
            while True:
                reply = (await session.request("POST", kernel, json_body=body)).json_object()
                result = reply["result"]
                console += result["console"]
                if result["status"] != "continued":
                    break
                body = {"mode": "continue", "code": "", "runId": result["runId"]}
        finally:
            await session.request("DELETE", kernel)
    assert result["status"] == "finished", console
    media = [item[1] for item in console if item[0] == "media"]
    assert [m[0] for m in media] == ["image/svg+xml"], console
    assert "<svg" in media[0][1]


async def test_console_is_static_and_outside_the_api(live: Live) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.endpoint}/console", allow_redirects=False) as r:
            assert r.status == 308 and r.headers["Location"] == "/console/"
        async with http.get(f"{live.endpoint}/console/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert "Sorna console" in await r.text()
        async with http.get(f"{live.endpoint}/console/sorna-media/index.js") as r:
            assert r.status == 200 and r.content_type == "text/javascript"
        for missing in ("/console/nope.js", "/console/%2e%2e/pyproject.toml"):
            async with http.get(f"{live.endpoint}{missing}") as r:
                assert r.status == 404, missing
        async with http.post(f"{live.endpoint}/console/") as r:
            assert r.status in (404, 405)
        async with http.get(f"{live.endpoint}/v2/openapi.json") as r:
            doc = await r.json()
    assert not [p for p in doc["paths"] if p.startswith("/console")]


async def test_console_is_off_by_default() -> None:
    app = create_app(ManagerSettings())
    server = TestServer(app, host="127.0.0.1")
    # Only routing is exercised: no cleanup context (Redis, PostgreSQL) is started.
    app.cleanup_ctx.clear()
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/console/") as r:
                assert r.status == 404
    finally:
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if shutil.which(CHROMIUM) is None:
        _unavailable("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e sorna-media[test])")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def _open_console(browser: Any, live: Live) -> Any:
    page = await browser.new_page(viewport={"width": 900, "height": 720})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Failed loads are checked by URL below (the browser's own favicon.ico request is not ours).
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.sorna_errors = errors
    await page.goto(f"{live.endpoint}/console/")
    await page.wait_for_selector("details#settings[open]", state="attached")
    await page.fill("#access-key", live.user.access_key)
    await page.fill("#secret-key", live.user.secret_key)
    return page


async def _run(page: Any, code: str) -> None:
    await page.fill("#code", code)
    await page.click("#run")
    await page.wait_for_function(
        "() => ['finished', 'error'].includes(document.getElementById('status').textContent)",
        timeout=60_000,
    )
    assert await page.text_content("#status") == "finished", await page.text_content("#output")


async def test_the_console_runs_print_against_the_live_stack(browser: Any, live: Live) -> None:
    page = await _open_console(browser, live)
    await _run(page, "print(1)")
    assert await page.inner_text("#output pre.sorna-stdout") == "1\n"
    assert page.sorna_errors == []


async def test_console_screenshots(browser: Any, live: Live, tmp_path: Path) -> None:
    """Screenshots of the page with a drawing and a plot (written to docs/ on request)."""
    if not HAVE_MATPLOTLIB:
        pytest.skip("this venv lacks matplotlib (pip install -e sorna-media[test])")
    out = ROOT / "docs" if os.environ.get("SORNA_SCREENSHOTS") == "1" else tmp_path
    page = await _open_console(browser, live)
    await page.evaluate("() => { document.getElementById('settings').open = false; }")
    await _run(page, DRAWING)
    await page.wait_for_selector("canvas.sorna-drawing[data-idle=true]", state="attached")
    pixel = await page.evaluate(
        "() => Array.from(document.querySelector('canvas.sorna-drawing')"
        ".getContext('2d').getImageData(250, 60, 1, 1).data)"
    )
    assert pixel == [255, 0, 0, 255]
    await page.screenshot(path=str(out / "console-drawing.png"), full_page=True)

    await page.click("#clear")
    await _run(page, PLOT)
    await page.wait_for_function(
        "() => { const i = document.querySelector('#output img.sorna-image');"
        " return i !== null && i.complete && i.naturalWidth > 0; }"
    )
    await page.screenshot(path=str(out / "console-plot.png"), full_page=True)
    assert page.sorna_errors == []
    for name in ("console-drawing.png", "console-plot.png"):
        assert (out / name).stat().st_size > 5_000
