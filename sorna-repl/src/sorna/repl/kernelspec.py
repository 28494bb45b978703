"""The language specs: ``kernels/<lang>/kernel.toml`` over the shared ``kernels/base.toml``.

A language is one folder under ``sorna-repl/kernels/`` holding a ``kernel.toml``; the list of
languages is the list of those folders. This host-side module reads them into typed
:class:`KernelSpec` values (the image builder, the local backend and the tests use them) and
makes each language's jail policy from the base policy plus the language's diff.

A spec's ``[policy]`` table is a diff, not a policy: scalar keys (``max_child_procs``,
``allow_network``, ...) replace the base's, ``extra_envs`` is merged into the base's, and
``[policy.add]`` / ``[policy.remove]`` add or drop entries of the list-valued keys
(``read``, ``write``, ``exec``, ``preserved_env_keys``, ``allowed_syscalls``; ``remove`` also
takes ``extra_envs`` names).

Errors: :class:`KernelSpecError`, one line naming the file and the key.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sorna.common import constants as C
from sorna.repl import paths

#: The spec file of a language folder, and the shared base beside the folders.
SPEC_FILE: Final = "kernel.toml"
BASE_FILE: Final = "base.toml"

#: The features a spec may list (the io.sorna.features label carries them).
FEATURES: Final = frozenset({"query", "batch", "user-input", "tty", "completion"})
#: How query mode runs a snippet: a daemon keeping state, or a one-file program built and run.
QUERY_MODES: Final = frozenset({"stateful", "program"})

#: Jail policy keys holding lists, as (where in the policy, key).
_LIST_KEYS: Final = {
    "read": ("path_rules", "read"),
    "write": ("path_rules", "write"),
    "exec": ("path_rules", "exec"),
    "preserved_env_keys": ("", "preserved_env_keys"),
    "allowed_syscalls": ("", "allowed_syscalls"),
}
#: Jail policy keys holding one value, with their type.
_SCALAR_KEYS: Final = {
    "max_child_procs": int,
    "exec_allowance": int,
    "fork_allowance": int,
    "allow_network": bool,
}


class KernelSpecError(Exception):
    """A spec file is missing or wrong; the message is one line naming the file and key."""


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """How query mode runs a snippet: ``stateful``, or ``program`` with build + run argv.

    ``{source}`` in the argv is the snippet's file, ``{binary}`` that path without suffix.
    """

    mode: str
    build: tuple[str, ...] = ()
    run: tuple[str, ...] = ()

    def commands(self, source: Path) -> tuple[list[str] | None, list[str]]:
        """(build argv or None, run argv) of a ``program`` snippet stored at ``source``."""

        def fill(arg: str) -> str:
            # Plain replacement, not str.format: an argv may hold braces of its own (${x}).
            return arg.replace("{source}", str(source)).replace(
                "{binary}", str(source.with_suffix(""))
            )

        build = [fill(arg) for arg in self.build] or None
        return build, [fill(arg) for arg in self.run]


@dataclass(frozen=True, slots=True)
class KernelSpec:
    """One language, as its folder's ``kernel.toml`` describes it."""

    lang: str
    display_name: str
    aliases: tuple[str, ...]
    version_command: tuple[str, ...]
    extension: str
    source_name: str
    query: QuerySpec
    #: Debian packages of the language's own image layer.
    packages: tuple[str, ...] = ()
    features: tuple[str, ...] = ("query", "batch", "user-input")
    #: ``build: "*"`` / ``exec: "*"`` defaults (``{sources}``: every source file).
    batch_build: tuple[str, ...] = ()
    batch_exec: tuple[str, ...] = ()
    maxmem: str = "256m"
    maxcores: int = 1
    timeout: int = 30
    maxdisk: str = C.DEFAULT_MAXDISK
    corecount_envs: tuple[str, ...] = ()
    #: The daemon file copied from the folder into /home/sorna, and what runs it.
    daemon: str = "run.py"
    interpreter: str = "/usr/bin/python3"
    #: Other files of the folder copied into /home/sorna before the daemon.
    files: tuple[str, ...] = ()
    #: ``sorna.*`` packages of other components copied beside the runner.
    libraries: tuple[str, ...] = ()
    #: Environment of the image (beside the template's own).
    env: Mapping[str, str] = field(default_factory=dict)
    #: A shell command the build runs once the runner is in place (empty: none).
    check: str = ""
    #: The language's jail policy: the base policy with the spec's diff applied.
    policy: Mapping[str, Any] = field(default_factory=dict)
    folder: Path = Path()

    def labels(self) -> dict[str, str]:
        """The ``io.sorna.*`` labels of PROTOCOLS.md section 4, plus aliases."""
        return {
            C.LABEL_VERSION: str(C.REPL_PROTOCOL_VERSION),
            C.LABEL_LANG: self.lang,
            C.LABEL_ALIASES: " ".join(self.aliases),
            C.LABEL_DISPLAY_NAME: self.display_name,
            C.LABEL_MAXMEM: self.maxmem,
            C.LABEL_MAXCORES: str(self.maxcores),
            C.LABEL_TIMEOUT: str(self.timeout),
            C.LABEL_MAXDISK: self.maxdisk,
            C.LABEL_FEATURES: " ".join(self.features),
            C.LABEL_ENVS_CORECOUNT: ",".join(self.corecount_envs),
        }


