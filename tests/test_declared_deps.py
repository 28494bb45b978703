"""Every package declares the Sorna packages it imports.

Each distribution (the root ``sorna`` meta-package and every ``sorna-*/``) ships the
``sorna.<name>`` packages found under its ``src/sorna/``. A module in a distribution's
``src`` that imports ``sorna.<name>`` of another distribution must list that one in its
``[project] dependencies``, or, for an import guarded by ``except ImportError`` (an optional
feature with a clear message when it is missing) or made under ``if TYPE_CHECKING:``, in one
of its extras; a test module under its
``tests/`` may also rely on its ``test`` extra. No database, engine or network: this reads
files only.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Distribution:
    name: str
    folder: Path
    dependencies: frozenset[str]
    test_dependencies: frozenset[str]
    #: Everything any extra names (for the imports of optional features).
    extra_dependencies: frozenset[str]

    @property
    def packages(self) -> list[str]:
        """The ``sorna.<name>`` packages this distribution ships."""
        src = self.folder / "src" / "sorna"
        return sorted(p.name for p in src.iterdir() if p.is_dir() and p.name != "__pycache__")


def _names(requirements: list[str]) -> frozenset[str]:
    """Distribution names of requirement strings (``sorna-common[test]==2.0.0`` -> name)."""
    return frozenset(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower() for req in requirements)


def distributions() -> list[Distribution]:
    found = []
    for pyproject in [ROOT / "pyproject.toml", *sorted(ROOT.glob("sorna-*/pyproject.toml"))]:
        project = tomllib.loads(pyproject.read_text())["project"]
        extras = project.get("optional-dependencies", {})
        found.append(
            Distribution(
                name=project["name"],
                folder=pyproject.parent,
                dependencies=_names(project.get("dependencies", [])),
                test_dependencies=_names(extras.get("test", [])),
                extra_dependencies=_names([r for reqs in extras.values() for r in reqs]),
            )
        )
    return found


def owners() -> dict[str, str]:
    """``sorna.<name>`` package -> the distribution that ships it."""
    owner: dict[str, str] = {}
    for dist in distributions():
        for package in dist.packages:
            assert package not in owner, f"sorna.{package} shipped by {owner[package]} and {dist}"
            owner[package] = dist.name
    return owner


def _guarded(node: ast.Try) -> bool:
    """Whether a ``try`` block catches ImportError (its imports are of an optional feature)."""
    names = {"ImportError", "ModuleNotFoundError"}
    for handler in node.handlers:
        caught = handler.type
        kinds = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(isinstance(k, ast.Name) and k.id in names for k in kinds):
            return True
    return False


def _type_checking(node: ast.If) -> bool:
    """Whether an ``if`` is ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def sorna_imports(path: Path) -> dict[str, bool]:
    """The ``sorna.<name>`` packages a module imports (absolute imports; relative ones stay
    inside its own package), each mapped to whether every such import is guarded."""
    found: dict[str, bool] = {}

    def visit(node: ast.AST, guarded: bool) -> None:
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            modules = [node.module]
            if node.module == "sorna":  # `from sorna import common`
                modules = [f"sorna.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "sorna" and len(parts) > 1:
                found[parts[1]] = found.get(parts[1], True) and guarded
        if isinstance(node, ast.If) and _type_checking(node):
            # Imports for type checking only never run: like a guarded import, the package
            # may come from an extra.
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, guarded)
            return
        if isinstance(node, ast.Try) and _guarded(node):
            for child in node.body:
                visit(child, True)
            for child in (*node.handlers, *node.orelse, *node.finalbody):
                visit(child, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def undeclared(dist: Distribution, folder: Path, allowed: frozenset[str]) -> list[str]:
    owner = owners()
    problems = []
    for path in sorted(folder.rglob("*.py")):
        for package, guarded in sorted(sorna_imports(path).items()):
            provider = owner.get(package)
            declared = allowed | (dist.extra_dependencies if guarded else frozenset())
            if provider is None:
                problems.append(f"{path.relative_to(ROOT)}: sorna.{package} is no package's")
            elif provider != dist.name and provider not in declared:
                problems.append(
                    f"{path.relative_to(ROOT)}: imports sorna.{package} of {provider}, "
                    f"which {dist.name} does not declare"
                )
    return problems


DISTRIBUTIONS = distributions()


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda d: d.name)
def test_src_imports_only_declared_sorna_packages(dist: Distribution) -> None:
    assert undeclared(dist, dist.folder / "src", dist.dependencies) == []


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda d: d.name)
def test_tests_import_only_declared_sorna_packages(dist: Distribution) -> None:
    tests = dist.folder / "tests"
    allowed = dist.dependencies | dist.test_dependencies
    if dist.name == "sorna":
        # The root tests drive the whole tree of a `make install` checkout; the meta-package
        # depends on every component.
        assert {d.name for d in DISTRIBUTIONS} - {"sorna"} <= dist.dependencies
    assert undeclared(dist, tests, allowed) == []


def test_every_component_is_found() -> None:
    """The walk sees each distribution and the packages a reader would expect of it."""
    owner = owners()
    expected = {
        "common": "sorna-common",
        "repl": "sorna-repl",
        "agent": "sorna-agent",
        "manager": "sorna-manager",
        "gateway": "sorna-manager",
        "client": "sorna-client",
        "types": "sorna-media",
        "singlepc": "sorna",
    }
    assert {k: owner.get(k) for k in expected} == expected


def test_the_guards_are_read_as_guards(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import sorna.common\n"
        "if TYPE_CHECKING:\n"
        "    from sorna.agent.agent import Agent\n"
        "def f():\n"
        "    try:\n"
        "        import sorna.media\n"
        "    except ImportError:\n"
        "        raise RuntimeError('no media')\n"
        "    import sorna.client\n"
    )
    assert sorna_imports(module) == {
        "common": False,
        "agent": True,
        "media": True,
        "client": False,
    }
