"""The msgpack codec of every Sorna wire message.

Strings travel as msgpack ``str`` (UTF-8) and bytes as ``bin``; tuples come back as lists.
Exactly two extension types exist, and nothing is ever pickled:

- ``datetime.datetime`` as the standard msgpack Timestamp (ext -1). Aware datetimes keep
  their instant; naive ones are taken to be UTC. Decoded datetimes are aware, in UTC.
- ``uuid.UUID`` as ext :data:`UUID_EXT_CODE` holding the 16 raw bytes.

Any other object raises :class:`~sorna.common.errors.CodecError` when packed, and so do
malformed bytes when unpacked.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any, Final

import msgpack

from sorna.common.errors import CodecError

log = logging.getLogger(__name__)

#: Extension type code of ``uuid.UUID`` (16 raw bytes).
UUID_EXT_CODE: Final = 1

_TIMESTAMP_UTC: Final = 3  # msgpack's ``timestamp=3``: decode Timestamps as aware UTC datetimes


def _default(obj: object) -> Any:
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(UUID_EXT_CODE, obj.bytes)
    if isinstance(obj, datetime.datetime):
        # Only naive datetimes get here (``datetime=True`` packs aware ones itself).
        return obj.replace(tzinfo=datetime.UTC)
    raise CodecError(f"cannot encode object of type {type(obj).__qualname__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == UUID_EXT_CODE:
        if len(data) != 16:
            raise CodecError(f"UUID extension holds {len(data)} bytes, not 16")
        return uuid.UUID(bytes=data)
    raise CodecError(f"unknown msgpack extension type {code}")


def packb(obj: Any) -> bytes:
    """Encode ``obj`` as msgpack bytes; raise CodecError if it holds an unsupported object."""
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True, datetime=True)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from exc


def unpackb(data: bytes | bytearray | memoryview) -> Any:
    """Decode one msgpack object from ``data``; raise CodecError if the bytes are malformed."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            timestamp=_TIMESTAMP_UTC,
            ext_hook=_ext_hook,
            strict_map_key=False,
        )
    except CodecError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ValueError covers ExtraData, FormatError, StackError and bad UTF-8.
        raise CodecError(f"malformed msgpack data: {exc or type(exc).__name__}") from exc
