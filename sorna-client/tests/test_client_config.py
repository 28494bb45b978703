"""Configuration precedence (arguments > env vars > file) and its error messages."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from sorna.client import ClientConfig, ConfigError, load_config
from sorna.client.config import (
    DEFAULT_ENDPOINT,
    DEFAULT_HASH_TYPE,
    DEFAULT_VERSION,
    default_config_path,
)

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI_K7MDENG-bPxRfiCYEXAMPLEKEY"


def write_config(home: Path, text: str) -> Path:
    path = home / ".config" / "sorna" / "client.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_env_vars_only(tmp_path: Path) -> None:
    cfg = load_config(env={"HOME": str(tmp_path), "SORNA_ACCESS_KEY": AK, "SORNA_SECRET_KEY": SK})
    assert (cfg.access_key, cfg.secret_key) == (AK, SK)
    assert cfg.endpoint == DEFAULT_ENDPOINT
    assert cfg.version == DEFAULT_VERSION == "v2.20170315"
    assert cfg.hash_type == DEFAULT_HASH_TYPE == "sha256"
    assert cfg.api_major == "v2"


def test_file_is_read_from_home_config(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        f'endpoint = "http://127.0.0.1:8080"\naccess_key = "{AK}"\nsecret_key = "{SK}"\n'
        'hash_type = "sha1"\nwritten_by = "sorna up"\n',
    )
    cfg = load_config(env={"HOME": str(tmp_path)})
    assert cfg.endpoint == "http://127.0.0.1:8080"
    assert cfg.access_key == AK
    assert cfg.hash_type == "sha1"


def test_precedence_arguments_then_env_then_file(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        'endpoint = "http://file:1"\naccess_key = "AKIAFILE"\nsecret_key = "file-secret"\n'
        'version = "v2.20170315"\n',
    )
    env = {
        "HOME": str(tmp_path),
        "SORNA_ENDPOINT": "http://env:2",
        "SORNA_ACCESS_KEY": "AKIAENV",
    }
    cfg = load_config(env=env, endpoint="http://arg:3")
    assert cfg.endpoint == "http://arg:3"  # argument beats env and file
    assert cfg.access_key == "AKIAENV"  # env beats file
    assert cfg.secret_key == "file-secret"  # file fills the rest
    assert cfg.version == "v2.20170315"


def test_xdg_config_home_and_explicit_path(tmp_path: Path) -> None:
    assert default_config_path({"HOME": "/home/u"}) == Path("/home/u/.config/sorna/client.toml")
    assert default_config_path({"XDG_CONFIG_HOME": "/x", "HOME": "/home/u"}) == Path(
        "/x/sorna/client.toml"
    )
    other = tmp_path / "other.toml"
    other.write_text(f'access_key = "{AK}"\nsecret_key = "{SK}"\n')
    cfg = load_config(env={"HOME": "/nonexistent", "SORNA_CLIENT_CONFIG": str(other)})
    assert cfg.access_key == AK


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "SORNA_ACCESS_KEY"),
        ({"SORNA_ACCESS_KEY": AK}, "SORNA_SECRET_KEY"),
        ({"SORNA_SECRET_KEY": SK}, "SORNA_ACCESS_KEY"),
        ({"SORNA_ACCESS_KEY": "", "SORNA_SECRET_KEY": SK}, "SORNA_ACCESS_KEY"),
    ],
)
def test_missing_credentials_name_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"HOME": str(tmp_path), **env})
    message = str(info.value)
    assert variable in message
    assert str(tmp_path / ".config" / "sorna" / "client.toml") in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("endpoint", "localhost:8080", "SORNA_ENDPOINT"),
        ("hash_type", "md17", "SORNA_HASH_TYPE"),
        ("version", "2.2017", "SORNA_VERSION"),
    ],
)
def test_malformed_values_are_refused(field: str, value: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        ClientConfig(access_key=AK, secret_key=SK, **{field: value})


def test_malformed_file_is_a_config_error(tmp_path: Path) -> None:
    write_config(tmp_path, "access_key = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(env={"HOME": str(tmp_path)})


def test_repr_hides_the_secret() -> None:
    assert SK not in repr(ClientConfig(access_key=AK, secret_key=SK))


def test_a_sorna_cli_of_the_tests_sees_no_developer_config() -> None:
    """Seen on a fresh clone beside a running ``sorna up``: a CLI test read the developer's
    ``~/.config/sorna/client.toml`` and reached their gateway. A ``sorna`` child of the test
    session, with the session's environment, looks for its file outside the developer's home
    and finds no credentials."""
    started = dict(
        entry.split("=", 1)
        for entry in Path("/proc/self/environ").read_bytes().decode().split("\0")
        if "=" in entry
    )
    homes = {Path(pwd.getpwuid(os.getuid()).pw_dir), Path(started.get("HOME", "/"))} - {Path("/")}
    code = "from sorna.client.config import default_config_path as p; print(p())"
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path = Path(where.stdout.strip())
    assert not any(path.is_relative_to(home) for home in homes), path
    run = "import sys; from sorna.client.cli import main; sys.exit(main(sys.argv[1:]))"
    ran = subprocess.run(
        [sys.executable, "-c", run, "run", "python3", "-c", "print(1)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (ran.returncode, ran.stdout) == (2, ""), ran.stderr
    assert "no access key configured" in ran.stderr
