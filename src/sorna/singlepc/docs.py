"""The generated parts of the docs: the configuration and API references.

``python -m sorna.singlepc.docs`` (from a checkout) rewrites the marked sections of
``README.md`` (configuration, from the settings objects via ``sorna.common.config.describe``)
and ``docs/api.md`` (endpoints, from the gateway's OpenAPI document); ``--check`` only
reports whether they are stale (exit 1), as the tests do.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sorna.common.config import describe

from .config import ENV_PREFIX, UpSettings


def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN generated {name}: python -m sorna.singlepc.docs -->",
        f"<!-- END generated {name} -->",
    )


def _cell(value: Any) -> str:
    text = "(empty)" if value in ("", []) else str(value)
    if isinstance(value, list):
        text = ",".join(map(str, value)) or "(empty)"
    return text.replace("|", "\\|")


def config_reference() -> str:
    """Markdown tables of every setting of the manager, the agent and ``sorna up``."""
    from sorna.agent.config import AgentSettings
    from sorna.manager.config import ManagerSettings

    parts: list[str] = []
    sections: list[tuple[str, type[Any], str]] = [
        ("`sorna-manager` (gateway)", ManagerSettings, "SORNA_"),
        ("`sorna-agent`", AgentSettings, "SORNA_"),
        ("`sorna up` (single-PC mode)", UpSettings, ENV_PREFIX),
    ]
    for title, cls, prefix in sections:
        parts.append(f"#### {title}\n")
        parts.append("| key | environment | default | what it is |")
        parts.append("|---|---|---|---|")
        for name, env, default, text in describe(cls, prefix):
            parts.append(f"| `{name}` | `{env}` | `{_cell(default)}` | {_cell(text)} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def openapi_document() -> dict[str, Any]:
    """The gateway's OpenAPI document, as ``GET /v2/openapi.json`` serves it."""
    from sorna.common.config import load_settings
    from sorna.gateway.app import create_app
    from sorna.gateway.openapi import document
    from sorna.manager.config import ManagerSettings

    return document(create_app(load_settings(ManagerSettings, env={})))


def api_reference(doc: dict[str, Any]) -> str:
    """A Markdown table of every operation of an OpenAPI document."""
    lines = [
        f"API version `{doc['info']['version']}`, OpenAPI {doc['openapi']}.\n",
        "| method | path | what it does | success | signed |",
        "|---|---|---|---|---|",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = next(iter(op["responses"]))
            signed = "no" if op.get("security") == [] else "yes"
            summary = op["summary"].replace("|", "\\|")
            lines.append(f"| {method.upper()} | `{path}` | {summary} | {ok} | {signed} |")
    return "\n".join(lines) + "\n"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the generated section ``name`` holding ``body``."""
    begin, end = _markers(name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated section {name!r} ({begin})")
    return pattern.sub(lambda _: f"{begin}\n{body}{end}", text, count=1)


def targets(root: Path) -> dict[Path, tuple[str, str]]:
    """File -> (section name, generated body)."""
    return {
        root / "README.md": ("configuration", config_reference()),
        root / "docs" / "api.md": ("endpoints", api_reference(openapi_document())),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sorna.singlepc.docs", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout")
    parser.add_argument("--check", action="store_true", help="only report stale sections")
    args = parser.parse_args(argv)
    stale = []
    for path, (name, body) in targets(args.root).items():
        old = path.read_text()
        new = replace_section(old, name, body)
        if new != old:
            stale.append(str(path))
            if not args.check:
                path.write_text(new)
    if stale:
        print(("stale: " if args.check else "updated: ") + ", ".join(stale))
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
