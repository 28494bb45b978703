"""docs/architecture.md stays true: every file it names exists, and every name it gives in
``path:Name`` (or ``path:Class.member``) form is defined in that file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"

# `a/b/c.py`, `a/b/c.py:name`, `a/b/c.py:Class.member`, `a/folder/`
_REF = re.compile(r"`((?:sorna-[a-z]+|src|bench|docs)/[^`\s:]*)(?::([A-Za-z_][\w.]*))?`")


def _refs() -> list[tuple[str, str | None]]:
    text = DOC.read_text()
    refs: list[tuple[str, str | None]] = []
    for m in _REF.finditer(text):
        refs.append((m.group(1), m.group(2)))
    return refs


def _defines(source: str, name: str) -> bool:
    first = name.split(".")[0]
    last = name.split(".")[-1]
    word = re.escape(last)
    pattern = rf"^\s*(?:async\s+def|def|class|func)\s+{word}\b|^\s*{word}\b\s*[:=]"
    if not re.search(pattern, source, re.M):
        return False
    return first == last or re.search(rf"^class\s+{re.escape(first)}\b", source, re.M) is not None


def test_the_architecture_page_names_only_files_that_exist() -> None:
    refs = _refs()
    assert len(refs) > 40  # the page is a map: it points at many places
    missing = [path for path, _ in refs if not (ROOT / path).exists()]
    assert missing == []


def test_the_names_it_gives_are_defined_where_it_says() -> None:
    wrong = []
    for path, name in _refs():
        if name is not None and path.endswith(".py"):
            if not _defines((ROOT / path).read_text(), name):
                wrong.append(f"{path}:{name}")
    assert wrong == []


def test_it_names_no_file_the_checker_cannot_see() -> None:
    # A reference spelled without its package folder would escape the two tests above.
    text = DOC.read_text()
    bare = [m for m in re.findall(r"`([\w/]+\.(?:py|go|sql|json))`", text) if "/" not in m]
    assert bare == []


def test_a_broken_reference_is_caught() -> None:
    source = "class Kernel:\n    async def execute(self) -> None: ...\n"
    assert _defines(source, "Kernel.execute")
    assert not _defines(source, "Kernel.interrupt")
    assert not _defines(source, "Agent.execute")