@dataclass(frozen=True, slots=True)
class BaseSpec:
    """The shared part: the runner's packages, the base image's, the base jail policy."""

    runner_packages: tuple[str, ...]
    preinstalled_packages: tuple[str, ...]
    policy: Mapping[str, Any]


# -- reading -----------------------------------------------------------------------------


class _Table:
    """A TOML table read with typed getters whose errors name the file and the key."""

    def __init__(self, data: Mapping[str, Any], where: str, prefix: str = "") -> None:
        self.data = data
        self.where = where
        self.prefix = prefix

    def fail(self, key: str, problem: str) -> KernelSpecError:
        return KernelSpecError(f"{self.where}: {self.prefix}{key} {problem}")

    def _get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self.data:
            if default is _REQUIRED:
                raise self.fail(key, "is missing")
            return default
        value = self.data[key]
        # bool is an int subclass: a true/false where a number belongs is an error.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be a {_TYPE_WORDS.get(name, name)}, not {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value: str = self._get(key, str, _REQUIRED if default is None else default)
        return value

    def number(self, key: str, default: int) -> int:
        value: int = self._get(key, int, default)
        return value

    def texts(self, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = self._get(key, list, _REQUIRED if default is None else list(default))
        if not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"must be a list of strings, not {value!r}")
        return tuple(value)

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self._get(key, bool, default)
        return value

    def table(self, key: str) -> _Table:
        value = self._get(key, dict, {})
        return _Table(value, self.where, f"{self.prefix}{key}.")

    def str_map(self, key: str) -> dict[str, str]:
        value = self._get(key, dict, {})
        if not all(isinstance(v, str) for v in value.values()):
            raise self.fail(key, f"must map names to strings, not {value!r}")
        return dict(value)

    def only(self, *keys: str) -> None:
        """Reject keys this table does not know (a typo is an error, not ignored)."""
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            raise self.fail(unknown[0], f"is not a known key (known: {', '.join(keys)})")


_REQUIRED: Final = object()
#: The keys of the jail's Policy struct (policy.go), in its order.
_POLICY_KEYS: Final = (
    *("allowed_syscalls", "path_rules", "max_child_procs", "exec_allowance", "fork_allowance"),
    *("extra_envs", "preserved_env_keys", "allow_network"),
)
_TYPE_WORDS: Final = {"str": "string", "int": "number", "list": "list", "dict": "table"}


def _read_toml(path: Path) -> _Table:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise KernelSpecError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise KernelSpecError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise KernelSpecError(f"{path}: cannot read ({e.strerror})") from None
    return _Table(data, str(path))


def load_base(kernels_dir: Path) -> BaseSpec:
    """Read ``base.toml`` of ``kernels_dir``."""
    top = _read_toml(kernels_dir / BASE_FILE)
    top.only("runner_packages", "preinstalled_packages", "policy")
    policy = top.table("policy")
    if not policy.data:
        raise top.fail("policy", "is missing")
    return BaseSpec(
        runner_packages=top.texts("runner_packages"),
        preinstalled_packages=top.texts("preinstalled_packages", ()),
        policy=_policy_json(policy.data),
    )


