"""Errors and admin calls end to end: each API error arrives as its class, with the server's
problem title; the admin API through AsyncAdmin."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from sorna.client import (
    AsyncAdmin,
    AsyncKernel,
    AsyncSession,
    AuthenticationError,
    ClientConfig,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    KernelNotFound,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimitExceeded,
    SornaAPIError,
)

from .conftest import Stack


def assert_server_problem(err: SornaAPIError, status: int, type_name: str) -> None:
    assert err.status == status
    assert err.type == type_name
    assert err.data["type"] == f"https://api.sorna.io/probs/{type_name}"
    assert err.title == err.data["title"] and err.title  # the server's own sentence


async def test_hello_and_authorize(stack: Stack) -> None:
    async with AsyncSession(stack.user) as session:
        assert (await session.hello())["version"] == "v2.20170315"
        assert await session.authorize({"n": 1}) == {"n": 1}


@pytest.mark.parametrize("hash_type", ["sha256", "sha1", "sha512"])
async def test_every_hash_type_is_accepted(stack: Stack, hash_type: str) -> None:
    config = dataclasses.replace(stack.user, hash_type=hash_type)
    async with AsyncSession(config) as session:
        assert await session.authorize("x") == "x"


async def test_wrong_secret_and_unknown_key(stack: Stack) -> None:
    wrong_secret = dataclasses.replace(stack.user, secret_key="x" * 40)
    async with AsyncSession(wrong_secret) as session:
        with pytest.raises(AuthenticationError) as info:
            await session.authorize()
    assert_server_problem(info.value, 401, "auth-failed")

    unknown = dataclasses.replace(stack.user, access_key="AKIAAAAAAAAAAAAAAAAA")
    with pytest.raises(AuthenticationError) as info:
        await AsyncKernel.get_or_create("python3", config=unknown)
    assert_server_problem(info.value, 401, "auth-failed")


async def test_request_errors(stack: Stack) -> None:
    async with AsyncSession(stack.user) as session:
        with pytest.raises(NotFound) as info:
            await AsyncKernel.get_or_create("cobol", session=session)
        assert_server_problem(info.value, 404, "unsupported-lang")

        with pytest.raises(InvalidRequest) as info:
            await AsyncKernel.get_or_create("python3", "x", session=session)  # token too short
        assert_server_problem(info.value, 400, "invalid-api-params")

        with pytest.raises(KernelNotFound) as info:
            await AsyncKernel(session, "no-such-kernel").get_info()
        assert_server_problem(info.value, 404, "kernel-not-found")

        async with AsyncKernel.get_or_create("python3", session=session) as kernel:
            with pytest.raises(PayloadTooLarge) as info:
                await kernel.execute("#" * (2 << 20))
            assert_server_problem(info.value, 413, "payload-too-large")


async def test_other_keypairs_kernel_is_not_found(stack: Stack) -> None:
    async with AsyncKernel.get_or_create("python3", config=stack.user) as mine:
        async with AsyncSession(stack.admin) as session:
            with pytest.raises(KernelNotFound):
                await AsyncKernel(session, mine.kernel_id).execute("print(1)")


async def test_admin_api_and_forbidden_for_users(stack: Stack) -> None:
    async with AsyncSession(stack.user) as session:
        with pytest.raises(Forbidden) as info:
            await AsyncAdmin(session).keypairs()
        assert_server_problem(info.value, 403, "forbidden")

    async with AsyncSession(stack.admin) as session:
        admin = AsyncAdmin(session)
        created = await admin.create_keypair(concurrency_limit=1, rate_limit=100)
        assert created["accessKey"].startswith("AKIA") and len(created["accessKey"]) == 20
        assert len(created["secretKey"]) == 40
        listed = {k["accessKey"]: k for k in await admin.keypairs()}
        assert created["accessKey"] in listed
        assert "secretKey" not in listed[created["accessKey"]]
        assert any(stack.agent.settings.agent_id in str(a) for a in await admin.agents())

        limited = ClientConfig(created["accessKey"], created["secretKey"], endpoint=stack.endpoint)
        async with AsyncKernel.get_or_create("python3", config=limited) as first:
            assert first.kernel_id in str(await admin.kernels())
            with pytest.raises(QuotaExceeded) as info:
                await AsyncKernel.get_or_create("python3", config=limited)
            assert_server_problem(info.value, 412, "quota-exceeded")


async def test_unreachable_endpoint_is_connection_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ClientConfig("AKIAAAAAAAAAAAAAAAAA", "x" * 40, endpoint=f"http://127.0.0.1:{port}")
    async with AsyncSession(config) as session:
        with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}"):
            await session.hello()


async def test_rate_limit_exceeded(stack: Stack) -> None:
    async with AsyncSession(stack.admin) as session:
        created = await AsyncAdmin(session).create_keypair(concurrency_limit=1, rate_limit=3)
    limited = ClientConfig(created["accessKey"], created["secretKey"], endpoint=stack.endpoint)
    async with AsyncSession(limited) as session:
        for _ in range(3):
            await session.authorize()
        with pytest.raises(RateLimitExceeded) as info:
            await session.authorize()
    assert_server_problem(info.value, 429, "rate-limit-exceeded")
