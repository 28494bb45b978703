"""The kernel's layout is spelled once: what the images hold and what their files say of it.

The REPL runtime in an image imports only the standard library, pyzmq (Debian's
python3-zmq), itself and ``sorna.common.constants`` (the one module of sorna.common the build
copies in); the kernel folders (Dockerfiles, jail policies, the Node.js daemon) and the Go
jail's default policy, which cannot import the constants, agree with them.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

from sorna.common import constants as C
from sorna.repl import imagebuild, paths, protocol
from sorna.repl.kernelspec import kernel_specs

#: Every language: the folders of sorna-repl/kernels.
LANGS = tuple(kernel_specs())

#: Third-party modules the images install for the runtime (Debian's python3-zmq).
RUNTIME_THIRD_PARTY = frozenset({"zmq"})


def _imports(path: Path, package: str) -> list[tuple[str, list[str]]]:
    """What ``path`` imports: (module, names taken from it), relative ones resolved."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            if not node.level:
                base = ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.append((module, [alias.name for alias in node.names]))
    return found


def _missing(ctx: Path, module: str, names: list[str]) -> list[str]:
    """The modules of an import that the image context lacks."""
    target = ctx.joinpath(*module.split("."))
    if target.is_dir():
        init = target / "__init__.py"
        defined = init.read_text() if init.is_file() else ""
        return [
            f"{module}.{name}"
            for name in names
            if not (target / f"{name}.py").is_file()
            and not (target / name).is_dir()
            and name not in defined
        ]
    return [] if target.with_suffix(".py").is_file() else [module]


@pytest.mark.parametrize("lang", LANGS)
def test_image_runtime_imports_only_what_the_image_holds(lang: str, tmp_path: Path) -> None:
    jail = tmp_path / "jail-binary"
    jail.write_bytes(b"")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    imagebuild.assemble_context(kernel_specs()[lang], ctx, jail)
    assert sorted(p.name for p in (ctx / "sorna" / "common").iterdir()) == ["constants.py"]
    for host_only in ("imagebuild.py", "dockerkernel.py", "container.py"):
        assert not (ctx / "sorna" / "repl" / host_only).exists()
    problems: list[str] = []
    for path in sorted((ctx / "sorna").glob("*/**/*.py")):
        rel = path.relative_to(ctx).with_suffix("")
        if rel.parts[1] not in ("repl", "common"):
            continue  # the sorna-media libraries of python3 have their own tests
        package = ".".join(rel.parts[:-1])
        for module, names in _imports(path, package):
            top = module.split(".")[0]
            if top == "sorna":
                lacking = _missing(ctx, module, names)
                problems += [f"{rel}: {m} is not in the image" for m in lacking]
            elif top not in sys.stdlib_module_names and top not in RUNTIME_THIRD_PARTY:
                problems.append(f"{rel}: {module} is not installed in the image")
    assert problems == []


def test_nodejs_daemon_defaults_are_the_repl_ports() -> None:
    source = (paths.KERNELS_DIR / "nodejs" / "run.js").read_text()
    defaults = dict(re.findall(r"process\.env\.(\w+) \|\| '([^']*)'", source))
    assert defaults[protocol.ENV_INPUT_ADDR] == protocol.DEFAULT_INPUT_ADDR
    assert defaults[protocol.ENV_OUTPUT_ADDR] == protocol.DEFAULT_OUTPUT_ADDR


@pytest.mark.parametrize("lang", LANGS)
def test_kernel_folder_agrees_with_the_kernel_layout(lang: str) -> None:
    spec = kernel_specs()[lang]
    policy = spec.policy
    rules = policy["path_rules"]
    assert {f"{C.KERNEL_WORK_DIR}/**", f"{C.KERNEL_IPC_DIR}/**"} <= set(rules["write"])
    assert f"{C.KERNEL_WORK_DIR}/**" in rules["exec"]
    envs = policy["extra_envs"]
    assert envs["HOME"] == C.KERNEL_WORK_DIR
    assert envs.get("PYTHONPATH", C.KERNEL_SORNA_DIR) == C.KERNEL_SORNA_DIR

    dockerfile = imagebuild.render_dockerfile(spec)
    lines = dockerfile.splitlines()
    assert f"ARG WORK_UID={C.KERNEL_WORK_UID}" in lines
    assert f"--home-dir {C.KERNEL_WORK_DIR} " in dockerfile
    assert f"WORKDIR {C.KERNEL_WORK_DIR}" in lines
    assert f"COPY jail {C.KERNEL_JAIL_PATH}" in lines
    assert f"COPY sorna {C.KERNEL_SORNA_DIR}/sorna" in lines
    cmd = json.loads(next(ln for ln in lines if ln.startswith("CMD ")).removeprefix("CMD "))
    # -tcp-repl: network sockets only when started by hand on tcp (the policy denies them)
    assert cmd[:5] == [C.KERNEL_JAIL_PATH, "-policy", C.KERNEL_POLICY_PATH, "-tcp-repl", "--"]
    assert cmd[-1] == f"{C.KERNEL_SORNA_DIR}/{spec.daemon}"


def test_jail_default_policy_agrees_with_the_kernel_layout() -> None:
    """The Go jail keeps its own default policy (it imports no Python): same work folder."""
    default = json.loads((paths.JAIL_DIR / "policies" / "default.json").read_text())
    assert default["extra_envs"]["HOME"] == C.KERNEL_WORK_DIR
    source = (paths.JAIL_DIR / "policy.go").read_text()
    body = source[source.index("func DefaultPolicy() Policy {") :]
    for key in ("Write", "Exec"):
        found = re.search(rf"{key}:\s*\[\]string\{{([^}}]*)\}}", body)
        assert found is not None, key
        go_globs = re.findall(r'"([^"]*)"', found.group(1))
        assert go_globs == default["path_rules"][key.lower()]
        assert f"{C.KERNEL_WORK_DIR}/**" in go_globs


def test_jail_names_the_daemons_address_variables() -> None:
    """The jail's -tcp-repl check reads the variables the daemon binds from."""
    source = (paths.JAIL_DIR / "main.go").read_text()
    found = re.search(r"replAddrEnvs = \[\]string\{([^}]*)\}", source)
    assert found is not None
    names = re.findall(r'"([A-Z_]+)"', found.group(1))
    assert names == [protocol.ENV_INPUT_ADDR, protocol.ENV_OUTPUT_ADDR]


@pytest.mark.parametrize("lang", sorted(kernel_specs()))
def test_no_policy_allows_the_network(lang: str) -> None:
    """Network sockets for a by-hand start only: the policies themselves deny them."""
    assert kernel_specs()[lang].policy["allow_network"] is False
