"""Conversion between protocol dataclasses and the plain maps that travel on the wire."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from sorna.common.errors import CodecError

#: Checks (and, for nested messages, builds) one field's value: (owner, field, value) -> value.
_Convert = Callable[[str, str, Any], Any]


class WireMessage:
    """Mixin for frozen dataclasses that travel as msgpack maps.

    Unknown keys are ignored on input (field additions are allowed by the protocol); a missing
    required field or a value of the wrong basic type is a :class:`CodecError`.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_wire(self) -> dict[str, Any]:
        """Return the message as a plain map."""
        return {
            name: getattr(self, name) if nested is None else nested(getattr(self, name))
            for name, nested in _out_plan(type(self))
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Build the message from a plain map, checking required fields and basic types."""
        if not isinstance(data, Mapping):
            raise CodecError(f"{cls.__name__}: expected a map, got {type(data).__name__}")
        owner = cls.__name__
        kwargs: dict[str, Any] = {}
        for name, required, convert in _in_plan(cls):
            if name in data:
                kwargs[name] = convert(owner, name, data[name])
            elif required:
                raise CodecError(f"{owner}: missing field {name!r}")
        return cls(**kwargs)


# The plans are worked out once per class: reading type hints costs far more than a call.
_InPlan = tuple[tuple[str, bool, _Convert], ...]
_OutPlan = tuple[tuple[str, Callable[[Any], Any] | None], ...]
_IN_PLANS: dict[type, _InPlan] = {}
_OUT_PLANS: dict[type, _OutPlan] = {}


def _in_plan(cls: type[WireMessage]) -> _InPlan:
    plan = _IN_PLANS.get(cls)
    if plan is None:
        plan = _IN_PLANS[cls] = _make_in_plan(cls)
    return plan


def _out_plan(cls: type[WireMessage]) -> _OutPlan:
    plan = _OUT_PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = _OUT_PLANS[cls] = tuple(
            (f.name, _plain if _holds_message(hints[f.name]) else None)
            for f in dataclasses.fields(cls)
        )
    return plan


def _make_in_plan(cls: type[WireMessage]) -> _InPlan:
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            _converter(hints[f.name]),
        )
        for f in dataclasses.fields(cls)
    )


def _holds_message(hint: Any) -> bool:
    if isinstance(hint, type) and issubclass(hint, WireMessage):
        return True
    return any(_holds_message(arg) for arg in typing.get_args(hint))


def _plain(value: Any) -> Any:
    if isinstance(value, WireMessage):
        return value.to_wire()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _message_in(hint: Any) -> type[WireMessage] | None:
    for arg in typing.get_args(hint) or (hint,):
        if isinstance(arg, type) and issubclass(arg, WireMessage):
            return arg
    return None


def _converter(hint: Any) -> _Convert:
    """The check of a field of type ``hint``; nested messages (also as list items or map
    values) are built from their maps."""
    nested = _message_in(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is dict and len(args) == 2 and _message_in(args[1]) is not None:
        item = _converter(args[1])

        def convert_map(owner: str, name: str, value: Any) -> Any:
            _check_type(owner, name, value, dict)
            return {k: item(owner, name, v) for k, v in value.items()}

        return convert_map
    if origin is list and len(args) == 1 and _message_in(args[0]) is not None:
        item = _converter(args[0])

        def convert_list(owner: str, name: str, value: Any) -> Any:
            _check_type(owner, name, value, list)
            return [item(owner, name, v) for v in value]

        return convert_list

    optional = type(None) in args

    def convert(owner: str, name: str, value: Any) -> Any:
        if nested is None:
            _check_type(owner, name, value, hint)
            return value
        if isinstance(value, Mapping):
            return nested.from_wire(value)
        if value is None and optional:
            return None
        raise CodecError(f"{owner}: field {name!r} must be a map, got {type(value).__name__}")

    return convert


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
