"""Conversion between protocol dataclasses and the plain maps that travel on the wire."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from sorna.common.errors import CodecError


class WireMessage:
    """Mixin for frozen dataclasses that travel as msgpack maps.

    Unknown keys are ignored on input (field additions are allowed by the protocol); a missing
    required field or a value of the wrong basic type is a :class:`CodecError`.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_wire(self) -> dict[str, Any]:
        """Return the message as a plain map."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Build the message from a plain map, checking required fields and basic types."""
        if not isinstance(data, Mapping):
            raise CodecError(f"{cls.__name__}: expected a map, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise CodecError(f"{cls.__name__}: missing field {f.name!r}")
                continue
            value = data[f.name]
            kwargs[f.name] = _convert(cls.__name__, f.name, value, hints[f.name])
        return cls(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, WireMessage):
        return value.to_wire()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _convert(owner: str, name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against ``hint``; build nested messages from their maps."""
    nested = [
        arg
        for arg in (typing.get_args(hint) or (hint,))
        if isinstance(arg, type) and issubclass(arg, WireMessage)
    ]
    if nested and isinstance(value, Mapping):
        return nested[0].from_wire(value)
    _check_type(owner, name, value, hint)
    return value


_BASIC: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    bytes: (bytes, bytearray, memoryview),
    dict: (dict,),
    list: (list, tuple),
}


def _check_type(owner: str, name: str, value: Any, hint: Any) -> None:
    """Check ``value`` against the outer shape of ``hint`` (no deep generic checks)."""
    if hint is Any:
        return
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return
        args = tuple(a for a in args if a is not type(None))
        errors = 0
        for arg in args:
            try:
                _check_type(owner, name, value, arg)
            except CodecError:
                errors += 1
        if errors == len(args):
            raise CodecError(f"{owner}: field {name!r} has the wrong type ({type(value).__name__})")
        return
    base = origin or hint
    if typing.get_origin(base) is None and hasattr(base, "__supertype__"):  # NewType
        base = base.__supertype__
    allowed = _BASIC.get(base)
    if allowed is None:
        return
    if isinstance(value, bool) and base in (int, float):
        raise CodecError(f"{owner}: field {name!r} must be a number, not a bool")
    if not isinstance(value, allowed):
        raise CodecError(
            f"{owner}: field {name!r} must be {base.__name__}, got {type(value).__name__}"
        )
