"""Request signing, byte for byte as API.md's "Authentication" section.

::

    sign_key  = HMAC(HMAC(secret_key, date_utc.strftime("%Y%m%d")), host_header_value)
    to_sign   = "\\n".join([METHOD, path_with_query, date_header_value_as_sent,
                           "host:" + host, "content-type:" + content_type,
                           "x-sorna-version:" + version, hex(HASH(body))])
    signature = hex(HMAC(sign_key, to_sign))

The two inner HMACs are raw digests; only the body hash and the signature are hex. A
multipart body is hashed as empty.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from yarl import URL

AUTH_SCHEME = "Sorna"


@dataclass(frozen=True, slots=True)
class SigningInput:
    """Everything the signature covers, as it goes on the wire."""

    method: str
    path_with_query: str
    date_value: str
    date: datetime
    host: str
    content_type: str
    version: str
    body: bytes


def sign(secret_key: str, hash_type: str, req: SigningInput) -> str:
    """Return the hex signature of ``req`` with ``secret_key`` and the hashlib ``hash_type``."""
    date_utc = req.date.astimezone(UTC) if req.date.tzinfo else req.date
    day_key = hmac.new(
        secret_key.encode(), date_utc.strftime("%Y%m%d").encode(), hash_type
    ).digest()
    sign_key = hmac.new(day_key, req.host.encode(), hash_type).digest()
    to_sign = "\n".join(
        [
            req.method.upper(),
            req.path_with_query,
            req.date_value,
            "host:" + req.host,
            "content-type:" + req.content_type,
            "x-sorna-version:" + req.version,
            hashlib.new(hash_type, _hashed_body(req)).hexdigest(),
        ]
    )
    return hmac.new(sign_key, to_sign.encode(), hash_type).hexdigest()


def _hashed_body(req: SigningInput) -> bytes:
    # API.md: multipart bodies are hashed as empty (so uploads can stream).
    if req.content_type.strip().lower().startswith("multipart/"):
        return b""
    return req.body


def sign_method(hash_type: str) -> str:
    """Return the ``signMethod`` name for a hashlib name: ``sha256`` -> ``HMAC-SHA256``."""
    return "HMAC-" + hash_type.upper()


def authorization(access_key: str, hash_type: str, signature: str) -> str:
    """Return the ``Authorization`` header value."""
    return f"{AUTH_SCHEME} signMethod={sign_method(hash_type)}, credential={access_key}:{signature}"


def host_header(url: URL) -> str:
    """Return the ``Host`` header for ``url`` (the port only when it is not the default)."""
    host = url.raw_host or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if url.explicit_port is not None and not url.is_default_port():
        host += f":{url.explicit_port}"
    return host


def format_date(now: datetime) -> str:
    """Return the ``Date`` header value for ``now``: ISO 8601 in UTC, second precision."""
    return now.astimezone(UTC).replace(microsecond=0).isoformat()


def signed_headers(
    *,
    access_key: str,
    secret_key: str,
    hash_type: str,
    version: str,
    method: str,
    url: URL,
    content_type: str,
    body: bytes,
    now: datetime | None = None,
) -> dict[str, str]:
    """Return the headers that authenticate one request to ``url``.

    ``body`` is the exact body sent (``b""`` will do for multipart, which is hashed as empty).
    """
    now = now or datetime.now(UTC)
    req = SigningInput(
        method=method,
        path_with_query=url.raw_path_qs,
        date_value=format_date(now),
        date=now,
        host=host_header(url),
        content_type=content_type,
        version=version,
        body=body,
    )
    return {
        "Date": req.date_value,
        "Host": req.host,
        "Content-Type": content_type,
        "X-Sorna-Version": version,
        "Authorization": authorization(access_key, hash_type, sign(secret_key, hash_type, req)),
    }
