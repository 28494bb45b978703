"""docker-compose.yml is a valid deployment: services, health checks, images built from this
repository's Dockerfiles, and only settings keys the components know."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sorna.agent.config import AgentSettings
from sorna.common.config import describe, load_settings
from sorna.manager.config import ManagerSettings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"redis", "postgres", "minio", "migrate", "manager", "agent"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def test_services_health_checks_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name in SERVICES - {"migrate"}:
        check = services[name]["healthcheck"]["test"]
        assert check[0] == "CMD" and len(check) > 1, name
    manager, agent = services["manager"], services["agent"]
    assert manager["deploy"]["replicas"] == 2
    assert "/var/run/docker.sock:/var/run/docker.sock" in agent["volumes"]
    scratch = _env(agent)["SORNA_SCRATCH_ROOT"]
    assert f"{scratch}:{scratch}" in agent["volumes"], "scratch folders: same path on both sides"
    for svc in (manager, agent):
        for dep, cond in svc["depends_on"].items():
            assert dep in services and cond["condition"].startswith("service_")


def test_images_are_built_from_this_repository(compose: dict[str, Any]) -> None:
    for name in ("manager", "agent"):
        build = compose["services"][name]["build"]
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        text = dockerfile.read_text()
        assert "ARG BASE_IMAGE=sorna/base:bookworm" in text and "FROM ${BASE_IMAGE}" in text
        assert build["args"]["BASE_IMAGE"] == "sorna/base:bookworm"
        assert f"sorna-{name}" in text and "--no-index" in text
    makefile = (ROOT / "Makefile").read_text()
    for name in ("manager", "agent"):
        assert f"deploy/Dockerfile.{name}" in makefile


@pytest.mark.parametrize(
    ("service", "settings"),
    [("manager", ManagerSettings), ("migrate", ManagerSettings), ("agent", AgentSettings)],
)
def test_settings_keys_are_known_and_valid(
    compose: dict[str, Any], service: str, settings: type
) -> None:
    env = _env(compose["services"][service])
    known = {row[1] for row in describe(settings)}
    assert set(env) <= known, sorted(set(env) - known)
    load_settings(settings, env=env)  # raises ConfigError on a bad value


def test_compose_accepts_the_file() -> None:
    """`docker compose config` (plugin) or `docker-compose config` (v1) where installed."""
    if (
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        argv = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        argv = ["docker-compose"]
    else:
        pytest.skip("neither the compose plugin nor docker-compose is installed")
    done = subprocess.run(
        [*argv, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
