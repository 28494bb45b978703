"""Settings: defaults, TOML, environment precedence, and one-line errors naming the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from sorna.common.config import (
    DatabaseSettings,
    LoggingSettings,
    RedisSettings,
    describe,
    load_settings,
    section,
    setting,
)
from sorna.common.errors import ConfigError


@dataclasses.dataclass(frozen=True, slots=True)
class Demo:
    port: int = setting(6001, "RPC port")
    ratio: float = setting(0.5, "a ratio")
    debug: bool = setting(False, "debug mode")
    name: str | None = setting(None, "optional name")
    langs: list[str] = setting(["python3"], "languages")
    mode: Literal["a", "b"] = setting("a", "mode")
    scratch: Path = setting(Path("/tmp/scratch"), "scratch root")
    redis: RedisSettings = section(RedisSettings, "Redis")
    db: DatabaseSettings = section(DatabaseSettings, "PostgreSQL")
    logging: LoggingSettings = section(LoggingSettings, "logging")


def test_defaults_without_file_or_env() -> None:
    s = load_settings(Demo, env={})
    assert s.port == 6001 and s.debug is False and s.name is None
    assert s.langs == ["python3"]
    assert s.redis.namespace == "sorna"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_file_then_env_precedence(tmp_path: Path) -> None:
    f = tmp_path / "sorna.toml"
    f.write_text(
        'port = 7000\nlangs = ["c", "cpp"]\nscratch = "~/work"\n'
        '[redis]\nurl = "redis://r:1/0"\nnamespace = "fromfile"\n[logging]\nformat = "json"\n'
    )
    env = {
        "SORNA_PORT": "7100",
        "SORNA_DEBUG": "yes",
        "SORNA_REDIS_NAMESPACE": "fromenv",
        "SORNA_LANGS": "nodejs, shell",
        "UNRELATED": "x",
    }
    s = load_settings(Demo, path=f, env=env)
    assert s.port == 7100
    assert s.debug is True
    assert s.langs == ["nodejs", "shell"]
    assert s.redis.url == "redis://r:1/0"
    assert s.redis.namespace == "fromenv"
    assert s.logging.format == "json"
    assert s.scratch == Path("~/work").expanduser()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SORNA_PORT": "sixty"},
            "port: expected an integer, got 'sixty' (from environment SORNA_PORT)",
        ),
        ({"SORNA_DEBUG": "maybe"}, "debug: expected a boolean"),
        ({"SORNA_MODE": "c"}, "mode: must be one of 'a', 'b'"),
        ({"SORNA_LOGGING_LEVEL": "LOUD"}, "logging.level: must be one of"),
        ({"SORNA_DB_POOL_SIZE": "0"}, "db.pool_size: must be at least 1"),
    ],
)
def test_invalid_env_is_one_line_naming_the_field(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(Demo, env=env)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_invalid_file_values(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[redis]\nurl = 5\n")
    with pytest.raises(
        ConfigError, match=r"redis.url: expected a string, got 5 \(from .*bad.toml\)"
    ):
        load_settings(Demo, path=f, env={})
    f.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot: unknown setting"):
        load_settings(Demo, path=f, env={})
    f.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(Demo, path=f, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Demo, path=tmp_path / "missing.toml", env={})


def test_every_field_is_described() -> None:
    rows = describe(Demo)
    names = [r[0] for r in rows]
    assert "redis.url" in names and "port" in names
    env_names = {r[0]: r[1] for r in rows}
    assert env_names["redis.namespace"] == "SORNA_REDIS_NAMESPACE"
    assert all(r[3] for r in rows), [r for r in rows if not r[3]]
