"""The pytest plugin of every Sorna package (the ``sorna`` pytest11 entry point).

The whole session, and every process its tests start, runs with a temporary HOME and XDG
folders and without the developer's ``SORNA_*`` settings (:mod:`sorna.common.testing.hermetic`).

Fixtures start real servers on free loopback ports, once per session, and isolate each test:

- ``valkey_server`` / ``redis_url`` / ``redis``: a Valkey server; the keyspace is flushed for
  each test.
- ``postgres_server`` / ``postgres_url``: PostgreSQL 16; each test gets a fresh database,
  dropped afterwards.

Both ask for a password, as in single-PC mode; the URLs the fixtures give carry it.
- ``s3_server`` / ``s3_bucket``: an S3-compatible server; each test gets a fresh bucket.
- ``scratch_root``: a short, fresh folder for a test's agent; whatever its kernels leave
  there (processes, mounts) is killed and unmounted at the end
  (:mod:`sorna.common.testing.leftovers`).
- ``docker``: an aiodocker client. Tests marked ``docker`` (or using this fixture) are skipped
  when no engine answers, and FAIL instead when ``SORNA_REQUIRE_DOCKER=1``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sorna.common.servers import PostgresServer, S3Server, ValkeyServer
from sorna.common.testing.hermetic import IsolatedEnv, isolate
from sorna.common.testing.leftovers import scratch_folder

if TYPE_CHECKING:
    import aiodocker
    from redis.asyncio import Redis

_counter = itertools.count(1)
_ISOLATED = pytest.StashKey[IsolatedEnv]()


def pytest_configure(config: pytest.Config) -> None:
    # Before collection, so that module-level code sees the session's HOME too.
    config.stash[_ISOLATED] = isolate()


def pytest_unconfigure(config: pytest.Config) -> None:
    isolated = config.stash.get(_ISOLATED, None)
    if isolated is not None:
        isolated.restore()
        del config.stash[_ISOLATED]


def require_docker() -> None:
    """Skip the calling test when no Docker engine answers (fail if SORNA_REQUIRE_DOCKER=1)."""
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("SORNA_REQUIRE_DOCKER") == "1":
        pytest.fail(f"Docker is required (SORNA_REQUIRE_DOCKER=1) but {problem}")
    pytest.skip(problem)


def docker_problem() -> str | None:
    """Return why the Docker engine cannot be used, or None when it answers."""
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except FileNotFoundError:
        return "the docker command is not installed"
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if info.returncode != 0:
        return "no Docker engine answers: " + info.stderr.decode(errors="replace").strip()[-200:]
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None:
        require_docker()


# ------------------------------------------------------------------ scratch folders


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A short scratch root for an agent (ipc socket paths must stay under 108 bytes); its
    kernels' leftover processes and mounts are killed and unmounted, then it is removed."""
    with scratch_folder() as root:
        yield root


# ------------------------------------------------------------------ Redis protocol


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ValkeyServer]:
    with ValkeyServer() as server:
        yield server


@pytest.fixture
def redis_url(valkey_server: ValkeyServer) -> str:
    """URL of the session's Valkey server, with an empty keyspace."""
    import redis as redis_sync

    client = redis_sync.Redis.from_url(valkey_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return valkey_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio Redis client on an empty keyspace (bytes responses)."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _psql(server: PostgresServer, sql: str) -> None:
    done = server.psql(sql)
    if done.returncode != 0:
        raise RuntimeError(f"psql {sql!r} failed: {done.stderr.decode(errors='replace')}")


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """DSN of a fresh, empty database, dropped after the test."""
    name = f"sorna_test_{os.getpid()}_{next(_counter)}"
    _psql(postgres_server, f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        _psql(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------ S3


@dataclass(frozen=True, slots=True)
class S3Bucket:
    """Where a test's bucket lives and how to sign for it."""

    endpoint_url: str
    name: str
    access_key: str = "sorna-test"
    secret_key: str = "sorna-test-secret"
    region: str = "us-east-1"

    def client(self) -> Any:
        """A boto3 S3 client signed for this bucket (close it when done)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[S3Bucket]:
    """A fresh, empty bucket, emptied and removed after the test."""
    bucket = S3Bucket(endpoint_url=s3_server.url, name=f"sorna-test-{next(_counter)}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    try:
        yield bucket
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket.name, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket.name)
        client.close()


# ------------------------------------------------------------------ Docker


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    """An aiodocker client on the local engine."""
    require_docker()
    import aiodocker

    client = aiodocker.Docker()
    try:
        yield client
    finally:
        await client.close()
