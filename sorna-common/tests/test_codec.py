"""The msgpack codec: round trips, the two extension types, and what it refuses."""

from __future__ import annotations

import datetime
import enum
import uuid
from decimal import Decimal
from typing import Any

import msgpack
import pytest

from sorna.common.codec import UUID_EXT_CODE, packb, unpackb
from sorna.common.errors import CodecError


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**64 - 1,
        -(2**63),
        1.5,
        "",
        "héllo wörld ✓",
        b"",
        b"\x00\xff" * 100,
        [],
        [1, "two", b"three", None],
        {},
        {"nested": {"list": [1, {"deep": [b"x"]}], "empty": {}}},
        {1: "int keys", "s": 2},
    ],
)
def test_round_trip(value: Any) -> None:
    assert unpackb(packb(value)) == value


def test_str_and_bytes_stay_apart() -> None:
    decoded = unpackb(packb({"s": "abc", "b": b"abc"}))
    assert type(decoded["s"]) is str
    assert type(decoded["b"]) is bytes


def test_tuple_comes_back_as_list() -> None:
    assert unpackb(packb((1, 2, (3,)))) == [1, 2, [3]]


def test_str_enum_packs_as_its_value() -> None:
    class Status(enum.StrEnum):
        RUNNING = "running"

    assert unpackb(packb({"status": Status.RUNNING})) == {"status": "running"}


def test_uuid_round_trip() -> None:
    value = uuid.uuid4()
    packed = packb(value)
    decoded = unpackb(packed)
    assert isinstance(decoded, uuid.UUID)
    assert decoded == value
    # The wire form is our ext type with the 16 raw bytes.
    assert msgpack.unpackb(packed) == msgpack.ExtType(UUID_EXT_CODE, value.bytes)


def test_aware_datetime_keeps_its_instant_and_comes_back_in_utc() -> None:
    tz = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    value = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=tz)
    decoded = unpackb(packb(value))
    assert decoded == value
    assert decoded.utcoffset() == datetime.timedelta(0)
    assert decoded.microsecond == 123456


def test_naive_datetime_is_taken_as_utc() -> None:
    value = datetime.datetime(1969, 7, 20, 20, 17, 40)
    decoded = unpackb(packb(value))
    assert decoded == value.replace(tzinfo=datetime.UTC)
    assert decoded.tzinfo is not None


def test_datetime_is_standard_msgpack_timestamp() -> None:
    value = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    assert msgpack.unpackb(packb(value)) == msgpack.Timestamp.from_datetime(value)


def test_ext_types_nested_in_containers() -> None:
    kid = uuid.uuid4()
    now = datetime.datetime.now(datetime.UTC)
    assert unpackb(packb({"ids": [kid], "at": {"t": now}})) == {"ids": [kid], "at": {"t": now}}


class _Opaque:
    pass


class _Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        _Opaque(),
        {1, 2},
        frozenset(),
        datetime.date(2024, 1, 1),
        datetime.timedelta(seconds=1),
        Decimal("1.5"),
        2**64,
        -(2**63) - 1,
        lambda: None,
        {"nested": [_Opaque()]},
        _Color.RED,
    ],
)
def test_other_objects_are_refused(value: object) -> None:
    with pytest.raises(CodecError):
        packb(value)


def test_pickle_style_object_is_refused_even_with_reduce() -> None:
    class Sneaky:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pwned",))

    with pytest.raises(CodecError):
        packb(Sneaky())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # the one byte msgpack never uses
        b"\x92\x01",  # array of two with one element
        b"\x01\x02",  # trailing data
        b"\xa2\xff\xfe",  # str that is not UTF-8
        b"\xdd\xff\xff\xff\xff",  # array header claiming 4 G elements
        b"\xd4\x07\x00",  # unknown ext type
        b"\xd6\x01abcd",  # UUID ext of the wrong length
        b"\xd7\xff" + b"\xff" * 8,  # timestamp with impossible nanoseconds
        b"\x91" * 100_000 + b"\xc0",  # nesting deep enough to blow the stack
    ],
)
def test_malformed_bytes_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        unpackb(data)


def test_non_bytes_input_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        unpackb("not bytes")  # type: ignore[arg-type]


def test_accepts_memoryview() -> None:
    assert unpackb(memoryview(packb({"a": [1, 2]}))) == {"a": [1, 2]}
