"""The JS package's own unit tests (node:test), and its esbuild bundle."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sorna.mediaassets import CONSOLE_DIR, JS_MODULE_DIR

JS_DIR = Path(__file__).resolve().parents[1] / "js"


def _need_npm() -> str:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        if os.environ.get("SORNA_REQUIRE_DOCKER") == "1":  # CI: every test must run
            pytest.fail("node and npm are required in CI (SORNA_REQUIRE_DOCKER=1)")
        pytest.skip("node/npm are not installed")
    return npm


def test_npm_test_passes() -> None:
    npm = _need_npm()
    proc = subprocess.run(
        [npm, "test"], cwd=JS_DIR, capture_output=True, text=True, timeout=100, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout


@pytest.mark.slow
def test_npm_build_makes_one_es_module() -> None:
    npm = _need_npm()
    if not (JS_DIR / "node_modules" / "esbuild").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=100)
    subprocess.run([npm, "run", "build"], cwd=JS_DIR, check=True, timeout=60, capture_output=True)
    bundle = (JS_DIR / "dist" / "sorna-media.js").read_text()
    assert "export {" in bundle and "renderResult" in bundle and "import " not in bundle


def test_asset_paths_point_at_the_static_files() -> None:
    assert (CONSOLE_DIR / "index.html").is_file()
    assert (CONSOLE_DIR / "console.js").is_file()
    assert (JS_MODULE_DIR / "index.js").is_file()
