"""Typed, frozen settings loaded once from a TOML file plus ``SORNA_*`` environment variables.

A settings class is a frozen dataclass whose fields each carry a default and a description
(``setting(default, "what it is")``); a field may itself be a settings dataclass (a section).
:func:`load_settings` reads, in increasing precedence, the defaults, the TOML file, then the
environment: ``SORNA_<SECTION>_<FIELD>`` (upper case; nested sections joined by ``_``).
Any invalid value raises :class:`ConfigError` with one line naming the field and its source.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from sorna.common.constants import REDIS_NAMESPACE
from sorna.common.errors import ConfigError

T = TypeVar("T")
ENV_PREFIX = "SORNA_"


def setting(default: Any, description: str) -> Any:
    """Declare a settings field with its default and a one-line description."""
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(
            default_factory=lambda: type(value)(value), metadata={"description": description}
        )
    return dataclasses.field(default=default, metadata={"description": description})


def section(cls: type[T], description: str) -> Any:
    """Declare a nested settings section."""
    return dataclasses.field(default_factory=cls, metadata={"description": description})


def load_settings(
    cls: type[T],
    *,
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> T:
    """Build ``cls`` from defaults, the TOML file at ``path`` (if given) and ``env``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    return _build(cls, data, os.environ if env is None else env, prefix, "", str(path or ""))


def describe(cls: type[Any], prefix: str = ENV_PREFIX) -> list[tuple[str, str, Any, str]]:
    """Return (dotted name, env var, default, description) for every field of ``cls``."""
    rows: list[tuple[str, str, Any, str]] = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        env = f"{prefix}{f.name.upper()}"
        if dataclasses.is_dataclass(hint):
            for name, env_name, default, text in describe(hint, env + "_"):  # type: ignore[arg-type]
                rows.append((f"{f.name}.{name}", env_name, default, text))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        rows.append((f.name, env, default, f.metadata.get("description", "")))
    return rows


def _build(
    cls: type[T],
    data: Mapping[str, Any],
    env: Mapping[str, str],
    prefix: str,
    dotted: str,
    src: str,
) -> T:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{dotted.rstrip('.') or 'config'}: expected a table in {src}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{dotted}{unknown[0]}: unknown setting in {src}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[f.name]
        env_name = f"{prefix}{f.name.upper()}"
        name = f"{dotted}{f.name}"
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(
                hint,  # type: ignore[arg-type]
                data.get(f.name, {}),
                env,
                env_name + "_",
                name + ".",
                src,
            )
            continue
        if env_name in env:
            kwargs[f.name] = _coerce(env[env_name], hint, name, f"environment {env_name}", True)
        elif f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hint, name, src, False)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{dotted.rstrip('.') or cls.__name__}: {e}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(value: Any, hint: Any, name: str, src: str, from_text: bool) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if (from_text and value == "") or value is None:
            return None
        if len(args) == 1:
            return _coerce(value, args[0], name, src, from_text)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{name}: must be one of {choices}, got {value!r} (from {src})")
        return value
    if origin is list:
        (item,) = typing.get_args(hint) or (str,)
        if from_text:
            value = [v.strip() for v in str(value).split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r} (from {src})")
        return [_coerce(v, item, name, src, from_text) for v in value]
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not from_text):
                raise ValueError
            return int(str(value).strip().replace("_", "")) if from_text else int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if hint is Path:
            if not isinstance(value, str):
                raise ValueError
            return Path(value).expanduser()
    except (TypeError, ValueError):
        kind = {bool: "a boolean", int: "an integer", float: "a number"}.get(hint, "a string")
        raise ConfigError(f"{name}: expected {kind}, got {value!r} (from {src})") from None
    return value


# ------------------------------------------------------------------ shared sections


@dataclasses.dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = setting("redis://127.0.0.1:6379/0", "URL of the Redis-protocol server")
    namespace: str = setting(REDIS_NAMESPACE, "prefix of every Sorna key")


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = setting("postgresql://postgres@127.0.0.1:5432/sorna", "PostgreSQL DSN")
    pool_size: int = setting(10, "connections in the pool")

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ConfigError(f"db.pool_size: must be at least 1, got {self.pool_size}")


@dataclasses.dataclass(frozen=True, slots=True)
class S3Settings:
    endpoint_url: str = setting("", "S3 endpoint URL; empty disables uploads of output files")
    bucket: str = setting("sorna-outputs", "bucket for output files")
    region: str = setting("us-east-1", "S3 region")
    access_key: str = setting("", "S3 access key id")
    secret_key: str = setting("", "S3 secret access key")


@dataclasses.dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: typing.Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", "log level")
    format: typing.Literal["plain", "json"] = setting("plain", "log line format")
