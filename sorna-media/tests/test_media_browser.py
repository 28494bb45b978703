"""The renderer in real headless Chromium (Debian's, driven by Playwright; nothing downloaded)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sorna.drawing import Canvas, Colors
from sorna.mediaassets import CONSOLE_DIR, JS_MODULE_DIR

JS_DIR = Path(__file__).resolve().parents[1] / "js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DRAWING = "application/x-sorna-drawing"


def _unavailable(reason: str) -> None:
    if os.environ.get("SORNA_REQUIRE_DOCKER") == "1":  # CI: every test must run
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves js/ and, like the gateway will, the console with the module beside it."""

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0]
        prefix = "/console/sorna-media/"
        if clean.startswith(prefix):
            return str(JS_MODULE_DIR / clean[len(prefix) :])
        if clean.startswith("/console/"):
            return str(CONSOLE_DIR / clean[len("/console/") :])
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    handler = functools.partial(_Handler, directory=str(JS_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
async def page(server: str) -> AsyncIterator[Any]:
    if shutil.which(CHROMIUM) is None:
        _unavailable("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e sorna-media[test])")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{server}/test/browser/harness.html")
            await page.wait_for_selector("body[data-ready=true]", state="attached")
            yield page
            assert errors == []
        finally:
            await browser.close()


def drawing_item(canvas: Canvas) -> list[object]:
    record = canvas.record()
    return ["media", [record["type"], record["data"]]]


async def render(page: Any, items: list[object], animation_ms: int = 0) -> None:
    await page.evaluate(
        "([items, ms]) => window.sornaMedia.renderResult("
        "{status: 'finished', console: items}, document.getElementById('out'), {animationMs: ms})",
        [items, animation_ms],
    )


async def pixel(page: Any, x: int, y: int) -> list[int]:
    rgba: list[int] = await page.evaluate(
        "([x, y]) => Array.from(document.querySelector('canvas.sorna-drawing')"
        ".getContext('2d').getImageData(x, y, 1, 1).data)",
        [x, y],
    )
    return rgba


async def wait_idle(page: Any) -> None:
    await page.wait_for_selector("canvas.sorna-drawing[data-idle=true]", state="attached")


async def test_a_drawing_paints_where_its_shapes_are(page: Any) -> None:
    c = Canvas(100, 80, bgcolor=Colors.White)
    c.rectangle(10, 10, 30, 20, stroke=Colors.Red, fill=Colors.Red)
    c.circle(70, 50, 8, stroke=Colors.Blue, fill=Colors.Blue)
    c.line(0, 75, 100, 75, stroke=Colors.Black, line_width=3)
    await render(page, [drawing_item(c)])
    await wait_idle(page)
    size = await page.evaluate(
        "() => { const c = document.querySelector('canvas'); return [c.width, c.height]; }"
    )
    assert size == [100, 80]
    assert await pixel(page, 25, 20) == [255, 0, 0, 255]
    assert await pixel(page, 70, 50) == [0, 0, 255, 255]
    assert await pixel(page, 50, 75) == [0, 0, 0, 255]
    assert await pixel(page, 5, 5) == [255, 255, 255, 255]
    assert await pixel(page, 90, 20) == [255, 255, 255, 255]


async def test_an_update_animates_the_same_canvas(page: Any) -> None:
    c = Canvas(100, 40)
    dot = c.circle(15, 20, 8, stroke=Colors.Red, fill=Colors.Red)
    await render(page, [drawing_item(c)], animation_ms=800)
    await wait_idle(page)
    assert await pixel(page, 15, 20) == [255, 0, 0, 255]
    dot.x = 85
    await render(page, [drawing_item(c)], animation_ms=800)
    # One canvas, updated in place; the dot leaves, passes through the middle, arrives.
    assert await page.locator("canvas.sorna-drawing").count() == 1
    seen_middle = False
    for _ in range(200):
        if (await pixel(page, 50, 20))[:3] == [255, 0, 0]:
            seen_middle = True
            break
        await page.wait_for_timeout(10)
    assert seen_middle, "the dot never passed the middle"
    await wait_idle(page)
    assert await pixel(page, 85, 20) == [255, 0, 0, 255]
    assert await pixel(page, 15, 20) == [255, 255, 255, 255]


async def test_text_html_images_and_unknown_media(page: Any) -> None:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        '<rect width="10" height="10" fill="red"/></svg>'
    )
    await render(
        page,
        [
            ["stdout", "hello "],
            ["stdout", "world\n"],
            ["stderr", "oops\n"],
            ["html", "<table><tr><td>ada</td></tr></table>"],
            ["media", ["image/svg+xml", svg]],
            ["media", ["image/png", "iVBORw0KGgo="]],
            ["media", ["application/x-unknown", "..."]],
        ],
    )
    assert await page.locator("pre.sorna-stdout").all_inner_texts() == ["hello world\n"]
    assert await page.locator("pre.sorna-stderr").inner_text() == "oops\n"
    assert await page.locator(".sorna-html td").inner_text() == "ada"
    srcs = await page.locator("img.sorna-image").evaluate_all("els => els.map(e => e.src)")
    assert srcs[0].startswith("data:image/svg+xml") and srcs[1].startswith("data:image/png")
    natural = await page.locator("img.sorna-image").first.evaluate(
        "img => img.decode().then(() => img.naturalWidth)"
    )
    assert natural == 10
    assert (
        "unsupported media: application/x-unknown"
        in await page.locator(".sorna-unknown").inner_text()
    )


async def test_the_console_page_loads_its_renderer(page: Any, server: str) -> None:
    await page.goto(f"{server}/console/index.html")
    await page.wait_for_function("() => document.getElementById('run-form') !== null")
    # console.js ran (it opens the key settings when no key is stored), so its import of
    # ./sorna-media/index.js resolved.
    await page.wait_for_selector("details#settings[open]", state="attached")
    assert await page.locator("#lang option").count() >= 5
    await page.evaluate("() => localStorage.clear()")
