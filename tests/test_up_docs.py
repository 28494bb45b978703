"""The generated parts of README.md and docs/api.md are current, and say what they must."""

from __future__ import annotations

from pathlib import Path

from sorna.singlepc import docs

ROOT = Path(__file__).resolve().parents[1]


def test_generated_sections_are_current() -> None:
    for path, (name, body) in docs.targets(ROOT).items():
        text = path.read_text()
        assert docs.replace_section(text, name, body) == text, (
            f"{path.name} is stale: run `.venv/bin/python -m sorna.singlepc.docs`"
        )


def test_configuration_reference_covers_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for env in ("SORNA_REDIS_URL", "SORNA_DB_URL", "SORNA_BACKEND", "SORNA_UP_DATA_DIR"):
        assert f"`{env}`" in readme


def test_readme_quick_start_is_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Quick start")
    block = readme[start:].split("```")[1]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
    for section in (
        "## A first session",
        "## The API in brief",
        "## Languages",
        "## Configuration",
        "## Deployment with compose",
        "## Adding a language",
    ):
        assert section in readme
    assert "(docs/api.md)" in readme


def test_api_reference_lists_every_route_of_the_openapi_document() -> None:
    doc = docs.openapi_document()
    api = (ROOT / "docs" / "api.md").read_text()
    for path, ops in doc["paths"].items():
        for method in ops:
            assert f"| {method.upper()} | `{path}` |" in api
