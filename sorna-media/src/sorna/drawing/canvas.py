"""The canvas and its shapes; every call appends a drawing command (PROTOCOLS.md section 6).

Commands, each a list whose first item is the canvas id:

* ``[cid, "canvas", width, height, bgcolor, fgcolor]`` - the canvas itself (first command)
* ``[cid, "obj", obj_id, [shape, *args]]`` - a new shape; ``args`` follow :data:`SHAPE_PROPS`
* ``[cid, "update", obj_id, prop, value]`` - a property changed (the browser animates it)
* ``[cid, "bgcolor", color]``, ``[cid, "fgcolor", color]``
* ``[cid, "begin-group", group_id]`` ... ``[cid, "end-group", group_id]`` - shapes in between
  move and turn with the group (its props ``x``, ``y``, ``angle``)
* ``[cid, "begin-fill", fill_id, color]`` ... ``[cid, "end-fill", fill_id]`` - the lines drawn
  in between outline a polygon filled with ``color`` (prop ``color``)
* ``[cid, "stop-anim"]`` / ``[cid, "resume-anim"]`` - updates in between apply at once

Colours are ``#rrggbbaa`` strings (``None`` for no fill), angles are degrees clockwise about
the shape's centre, coordinates are pixels from the top-left corner. Nothing reaches the
front-end until :meth:`Canvas.update` (or its alias :meth:`Canvas.show`).
"""

from __future__ import annotations

import base64
import math
import numbers
import os
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, ClassVar, Final, Generic, Self, TypeVar, overload

import msgpack

from sorna.types import DRAWING_MIME, MediaRecord, Vec2, emit

from .color import Color, ColorLike, Colors

#: The positional arguments of each shape in an ``obj`` command, by property name.
SHAPE_PROPS: Final[dict[str, tuple[str, ...]]] = {
    "line": ("x0", "y0", "x1", "y1", "stroke", "line_width"),
    "circle": ("x", "y", "radius", "stroke", "fill", "angle", "line_width"),
    "rect": ("x", "y", "width", "height", "stroke", "fill", "angle", "line_width"),
    "triangle": ("x", "y", "width", "height", "stroke", "fill", "angle", "line_width"),
    "polygon": ("x", "y", "points", "stroke", "fill", "angle", "line_width"),
    "text": ("x", "y", "text", "color", "size", "angle"),
}

T = TypeVar("T")
Command = list[Any]


