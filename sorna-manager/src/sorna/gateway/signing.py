"""The request signature of API.md, byte for byte (the client computes the same).

::

    sign_key  = HMAC(HMAC(secret_key, date_utc.strftime("%Y%m%d")), host)
    to_sign   = "\\n".join([METHOD, path_with_query, date_header_as_sent, "host:" + host,
                           "content-type:" + content_type, "x-sorna-version:" + version,
                           hex(HASH(body))])
    signature = hex(HMAC(sign_key, to_sign))

The inner HMACs use raw digests; multipart bodies are hashed as empty.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import hmac
from typing import Final

DEFAULT_SIGN_METHOD: Final = "HMAC-SHA256"
_VARIABLE_LENGTH: Final = frozenset({"shake_128", "shake_256"})


class SigningError(ValueError):
    """A header needed for signing is malformed."""


def hash_name(sign_method: str) -> str:
    """Map ``HMAC-SHA256`` (and other hashlib-guaranteed names) to a hashlib name."""
    if not sign_method.upper().startswith("HMAC-"):
        raise SigningError(f"unsupported signMethod {sign_method!r}")
    name = sign_method[5:].lower()
    for candidate in (name, name.replace("-", ""), name.replace("-", "_")):
        if candidate in hashlib.algorithms_guaranteed and candidate not in _VARIABLE_LENGTH:
            return candidate
    raise SigningError(f"unsupported signMethod {sign_method!r}")


def parse_date(value: str) -> datetime.datetime:
    """Parse an ISO 8601 or RFC 1123 date; a naive one is UTC. Return it in UTC."""
    value = value.strip()
    parsed: datetime.datetime | None = None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            parsed = None
    if parsed is None:
        raise SigningError(f"malformed date {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def body_hash(body: bytes, content_type: str, hash_: str) -> str:
    """Return hex(HASH(body)); multipart bodies count as empty."""
    if content_type.strip().lower().startswith("multipart/"):
        body = b""
    return hashlib.new(hash_, body).hexdigest()


def sign(
    *,
    secret_key: str,
    method: str,
    path_with_query: str,
    date: str,
    host: str,
    content_type: str,
    version: str,
    body: bytes,
    sign_method: str = DEFAULT_SIGN_METHOD,
) -> str:
    """Return the hex signature of one request."""
    hash_ = hash_name(sign_method)
    date_utc = parse_date(date)
    key = hmac.new(secret_key.encode(), date_utc.strftime("%Y%m%d").encode(), hash_).digest()
    key = hmac.new(key, host.encode(), hash_).digest()
    to_sign = "\n".join(
        [
            method.upper(),
            path_with_query,
            date,
            "host:" + host,
            "content-type:" + content_type,
            "x-sorna-version:" + version,
            body_hash(body, content_type, hash_),
        ]
    )
    return hmac.new(key, to_sign.encode(), hash_).hexdigest()


def parse_authorization(value: str) -> tuple[str, str, str]:
    """Split ``Sorna signMethod=..., credential=AK:SIG`` into (sign method, access key, sig)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != "Sorna" or not rest:
        raise SigningError("Authorization must be 'Sorna signMethod=..., credential=AK:SIG'")
    params: dict[str, str] = {}
    for part in rest.split(","):
        k, sep, v = part.strip().partition("=")
        if not sep:
            raise SigningError("malformed Authorization parameter")
        params[k.strip()] = v.strip()
    try:
        sign_method = params["signMethod"]
        access_key, sep, signature = params["credential"].partition(":")
    except KeyError as e:
        raise SigningError(f"Authorization lacks {e.args[0]}") from None
    if not sep or not access_key or not signature:
        raise SigningError("credential must be ACCESS_KEY:SIGNATURE")
    hash_name(sign_method)
    return sign_method, access_key, signature


def authorization(sign_method: str, access_key: str, signature: str) -> str:
    """Format the Authorization header value."""
    return f"Sorna signMethod={sign_method}, credential={access_key}:{signature}"


def verify(expected: str, given: str) -> bool:
    """Compare two hex signatures in constant time."""
    return hmac.compare_digest(expected.encode(), given.encode())
