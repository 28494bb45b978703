"""Adding a language is one folder: the list of languages is the folders of sorna-repl/kernels,
and no Python source of the components spells a language's name or alias, but the places
listed here with their reason (setting defaults, the python3 evaluator, program names)."""

from __future__ import annotations

import ast
from pathlib import Path

from sorna.repl import paths
from sorna.repl.kernelspec import kernel_specs

ROOT = Path(__file__).resolve().parents[1]

#: (file, name) -> why that source may spell it.
ALLOWED = {
    ("src/sorna/singlepc/config.py", "python3"): "setting default: the image `sorna up` builds",
    ("sorna-client/src/sorna/client/cli/__init__.py", "shell"): "`sorna shell`'s default LANG",
    ("sorna-client/src/sorna/client/cli/__init__.py", "c"): "the `lcc` shortcut's language",
    ("sorna-client/src/sorna/client/cli/__init__.py", "python3"): "the `lpython` shortcut's",
    ("sorna-client/src/sorna/client/cli/run.py", "py"): "a prefix test of `sorna run FILE.py`",
    ("sorna-repl/src/sorna/repl/pyexec.py", "python3"): "the python3 evaluator's own name",
    ("sorna-repl/src/sorna/repl/runner.py", "bash"): "the program batch command lines run in",
    ("sorna-repl/src/sorna/repl/runner.py", "gcc"): "batch `build *` of C sources (compiler)",
    ("sorna-repl/src/sorna/repl/runner.py", "g++"): "batch `build *` of C++ sources (compiler)",
    ("sorna-media/src/sorna/mediaassets/__init__.py", "js"): "the folder of the browser assets",
}


def _names() -> dict[str, str]:
    """Every name and alias of every language (lower case) -> its language."""
    names: dict[str, str] = {}
    for lang, spec in kernel_specs().items():
        names[lang] = lang
        names.update({alias.lower(): lang for alias in spec.aliases})
    return names


def _sources() -> list[Path]:
    roots = [*sorted(ROOT.glob("sorna-*/src")), ROOT / "src"]
    return [path for root in roots for path in sorted(root.rglob("*.py"))]


def test_the_languages_are_the_kernel_folders() -> None:
    folders = sorted(p.name for p in paths.KERNELS_DIR.iterdir() if (p / "kernel.toml").is_file())
    assert folders and sorted(kernel_specs()) == folders
    others = sorted(
        p.name for p in paths.KERNELS_DIR.iterdir() if p.is_dir() and p.name not in folders
    )
    assert others == [], "a folder under kernels/ without kernel.toml"


def test_no_source_spells_a_language_name() -> None:
    names = _names()
    found: set[tuple[str, str]] = set()
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                # Exact spelling: the "C" locale is no language.
                if node.value in names:
                    found.add((rel, node.value))
    unexplained = sorted(found - set(ALLOWED))
    assert unexplained == [], "a language named outside its folder (or add it to ALLOWED)"
    # An allowance that no longer applies is dropped, so the list stays the true exceptions.
    assert sorted(set(ALLOWED) - found) == []


def test_the_check_sees_a_language_table() -> None:
    """The scan catches what it is there for: a table of languages in some module."""
    source = 'CANONICAL = ("python3", "nodejs")\nALIASES = {"py": "python3"}\n'
    names = _names()
    spelled = {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    }
    assert spelled == {"python3", "nodejs", "py"}
