"""The signature algorithm against fixed vectors, and its header parsing."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from sorna.gateway import signing

VECTORS = json.loads((Path(__file__).parent / "data" / "sign_vectors.json").read_text())


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=lambda v: f"{v['sign_method']}-{v['method']}")
def test_fixed_vectors(v: dict[str, Any]) -> None:
    got = signing.sign(
        secret_key=VECTORS["secret_key"],
        method=v["method"],
        path_with_query=v["path_with_query"],
        date=v["date"],
        host=v["host"],
        content_type=v["content_type"],
        version=v["version"],
        body=v["body"].encode(),
        sign_method=v["sign_method"],
    )
    assert got == v["signature"]


def test_multipart_body_is_hashed_as_empty() -> None:
    assert signing.body_hash(b"abc", "multipart/form-data; boundary=x", "sha256") == (
        signing.body_hash(b"", "application/json", "sha256")
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2017-03-15T10:20:30", datetime.datetime(2017, 3, 15, 10, 20, 30, tzinfo=datetime.UTC)),
        ("2017-03-16T01:30:00+09:00", datetime.datetime(2017, 3, 15, 16, 30, tzinfo=datetime.UTC)),
        (
            "Wed, 15 Mar 2017 23:59:59 GMT",
            datetime.datetime(2017, 3, 15, 23, 59, 59, tzinfo=datetime.UTC),
        ),
    ],
)
def test_dates_naive_is_utc(value: str, expected: datetime.datetime) -> None:
    assert signing.parse_date(value) == expected


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("HMAC-SHA256", "sha256"),
        ("HMAC-SHA1", "sha1"),
        ("HMAC-SHA512", "sha512"),
        ("hmac-md5", "md5"),
    ],
)
def test_hash_names(method: str, name: str) -> None:
    assert signing.hash_name(method) == name


@pytest.mark.parametrize("method", ["SHA256", "HMAC-NOPE", "HMAC-SHAKE_128"])
def test_bad_hash_names(method: str) -> None:
    with pytest.raises(signing.SigningError):
        signing.hash_name(method)


def test_authorization_round_trip() -> None:
    header = signing.authorization("HMAC-SHA256", "AKIAXXXX", "abcd")
    assert signing.parse_authorization(header) == ("HMAC-SHA256", "AKIAXXXX", "abcd")
    for bad in (
        "Bearer x",
        "Sorna credential=AK:SIG",
        "Sorna signMethod=HMAC-SHA256, credential=AK",
    ):
        with pytest.raises(signing.SigningError):
            signing.parse_authorization(bad)
