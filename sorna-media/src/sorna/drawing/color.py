"""Colours: :class:`Color` (8-bit RGBA) and the named :class:`Colors`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

_HEX = re.compile(r"#?([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


@dataclass(frozen=True, slots=True)
class Color:
    """An sRGB colour with alpha, each channel 0-255; on the wire as ``#rrggbbaa``."""

    r: int
    g: int
    b: int
    a: int = 255

    def __post_init__(self) -> None:
        for name in ("r", "g", "b", "a"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
                raise ValueError(f"Color.{name} must be an int in 0..255, not {value!r}")

    @classmethod
    def from_rgba(cls, r: int, g: int, b: int, a: int = 255) -> Color:
        """A colour from 0-255 channels."""
        return cls(r, g, b, a)

    @classmethod
    def from_hex(cls, text: str) -> Color:
        """Parse ``#rgb``, ``#rgba``, ``#rrggbb`` or ``#rrggbbaa`` (the ``#`` is optional)."""
        m = _HEX.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"not a hex colour: {text!r}")
        digits = m.group(1)
        if len(digits) <= 4:
            digits = "".join(ch * 2 for ch in digits)
        if len(digits) == 6:
            digits += "ff"
        r, g, b, a = (int(digits[i : i + 2], 16) for i in range(0, 8, 2))
        return cls(r, g, b, a)

    @classmethod
    def parse(cls, value: ColorLike) -> Color:
        """A colour from a Color, a hex string, a name of :class:`Colors` or an (r, g, b[, a])."""
        if isinstance(value, Color):
            return value
        if isinstance(value, str):
            named = Colors.by_name(value)
            return named if named is not None else cls.from_hex(value)
        if isinstance(value, tuple) and len(value) in (3, 4):
            return cls(*value)
        raise TypeError(f"not a colour: {value!r} (give a Color, '#rrggbb', a name or a tuple)")

    def with_alpha(self, a: int) -> Color:
        """The same colour with alpha ``a``."""
        return Color(self.r, self.g, self.b, a)

    def to_hex(self) -> str:
        """``#rrggbbaa``, the wire form."""
        return f"#{self.r:02x}{self.g:02x}{self.b:02x}{self.a:02x}"

    def to_rgba(self) -> tuple[int, int, int, int]:
        return (self.r, self.g, self.b, self.a)

    def __str__(self) -> str:
        return self.to_hex()


ColorLike: TypeAlias = Color | str | tuple[int, int, int] | tuple[int, int, int, int]


class Colors:
    """Named colours (``Colors.Red``); :meth:`by_name` looks one up case-insensitively."""

    Transparent: ClassVar[Color] = Color(0, 0, 0, 0)
    Black: ClassVar[Color] = Color(0, 0, 0)
    White: ClassVar[Color] = Color(255, 255, 255)
    Gray: ClassVar[Color] = Color(128, 128, 128)
    LightGray: ClassVar[Color] = Color(211, 211, 211)
    DarkGray: ClassVar[Color] = Color(64, 64, 64)
    Red: ClassVar[Color] = Color(255, 0, 0)
    Green: ClassVar[Color] = Color(0, 128, 0)
    Lime: ClassVar[Color] = Color(0, 255, 0)
    Blue: ClassVar[Color] = Color(0, 0, 255)
    Yellow: ClassVar[Color] = Color(255, 255, 0)
    Cyan: ClassVar[Color] = Color(0, 255, 255)
    Magenta: ClassVar[Color] = Color(255, 0, 255)
    Orange: ClassVar[Color] = Color(255, 165, 0)
    Purple: ClassVar[Color] = Color(128, 0, 128)
    Brown: ClassVar[Color] = Color(165, 42, 42)
    Pink: ClassVar[Color] = Color(255, 192, 203)

    @classmethod
    def by_name(cls, name: str) -> Color | None:
        """The colour called ``name`` (any case), or None."""
        wanted = name.strip().lower().replace(" ", "").replace("grey", "gray")
        for attr, value in vars(cls).items():
            if isinstance(value, Color) and attr.lower() == wanted:
                return value
        return None


__all__ = ["Color", "ColorLike", "Colors"]
