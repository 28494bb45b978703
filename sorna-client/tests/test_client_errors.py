"""problem+json answers decode into the documented exception tree."""

from __future__ import annotations

import json

import pytest

from sorna.client import (
    AuthenticationError,
    Forbidden,
    InvalidRequest,
    KernelNotFound,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimitExceeded,
    ServerError,
    ServiceUnavailable,
    SornaAPIError,
    SornaClientError,
    SornaError,
)
from sorna.client.exceptions import ConfigError, ConnectionFailed, ProtocolError, decode_problem


def problem(name: str, title: str, **extra: object) -> bytes:
    return json.dumps(
        {"type": f"https://api.sorna.io/probs/{name}", "title": title, **extra}
    ).encode()


# Every row of API.md's error table.
@pytest.mark.parametrize(
    ("status", "name", "cls"),
    [
        (400, "invalid-api-params", InvalidRequest),
        (400, "invalid-auth-params", AuthenticationError),
        (401, "auth-failed", AuthenticationError),
        (403, "forbidden", Forbidden),
        (404, "kernel-not-found", KernelNotFound),
        (404, "not-found", NotFound),
        (404, "unsupported-lang", NotFound),
        (412, "quota-exceeded", QuotaExceeded),
        (413, "payload-too-large", PayloadTooLarge),
        (429, "rate-limit-exceeded", RateLimitExceeded),
        (500, "kernel-creation-failed", ServerError),
        (500, "kernel-execution-failed", ServerError),
        (503, "service-unavailable", ServiceUnavailable),
        (503, "instance-not-available", ServiceUnavailable),
    ],
)
def test_problem_types_map_to_classes(status: int, name: str, cls: type[SornaAPIError]) -> None:
    err = decode_problem(status, "Reason", problem(name, "The server's sentence."))
    assert type(err) is cls
    assert isinstance(err, SornaAPIError) and isinstance(err, SornaError)
    assert (err.status, err.type, err.title) == (status, name, "The server's sentence.")
    assert str(err) == f"{status} {name}: The server's sentence."


def test_extra_members_are_kept() -> None:
    err = decode_problem(
        500, "", problem("kernel-creation-failed", "Agent failed.", **{"agent-details": "oom"})
    )
    assert err.data["agent-details"] == "oom"


def test_unknown_type_falls_back_on_status() -> None:
    assert type(decode_problem(404, "", problem("gone-fishing", "No."))) is NotFound
    assert type(decode_problem(502, "", problem("upstream", "No."))) is ServerError
    assert type(decode_problem(418, "", problem("teapot", "No."))) is SornaAPIError


@pytest.mark.parametrize("body", [b"", b"<html>Bad Gateway</html>", b"[1, 2]", b"{}"])
def test_non_problem_bodies_use_the_reason_phrase(body: bytes) -> None:
    err = decode_problem(503, "Service Unavailable", body)
    assert type(err) is ServiceUnavailable
    assert err.title == "Service Unavailable"
    assert err.type == "http-503"


def test_client_side_errors_are_sorna_errors() -> None:
    for cls in (ConfigError, ConnectionFailed, ProtocolError):
        assert issubclass(cls, SornaClientError)
        assert issubclass(cls, SornaError)
    assert not issubclass(SornaAPIError, SornaClientError)
