"""A test session's own HOME: no test, and no process a test starts, sees the developer's.

:func:`isolate` points ``HOME`` and the XDG base folders at fresh temporary ones and drops
the ``SORNA_*`` settings of the shell the tests were started from (a developer's
``~/.config/sorna/client.toml`` or ``SORNA_ENDPOINT`` would send a client test to their own
gateway), keeping only the harness's own switches. The caches and settings of pip, Go and npm
(package indexes, proxies) and Docker's client folder (which engine to talk to) stay where
they were (:func:`build_tools`), so that the builds some tests run (the jail, the wheels'
venv) find what they found before. The pytest plugin calls it once per session, before
collection, and undoes it at the end.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Final

#: The ``SORNA_*`` variables that steer the test harness itself, not a Sorna component.
HARNESS_SWITCHES: Final = frozenset({"SORNA_REQUIRE_DOCKER", "SORNA_SCREENSHOTS"})

#: XDG base folder variable -> its place below HOME (the XDG defaults).
XDG_FOLDERS: Final[Mapping[str, str]] = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_DATA_HOME": ".local/share",
    "XDG_STATE_HOME": ".local/state",
}


def build_tools(env: Mapping[str, str]) -> dict[str, str]:
    """Where pip, Go and npm keep their caches and settings (package indexes, proxies), and
    Docker its client folder, in the environment ``env``: each tool's own variable -> the
    place the tool finds when that variable is unset."""
    home = Path(env.get("HOME") or Path.home())
    cache = Path(env.get("XDG_CACHE_HOME") or home / ".cache")
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    gopath = Path(env.get("GOPATH", "").split(os.pathsep)[0] or home / "go")
    pip_config = next(
        (p for p in (config / "pip" / "pip.conf", home / ".pip" / "pip.conf") if p.exists()),
        config / "pip" / "pip.conf",
    )
    return {
        "PIP_CACHE_DIR": str(cache / "pip"),
        "PIP_CONFIG_FILE": str(pip_config),
        "GOCACHE": str(cache / "go-build"),
        "GOMODCACHE": str(gopath / "pkg" / "mod"),
        "GOENV": str(config / "go" / "env"),
        "npm_config_cache": str(home / ".npm"),
        "npm_config_userconfig": str(home / ".npmrc"),
        "DOCKER_CONFIG": str(home / ".docker"),
    }


@dataclasses.dataclass
class IsolatedEnv:
    """The temporary home of a session, and what :meth:`restore` puts back."""

    root: Path
    home: Path
    saved: dict[str, str | None]
    environ: MutableMapping[str, str]

    def restore(self) -> None:
        """Put the environment back as it was and remove the temporary home."""
        for name, value in self.saved.items():
            if value is None:
                self.environ.pop(name, None)
            else:
                self.environ[name] = value
        shutil.rmtree(self.root, ignore_errors=True)


def isolate(environ: MutableMapping[str, str] | None = None) -> IsolatedEnv:
    """Give ``environ`` (``os.environ`` by default) a fresh temporary HOME and XDG folders
    and no ``SORNA_*`` settings but :data:`HARNESS_SWITCHES`."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    root = Path(tempfile.mkdtemp(prefix="sorna-test-home-"))
    # Reachable by others: as root, the embedded PostgreSQL runs as `nobody` with this HOME.
    root.chmod(0o755)
    home = root / "home"
    runtime = root / "run"
    new: dict[str, str] = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    for name, below in XDG_FOLDERS.items():
        new[name] = str(home / below)
    for name, path in build_tools(env).items():
        if name not in env and Path(path).exists():
            new[name] = path
    for folder in (home, *(home / below for below in XDG_FOLDERS.values())):
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    runtime.mkdir(mode=0o700)
    dropped = [n for n in env if n.startswith("SORNA_") and n not in HARNESS_SWITCHES]
    saved = {name: env.get(name) for name in [*new, *dropped]}
    for name in dropped:
        del env[name]
    env.update(new)
    return IsolatedEnv(root=root, home=home, saved=saved, environ=env)
