"""A turtle drawing lines on a :class:`~sorna.drawing.Canvas`.

The turtle starts at the canvas centre facing east (heading 0); ``left`` turns it
counter-clockwise as seen on screen. Each move with the pen down adds a line; the turtle
itself is a small triangle whose position and angle are updated, so it walks when animated.
"""

from __future__ import annotations

import math

from sorna.types import Vec2

from .canvas import Canvas, Line, Triangle
from .color import ColorLike, Colors

_SIZE = 10.0
_DIGITS = 6


class Turtle:
    """``forward``/``backward``, ``left``/``right``, ``penup``/``pendown``, ``setpos``, ``pos``."""

    def __init__(
        self, canvas: Canvas, *, color: ColorLike = Colors.Black, line_width: float = 1
    ) -> None:
        self.canvas = canvas
        self.color = color
        self.line_width = line_width
        self._pos = Vec2(_clean(canvas.width / 2), _clean(canvas.height / 2))
        self._heading = 0.0
        self._pen_down = True
        self.lines: list[Line] = []
        self.shape: Triangle = canvas.triangle(
            _clean(self._pos.x - _SIZE / 2),
            _clean(self._pos.y - _SIZE / 2),
            _SIZE,
            _SIZE,
            stroke=Colors.Black,
            fill=Colors.Green,
            angle=self._shape_angle(),
        )

    def pos(self) -> Vec2:
        """Where the turtle is."""
        return self._pos

    position = pos

    def heading(self) -> float:
        """Degrees counter-clockwise from east, in [0, 360)."""
        return self._heading

    def isdown(self) -> bool:
        return self._pen_down

    def penup(self) -> None:
        """Move without drawing."""
        self._pen_down = False

    def pendown(self) -> None:
        """Draw while moving."""
        self._pen_down = True

    def forward(self, distance: float) -> None:
        """Move ``distance`` pixels along the heading (drawing if the pen is down)."""
        rad = math.radians(self._heading)
        self._move_to(
            _clean(self._pos.x + distance * math.cos(rad)),
            _clean(self._pos.y - distance * math.sin(rad)),
        )

    fd = forward

    def backward(self, distance: float) -> None:
        self.forward(-distance)

    back = bk = backward

    def left(self, degrees: float) -> None:
        """Turn counter-clockwise."""
        self._heading = (self._heading + degrees) % 360
        self.shape.angle = self._shape_angle()

    lt = left

    def right(self, degrees: float) -> None:
        """Turn clockwise."""
        self.left(-degrees)

    rt = right

    def setheading(self, degrees: float) -> None:
        self._heading = degrees % 360
        self.shape.angle = self._shape_angle()

    def setpos(self, x: float, y: float) -> None:
        """Move straight to (x, y) (drawing if the pen is down)."""
        self._move_to(_clean(x), _clean(y))

    goto = setpos

    def _move_to(self, x: float, y: float) -> None:
        start = self._pos
        self._pos = Vec2(x, y)
        if self._pen_down and start != self._pos:
            self.lines.append(
                self.canvas.line(
                    start.x, start.y, x, y, stroke=self.color, line_width=self.line_width
                )
            )
        self.shape.x = _clean(x - _SIZE / 2)
        self.shape.y = _clean(y - _SIZE / 2)

    def _shape_angle(self) -> float:
        # The triangle's apex points up at angle 0 and angles turn clockwise on screen.
        return _clean((90 - self._heading) % 360)


def _clean(value: float) -> float:
    """Integral floats become ints, so commands read ``100`` rather than ``100.0``."""
    value = round(float(value), _DIGITS) + 0.0
    return int(value) if value.is_integer() else value


__all__ = ["Turtle"]
