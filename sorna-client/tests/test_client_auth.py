"""Signing against fixed vectors computed outside Python, and the headers a request carries."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from sorna.client.auth import (
    SigningInput,
    authorization,
    format_date,
    host_header,
    sign,
    sign_method,
    signed_headers,
)

DATA = Path(__file__).parent / "data"
OWN_VECTORS = json.loads((DATA / "client_sign_vectors.json").read_text())
# The gateway's vectors (sorna-manager's tests): both sides must agree on every one.
GATEWAY_VECTORS = json.loads(
    (Path(__file__).parents[2] / "sorna-manager/tests/data/sign_vectors.json").read_text()
)


def parse_date(value: str) -> datetime:
    """Read a Date header as API.md does: ISO 8601 or RFC 1123; naive means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = parsedate_to_datetime(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def signing_input(vector: dict[str, Any]) -> SigningInput:
    return SigningInput(
        method=vector["method"],
        path_with_query=vector["path_with_query"],
        date_value=vector["date"],
        date=parse_date(vector["date"]),
        host=vector["host"],
        content_type=vector["content_type"],
        version=vector["version"],
        body=vector["body"].encode(),
    )


@pytest.mark.parametrize(
    "vector", OWN_VECTORS["vectors"], ids=lambda v: f"{v['hash_type']}-{v['method']}"
)
def test_signature_matches_fixed_vector(vector: dict[str, Any]) -> None:
    got = sign(OWN_VECTORS["secret_key"], vector["hash_type"], signing_input(vector))
    assert got == vector["signature"]


@pytest.mark.parametrize(
    "vector", GATEWAY_VECTORS["vectors"], ids=lambda v: f"{v['sign_method']}-{v['method']}"
)
def test_signature_matches_gateway_vector(vector: dict[str, Any]) -> None:
    hash_type = vector["sign_method"].removeprefix("HMAC-").lower()
    assert sign_method(hash_type) == vector["sign_method"]
    got = sign(GATEWAY_VECTORS["secret_key"], hash_type, signing_input(vector))
    assert got == vector["signature"]


def test_multipart_bodies_are_hashed_as_empty() -> None:
    vector = OWN_VECTORS["vectors"][2]
    assert vector["content_type"].startswith("multipart/")
    with_body = replace(signing_input(vector), body=b"--sornaboundary\r\nx\r\n--sornaboundary--")
    assert sign(OWN_VECTORS["secret_key"], "sha256", with_body) == vector["signature"]


def test_signature_changes_with_every_signed_part() -> None:
    vector = OWN_VECTORS["vectors"][0]
    base = signing_input(vector)
    secret = OWN_VECTORS["secret_key"]
    reference = sign(secret, "sha256", base)
    variants = [
        {"method": "POST"},
        {"path_with_query": "/v2/authorize?x=1"},
        {"date_value": "2017-03-15T10:20:31+00:00"},
        {"date": base.date + timedelta(days=1)},
        {"host": "127.0.0.1:8081"},
        {"content_type": "text/plain"},
        {"version": "v1.20160915"},
        {"body": b'{"echo": "ho"}'},
    ]
    for change in variants:
        assert sign(secret, "sha256", replace(base, **change)) != reference, change
    assert sign(secret + "x", "sha256", base) != reference


def test_the_day_key_uses_the_utc_date() -> None:
    vector = OWN_VECTORS["vectors"][2]  # 01:30 on the 16th at +09:00 is the 15th in UTC
    req = signing_input(vector)
    assert req.date.astimezone(UTC).day == 15
    shifted = replace(req, date=req.date.replace(tzinfo=UTC))
    assert sign(OWN_VECTORS["secret_key"], "sha256", shifted) != vector["signature"]


def test_authorization_header_format() -> None:
    assert sign_method("sha256") == "HMAC-SHA256"
    assert sign_method("sha1") == "HMAC-SHA1"
    assert (
        authorization("AKIAIOSFODNN7EXAMPLE", "sha256", "abc")
        == "Sorna signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE:abc"
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:8080/v2", "127.0.0.1:8080"),
        ("http://localhost/v2", "localhost"),
        ("http://localhost:80/v2", "localhost"),
        ("https://api.sorna.io/v2", "api.sorna.io"),
        ("https://api.sorna.io:8443/v2", "api.sorna.io:8443"),
        ("http://[::1]:8080/v2", "[::1]:8080"),
    ],
)
def test_host_header_is_what_http_sends(url: str, host: str) -> None:
    assert host_header(URL(url)) == host


def test_date_header_is_iso_utc() -> None:
    now = datetime(2017, 3, 16, 1, 30, 0, 123456, tzinfo=timezone(timedelta(hours=9)))
    assert format_date(now) == "2017-03-15T16:30:00+00:00"


def test_signed_headers_sign_exactly_what_is_sent() -> None:
    now = datetime(2017, 3, 15, 10, 20, 30, tzinfo=UTC)
    vector = OWN_VECTORS["vectors"][3]
    headers = signed_headers(
        access_key=OWN_VECTORS["access_key"],
        secret_key=OWN_VECTORS["secret_key"],
        hash_type="sha256",
        version="v2.20170315",
        method="GET",
        url=URL("http://localhost:8080/v2/kernel/k1/files").with_query({"path": "a b/c"}),
        content_type="application/json",
        body=b"",
        now=now,
    )
    assert headers["Host"] == "localhost:8080"
    assert headers["X-Sorna-Version"] == "v2.20170315"
    assert headers["Content-Type"] == "application/json"
    assert headers["Date"] == "2017-03-15T10:20:30+00:00"
    # Vector 3 with the date header's spelling (+00:00, not naive) and the query as yarl
    # encodes it on the wire (a space as "+").
    sent = replace(
        signing_input(vector),
        date_value=headers["Date"],
        path_with_query="/v2/kernel/k1/files?path=a+b/c",
    )
    expected = sign(OWN_VECTORS["secret_key"], "sha256", sent)
    assert headers["Authorization"].endswith(":" + expected)
