"""Settings of single-PC mode and where its files live.

``sorna up`` reads :class:`UpSettings` from ``SORNA_UP_*`` environment variables (and an
optional TOML file), then lets its command-line options override them. Everything it keeps
is under one data folder::

    <data dir>/
        run/lock            held (flock) by the running supervisor
        run/state.json      pid, endpoint, backend, children, status line
        logs/*.log          supervisor, gateway, agent (valkey and postgres keep theirs)
        valkey/ postgres/   the embedded servers' data, each with its password file
                            (``password``, mode 0600; see :mod:`sorna.common.servers`)
        scratch/            kernels' /home/work folders
        admin-keypair.json  the first admin keypair (mode 0600)
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from sorna.common.config import setting
from sorna.common.constants import GATEWAY_HTTP_PORT
from sorna.common.errors import ConfigError

ENV_PREFIX = "SORNA_UP_"
#: Data folder of root when its home folder is private (PostgreSQL runs as ``nobody``).
ROOT_DATA_DIR = Path("/var/lib/sorna")

UpBackend = Literal["docker", "local", "auto"]


@dataclasses.dataclass(frozen=True, slots=True)
class UpSettings:
    """What ``sorna up`` starts and where."""

    data_dir: str = setting(
        "",
        "data folder (empty: $XDG_DATA_HOME/sorna, else ~/.local/share/sorna; for root "
        "with a private home, /var/lib/sorna)",
    )
    host: str = setting("127.0.0.1", "address the gateway listens on")
    port: int = setting(GATEWAY_HTTP_PORT, "port the gateway listens on")
    redis_url: str = setting("", "Redis-protocol server to use (empty: an embedded Valkey)")
    db_url: str = setting("", "PostgreSQL DSN to use (empty: an embedded PostgreSQL)")
    backend: UpBackend = setting(
        "auto", "kernel backend: docker, local, or auto (docker if an engine answers)"
    )
    unsafe_local_backend: bool = setting(
        False, "allow local kernels without a sandbox (unsafe) where the host cannot give one"
    )
    images: list[str] = setting(["python3"], "kernel images built at start if missing")
    ready_timeout: float = setting(120.0, "seconds the whole stack may take to come up")

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port: must be a port number, got {self.port}")
        if self.ready_timeout <= 0:
            raise ConfigError("ready_timeout: must be positive")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> UpSettings:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


def _reachable_by_others(path: Path) -> bool:
    """Tell whether every existing folder on the way to ``path`` lets others through."""
    for folder in [path, *path.parents]:
        try:
            mode = folder.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            return False
    return True


def resolve_data_dir(settings: UpSettings, env: Mapping[str, str] | None = None) -> Path:
    """The data folder ``settings`` asks for, as an absolute path.

    As root with an embedded PostgreSQL, the server runs as ``nobody`` and must be able to
    reach its folder: the default moves to :data:`ROOT_DATA_DIR` when the home folder is
    private, and an explicit folder nobody can reach is a :class:`ConfigError`.
    """
    env = os.environ if env is None else env
    if settings.data_dir:
        path = Path(settings.data_dir).expanduser().absolute()
        explicit = True
    else:
        base = env.get("XDG_DATA_HOME") or str(
            Path(env.get("HOME") or Path.home()) / ".local" / "share"
        )
        path = Path(base).absolute() / "sorna"
        explicit = False
    if os.geteuid() == 0 and not settings.db_url and not _reachable_by_others(path):
        if explicit:
            raise ConfigError(
                f"data_dir: {path} is not reachable by other users, and the embedded "
                "PostgreSQL runs as nobody when started by root (choose another folder, "
                "or give --db-url)"
            )
        path = ROOT_DATA_DIR
    return path


def check_embedded_postgres(settings: UpSettings) -> None:
    """The embedded PostgreSQL needs the pgserver package: say so before starting anything.

    As root the server runs as ``nobody``; when the package sits in a private folder (a venv
    under /root, say), :mod:`sorna.common.servers` runs it from a world-readable copy.
    """
    if settings.db_url:
        return
    import importlib.util

    if importlib.util.find_spec("pgserver") is None:
        raise ConfigError(
            "the embedded PostgreSQL needs pgserver (pip install pgserver), or give --db-url"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """The files of one data folder."""

    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def lock(self) -> Path:
        return self.run / "lock"

    @property
    def state(self) -> Path:
        return self.run / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    @property
    def keypair(self) -> Path:
        return self.root / "admin-keypair.json"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def create(self) -> None:
        for folder in (self.root, self.run, self.logs, self.scratch):
            folder.mkdir(parents=True, exist_ok=True)
        # Others pass through (the embedded PostgreSQL runs as nobody below it when started
        # by root) but list nothing; the logs are the stack's own.
        self.root.chmod(0o711 if os.geteuid() == 0 else 0o700)
        self.logs.chmod(0o700)
