"""Client configuration: explicit arguments, then ``SORNA_*`` env vars, then the config file.

The file is ``$XDG_CONFIG_HOME/sorna/client.toml`` (``~/.config/sorna/client.toml`` by
default; single-PC mode writes it), with top-level keys named like the fields::

    endpoint = "http://127.0.0.1:8080"
    access_key = "AKIA..."
    secret_key = "..."
    version = "v2.20170315"    # optional
    hash_type = "sha256"       # optional

``SORNA_CLIENT_CONFIG`` names another file.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from yarl import URL

from .exceptions import ConfigError

DEFAULT_ENDPOINT: Final = "https://api.sorna.io"
DEFAULT_VERSION: Final = "v2.20170315"
DEFAULT_HASH_TYPE: Final = "sha256"

#: Field name -> the env var that sets it.
ENV_VARS: Final[Mapping[str, str]] = {
    "endpoint": "SORNA_ENDPOINT",
    "access_key": "SORNA_ACCESS_KEY",
    "secret_key": "SORNA_SECRET_KEY",
    "version": "SORNA_VERSION",
    "hash_type": "SORNA_HASH_TYPE",
}
CONFIG_PATH_VAR: Final = "SORNA_CLIENT_CONFIG"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where the API is and how to sign for it."""

    access_key: str
    secret_key: str
    endpoint: str = DEFAULT_ENDPOINT
    version: str = DEFAULT_VERSION
    hash_type: str = DEFAULT_HASH_TYPE

    def __post_init__(self) -> None:
        for name in ("access_key", "secret_key"):
            if not getattr(self, name):
                raise ConfigError(_missing_message(name))
        url = URL(self.endpoint)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"invalid endpoint {self.endpoint!r}: expected http(s)://host[:port] "
                f"(set {ENV_VARS['endpoint']})"
            )
        try:
            hashlib.new(self.hash_type)
        except ValueError:
            raise ConfigError(
                f"unknown hash type {self.hash_type!r} (set {ENV_VARS['hash_type']} to "
                "a hashlib name such as sha256 or sha1)"
            ) from None
        if not self.version.startswith("v") or "." not in self.version:
            raise ConfigError(
                f"invalid API version {self.version!r}: expected e.g. {DEFAULT_VERSION} "
                f"(set {ENV_VARS['version']})"
            )

    @property
    def endpoint_url(self) -> URL:
        """The endpoint as a URL, without a trailing slash."""
        return URL(self.endpoint.rstrip("/"))

    @property
    def api_major(self) -> str:
        """The path prefix of this API version, e.g. ``v2``."""
        return self.version.split(".", 1)[0]

    def __repr__(self) -> str:
        return (
            f"ClientConfig(endpoint={self.endpoint!r}, access_key={self.access_key!r}, "
            f"secret_key='***', version={self.version!r}, hash_type={self.hash_type!r})"
        )


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """Return the config file's path for this environment."""
    env = os.environ if env is None else env
    if env.get(CONFIG_PATH_VAR):
        return Path(env[CONFIG_PATH_VAR]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "sorna" / "client.toml"


def load_config(
    *,
    endpoint: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    version: str | None = None,
    hash_type: str | None = None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> ClientConfig:
    """Build the configuration: arguments win over env vars, which win over the file.

    ``env`` defaults to ``os.environ`` and ``path`` to :func:`default_config_path`; a missing
    file is fine, a malformed one is a :class:`ConfigError`.
    """
    env = os.environ if env is None else env
    explicit: dict[str, str | None] = {
        "endpoint": endpoint,
        "access_key": access_key,
        "secret_key": secret_key,
        "version": version,
        "hash_type": hash_type,
    }
    path = path if path is not None else default_config_path(env)
    from_file = _read_file(path)
    values: dict[str, Any] = {}
    for field in fields(ClientConfig):
        name = field.name
        for candidate in (explicit[name], env.get(ENV_VARS[name]), from_file.get(name)):
            if candidate:
                values[name] = candidate
                break
    for name in ("access_key", "secret_key"):
        if name not in values:
            raise ConfigError(_missing_message(name, path))
    return ClientConfig(**values)


def _missing_message(name: str, path: Path | None = None) -> str:
    where = f" (or {name} in {path})" if path is not None else ""
    return f"no {name.replace('_', ' ')} configured: set {ENV_VARS[name]}{where}"


def _read_file(path: Path) -> dict[str, str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    # Unknown keys are left alone: single-PC mode may write more than the client reads.
    known = {f.name for f in fields(ClientConfig)}
    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in known:
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        values[key] = value
    return values