def _policy_json(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The base policy in the key order of the jail's Policy struct (policy.go)."""
    order = _POLICY_KEYS
    out = {key: policy[key] for key in order if key in policy}
    out.update({key: value for key, value in policy.items() if key not in out})
    return out


def apply_policy_diff(base: Mapping[str, Any], diff: _Table) -> dict[str, Any]:
    """``base`` with a spec's ``[policy]`` diff applied (see the module docstring)."""
    diff.only("extra_envs", "add", "remove", *_SCALAR_KEYS)
    policy: dict[str, Any] = {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
        for k, v in base.items()
    }
    policy["path_rules"] = {k: list(v) for k, v in base.get("path_rules", {}).items()}
    for key, kind in _SCALAR_KEYS.items():
        if key in diff.data:
            policy[key] = diff.flag(key, False) if kind is bool else diff.number(key, 0)
    envs = dict(policy.get("extra_envs", {}))
    envs.update(diff.str_map("extra_envs"))
    add, remove = diff.table("add"), diff.table("remove")
    add.only(*_LIST_KEYS)
    remove.only("extra_envs", *_LIST_KEYS)
    for name in remove.texts("extra_envs", ()):
        if name not in envs:
            raise remove.fail("extra_envs", f"names {name!r}, which the base does not set")
        del envs[name]
    policy["extra_envs"] = envs
    for key, (section, inner) in _LIST_KEYS.items():
        holder = policy["path_rules"] if section else policy
        values = list(holder.get(inner, []))
        for item in remove.texts(key, ()):
            if item not in values:
                raise remove.fail(key, f"names {item!r}, which the base does not have")
            values.remove(item)
        values += [item for item in add.texts(key, ()) if item not in values]
        holder[inner] = values
    return policy


def load_spec(folder: Path, base: BaseSpec) -> KernelSpec:
    """Read ``folder/kernel.toml`` into a :class:`KernelSpec`."""
    top = _read_toml(folder / SPEC_FILE)
    top.only(
        *("name", "display_name", "aliases", "version_command", "extension", "source_name"),
        *("features", "packages", "query", "batch", "limits", "image", "policy"),
    )
    lang = top.text("name")
    if lang != folder.name:
        raise top.fail("name", f"is {lang!r} but the folder is {folder.name!r}")
    features = top.texts("features")
    unknown = sorted(set(features) - FEATURES)
    if unknown:
        raise top.fail("features", f"has {unknown[0]!r} (known: {', '.join(sorted(FEATURES))})")
    if "query" not in features:
        raise top.fail("features", "must include 'query'")
    query_t = top.table("query")
    query_t.only("mode", "build", "run")
    mode = query_t.text("mode")
    if mode not in QUERY_MODES:
        raise query_t.fail("mode", f"is {mode!r} (known: {', '.join(sorted(QUERY_MODES))})")
    query = QuerySpec(mode, query_t.texts("build", ()), query_t.texts("run", ()))
    if mode == "program" and not query.run:
        raise query_t.fail("run", "is needed when mode is 'program'")
    batch = top.table("batch")
    batch.only("build", "exec")
    limits = top.table("limits")
    limits.only("memory", "cores", "timeout", "disk", "corecount_envs")
    image = top.table("image")
    image.only("daemon", "interpreter", "files", "libraries", "env", "check")
    spec = KernelSpec(
        lang=lang,
        display_name=top.text("display_name"),
        aliases=top.texts("aliases", ()),
        version_command=top.texts("version_command"),
        extension=top.text("extension"),
        source_name=top.text("source_name"),
        query=query,
        packages=top.texts("packages", ()),
        features=features,
        batch_build=batch.texts("build", ()),
        batch_exec=batch.texts("exec", ()),
        maxmem=limits.text("memory", "256m"),
        maxcores=limits.number("cores", 1),
        timeout=limits.number("timeout", 30),
        maxdisk=limits.text("disk", C.DEFAULT_MAXDISK),
        corecount_envs=limits.texts("corecount_envs", ()),
        daemon=image.text("daemon"),
        interpreter=image.text("interpreter"),
        files=image.texts("files", ()),
        libraries=image.texts("libraries", ()),
        env=image.str_map("env"),
        check=image.text("check", ""),
        policy=apply_policy_diff(base.policy, top.table("policy")),
        folder=folder,
    )
    for name in (spec.daemon, *spec.files):
        if "/" in name or not (folder / name).is_file():
            key = "daemon" if name == spec.daemon else "files"
            raise image.fail(key, f"{name!r} is not a file of {folder}")
    return spec


def language_folders(kernels_dir: Path) -> list[Path]:
    """The language folders of ``kernels_dir`` (those holding a kernel.toml), by name."""
    return sorted(p for p in kernels_dir.iterdir() if (p / SPEC_FILE).is_file())


def load_specs(kernels_dir: Path) -> dict[str, KernelSpec]:
    """Every language of ``kernels_dir``; no two may claim the same name or alias."""
    base = load_base(kernels_dir)
    specs: dict[str, KernelSpec] = {}
    claimed: dict[str, str] = {}
    for folder in language_folders(kernels_dir):
        spec = load_spec(folder, base)
        for name in (spec.lang, *spec.aliases):
            other = claimed.setdefault(name.lower(), spec.lang)
            if other != spec.lang:
                raise KernelSpecError(f"{folder / SPEC_FILE}: {name!r} is also a name of {other!r}")
        specs[spec.lang] = spec
    return specs


@functools.cache
def _cached(kernels_dir: Path) -> Mapping[str, KernelSpec]:
    return load_specs(kernels_dir)


def kernel_specs(kernels_dir: Path | None = None) -> Mapping[str, KernelSpec]:
    """The languages shipped with sorna-repl (read once per folder), by canonical name."""
    return _cached(kernels_dir or paths.KERNELS_DIR)


def base_spec(kernels_dir: Path | None = None) -> BaseSpec:
    """The shared base of the languages shipped with sorna-repl."""
    return load_base(kernels_dir or paths.KERNELS_DIR)


def resolve(name: str, specs: Mapping[str, KernelSpec]) -> str | None:
    """The canonical language ``name`` (a name or alias, any case) stands for, or None."""
    wanted = name.strip().lower()
    for spec in specs.values():
        if wanted == spec.lang or wanted in (a.lower() for a in spec.aliases):
            return spec.lang
    return None