def _num(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected a number, not {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        return int(value)
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"expected a finite number, not {result}")
    return result


def _color(value: Any) -> Color:
    return Color.parse(value)


def _opt_color(value: Any) -> Color | None:
    return None if value is None else Color.parse(value)


def _text(value: Any) -> str:
    return str(value)


def _points(value: Any) -> tuple[Vec2, ...]:
    points = tuple(Vec2(_num(p[0]), _num(p[1])) for p in value)
    if len(points) < 2:
        raise ValueError("a polygon needs at least two points")
    return points


def _wire(value: Any) -> Any:
    if isinstance(value, Color):
        return value.to_hex()
    if isinstance(value, tuple) and value and isinstance(value[0], Vec2):
        return [[p.x, p.y] for p in value]
    return value


class Prop(Generic[T]):
    """A shape property: reading gives its value, assigning records an ``update`` command."""

    def __init__(self, convert: Callable[[Any], T]) -> None:
        self.convert = convert
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Prop[T]: ...
    @overload
    def __get__(self, obj: DrawingObject, owner: type) -> T: ...
    def __get__(self, obj: DrawingObject | None, owner: type) -> Prop[T] | T:
        if obj is None:
            return self
        value: T = obj._props[self.name]
        return value

    def __set__(self, obj: DrawingObject, value: Any) -> None:
        converted = self.convert(value)
        obj._props[self.name] = converted
        obj.canvas._record("update", obj.id, self.name, _wire(converted))


class DrawingObject:
    """Something on a canvas with an id and settable properties."""

    kind: ClassVar[str] = ""

    def __init__(self, canvas: Canvas, obj_id: int) -> None:
        self.canvas = canvas
        self.id = obj_id
        self._props: dict[str, Any] = {}

    def _init_props(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            prop = getattr(type(self), name)
            assert isinstance(prop, Prop), name
            self._props[name] = prop.convert(value)

    def wire_args(self) -> list[Any]:
        """The ``obj`` command arguments, in :data:`SHAPE_PROPS` order."""
        return [_wire(self._props[name]) for name in SHAPE_PROPS[self.kind]]

    def __repr__(self) -> str:
        props = ", ".join(f"{k}={v!r}" for k, v in self._props.items())
        return f"<{type(self).__name__} #{self.id} {props}>"


class Line(DrawingObject):
    kind = "line"
    x0 = Prop(_num)
    y0 = Prop(_num)
    x1 = Prop(_num)
    y1 = Prop(_num)
    stroke = Prop(_color)
    line_width = Prop(_num)


class _Boxed(DrawingObject):
    x = Prop(_num)
    y = Prop(_num)
    stroke = Prop(_color)
    fill = Prop(_opt_color)
    angle = Prop(_num)
    line_width = Prop(_num)


class Circle(_Boxed):
    kind = "circle"
    radius = Prop(_num)


class Rect(_Boxed):
    kind = "rect"
    width = Prop(_num)
    height = Prop(_num)


class Triangle(Rect):
    """An isosceles triangle in its box: the apex at the top middle (before turning)."""

    kind = "triangle"


class Polygon(_Boxed):
    """Points relative to (x, y); ``angle`` turns it about its first point's origin (x, y)."""

    kind = "polygon"
    points = Prop(_points)


class Text(DrawingObject):
    kind = "text"
    x = Prop(_num)
    y = Prop(_num)
    text = Prop(_text)
    color = Prop(_color)
    size = Prop(_num)
    angle = Prop(_num)


class Group(DrawingObject):
    """Shapes made between begin and end move with ``x``/``y`` and turn with ``angle``."""

    kind = "group"
    x = Prop(_num)
    y = Prop(_num)
    angle = Prop(_num)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.canvas.end_group()


class Fill(DrawingObject):
    """Lines made between begin and end outline a polygon filled with ``color``."""

    kind = "fill"
    color = Prop(_color)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.canvas.end_fill()


class Canvas:
    """A drawing surface of ``width`` x ``height`` pixels shown in the front-end.

    Shapes and property changes are recorded as commands; :meth:`update` sends the pending
    ones as one ``application/x-sorna-drawing`` record, so calling it again after moving
    shapes animates the same canvas.
    """

    def __init__(
        self,
        width: int | float,
        height: int | float,
        bgcolor: ColorLike = Colors.White,
        fgcolor: ColorLike = Colors.Black,
    ) -> None:
        self.id = int.from_bytes(os.urandom(4), "big") >> 1
        self.width = _num(width)
        self.height = _num(height)
        self._bgcolor = Color.parse(bgcolor)
        self._fgcolor = Color.parse(fgcolor)
        self._pending: list[Command] = []
        self._next_id = 1
        self._groups: list[Group] = []
        self._fills: list[Fill] = []
        self._record(
            "canvas", self.width, self.height, self._bgcolor.to_hex(), self._fgcolor.to_hex()
        )

    # -- commands --------------------------------------------------------------------------

    def _record(self, *command: Any) -> None:
        self._pending.append([self.id, *command])

    @property
    def pending(self) -> list[Command]:
        """The commands recorded since the last :meth:`update` (a copy)."""
        return [list(c) for c in self._pending]

    def _new_id(self) -> int:
        obj_id = self._next_id
        self._next_id += 1
        return obj_id

    def _add(self, cls: Callable[[Canvas, int], T], **values: Any) -> T:
        obj = cls(self, self._new_id())
        assert isinstance(obj, DrawingObject)
        obj._init_props(values)
        self._record("obj", obj.id, [obj.kind, *obj.wire_args()])
        return obj

    def _stroke(self, stroke: ColorLike | None) -> Color:
        return self._fgcolor if stroke is None else Color.parse(stroke)

    # -- canvas properties -----------------------------------------------------------------

    @property
    def bgcolor(self) -> Color:
        """The background colour; assigning it repaints the background."""
        return self._bgcolor

    @bgcolor.setter
    def bgcolor(self, value: ColorLike) -> None:
        self._bgcolor = Color.parse(value)
        self._record("bgcolor", self._bgcolor.to_hex())

    @property
    def fgcolor(self) -> Color:
        """The default stroke colour of shapes made from now on."""
        return self._fgcolor

    @fgcolor.setter
    def fgcolor(self, value: ColorLike) -> None:
        self._fgcolor = Color.parse(value)
        self._record("fgcolor", self._fgcolor.to_hex())

    # -- shapes ----------------------------------------------------------------------------

    def line(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        *,
        stroke: ColorLike | None = None,
        line_width: float = 1,
    ) -> Line:
        """A line from (x0, y0) to (x1, y1); ``stroke`` defaults to the canvas's fgcolor."""
        line = self._add(
            Line,
            x0=x0,
            y0=y0,
            x1=x1,
            y1=y1,
            stroke=self._stroke(stroke),
            line_width=line_width,
        )
        return line

    def circle(
        self,
        x: float,
        y: float,
        radius: float,
        *,
        stroke: ColorLike | None = None,
        fill: ColorLike | None = None,
        angle: float = 0,
        line_width: float = 1,
    ) -> Circle:
        """A circle centred on (x, y)."""
        return self._add(
            Circle,
            x=x,
            y=y,
            radius=radius,
            stroke=self._stroke(stroke),
            fill=fill,
            angle=angle,
            line_width=line_width,
        )

    def rectangle(
        self,
        x: float,
        y: float,
        width: float,
        height: float,
        *,
        stroke: ColorLike | None = None,
        fill: ColorLike | None = None,
        angle: float = 0,
        line_width: float = 1,
    ) -> Rect:
        """A rectangle with its top-left corner at (x, y), turned ``angle`` about its centre."""
        return self._add(
            Rect,
            x=x,
            y=y,
            width=width,
            height=height,
            stroke=self._stroke(stroke),
            fill=fill,
            angle=angle,
            line_width=line_width,
        )

    rect = rectangle

    def triangle(
        self,
        x: float,
        y: float,
        width: float,
        height: float,
        *,
        stroke: ColorLike | None = None,
        fill: ColorLike | None = None,
        angle: float = 0,
        line_width: float = 1,
    ) -> Triangle:
        """An isosceles triangle in the box at (x, y), apex up, turned about the box centre."""
        return self._add(
            Triangle,
            x=x,
            y=y,
            width=width,
            height=height,
            stroke=self._stroke(stroke),
            fill=fill,
            angle=angle,
            line_width=line_width,
        )

    def polygon(
        self,
        points: Iterable[tuple[float, float]],
        *,
        x: float = 0,
        y: float = 0,
        stroke: ColorLike | None = None,
        fill: ColorLike | None = None,
        angle: float = 0,
        line_width: float = 1,
    ) -> Polygon:
        """A closed polygon through ``points`` (relative to (x, y), turned about (x, y))."""
        return self._add(
            Polygon,
            x=x,
            y=y,
            points=list(points),
            stroke=self._stroke(stroke),
            fill=fill,
            angle=angle,
            line_width=line_width,
        )

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        color: ColorLike | None = None,
        size: float = 16,
        angle: float = 0,
    ) -> Text:
        """``text`` with its baseline starting at (x, y), ``size`` pixels high."""
        return self._add(
            Text, x=x, y=y, text=text, color=self._stroke(color), size=size, angle=angle
        )

    # -- groups, fills, animation ----------------------------------------------------------

    def begin_group(self) -> Group:
        """Start a group (also a context manager that ends it)."""
        group = Group(self, self._new_id())
        group._init_props({"x": 0, "y": 0, "angle": 0})
        self._groups.append(group)
        self._record("begin-group", group.id)
        return group

    group = begin_group

    def end_group(self) -> None:
        """End the innermost group."""
        if not self._groups:
            raise RuntimeError("end_group() without begin_group()")
        self._record("end-group", self._groups.pop().id)

    def begin_fill(self, color: ColorLike | None = None) -> Fill:
        """Fill the outline of the lines made until :meth:`end_fill` (a context manager)."""
        fill = Fill(self, self._new_id())
        fill._init_props({"color": self._fgcolor if color is None else color})
        self._fills.append(fill)
        self._record("begin-fill", fill.id, fill.color.to_hex())
        return fill

    def end_fill(self) -> None:
        """End the innermost fill."""
        if not self._fills:
            raise RuntimeError("end_fill() without begin_fill()")
        self._record("end-fill", self._fills.pop().id)

    def stop_animation(self) -> None:
        """Apply the following updates at once instead of animating them."""
        self._record("stop-anim")

    def resume_animation(self) -> None:
        """Animate updates again."""
        self._record("resume-anim")

    # -- output ----------------------------------------------------------------------------

    def record(self) -> MediaRecord:
        """The pending commands as a drawing record (clears them)."""
        data = msgpack.packb(self._pending, use_bin_type=True)
        self._pending = []
        return {"type": DRAWING_MIME, "data": base64.b64encode(data).decode("ascii")}

    def update(self) -> None:
        """Send the pending commands to the front-end (nothing to send: no-op)."""
        if self._pending:
            emit(self.record())

    show = update

    def __repr__(self) -> str:
        return f"<Canvas #{self.id} {self.width}x{self.height}>"


def decode_drawing(data: str) -> list[Command]:
    """The command list of a drawing record's ``data`` (for tests and tools)."""
    commands = msgpack.unpackb(base64.b64decode(data), raw=False)
    assert isinstance(commands, list)
    return commands


__all__ = [
    "SHAPE_PROPS",
    "Canvas",
    "Circle",
    "DrawingObject",
    "Fill",
    "Group",
    "Line",
    "Polygon",
    "Prop",
    "Rect",
    "Text",
    "Triangle",
    "decode_drawing",
]
