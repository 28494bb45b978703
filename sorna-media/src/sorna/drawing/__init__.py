"""Vector drawings for the Sorna front-end: a canvas, shapes you can move later, a turtle.

::

    from sorna.drawing import Canvas, Colors, Turtle

    c = Canvas(200, 200, bgcolor=Colors.White)
    ball = c.circle(20, 100, 10, fill=Colors.Red)
    c.update()            # shows the canvas
    ball.x = 180          # an animated move ...
    c.update()            # ... shown now

Commands and their wire form: :mod:`sorna.drawing.canvas`. Errors: wrong argument types are
``TypeError``, bad values (a colour name, a polygon of one point) ``ValueError``, unbalanced
``end_group``/``end_fill`` ``RuntimeError``.
"""

from .canvas import (
    SHAPE_PROPS,
    Canvas,
    Circle,
    DrawingObject,
    Fill,
    Group,
    Line,
    Polygon,
    Rect,
    Text,
    Triangle,
    decode_drawing,
)
from .color import Color, ColorLike, Colors
from .turtle import Turtle

__all__ = [
    "SHAPE_PROPS",
    "Canvas",
    "Circle",
    "Color",
    "ColorLike",
    "Colors",
    "DrawingObject",
    "Fill",
    "Group",
    "Line",
    "Polygon",
    "Rect",
    "Text",
    "Triangle",
    "Turtle",
    "decode_drawing",
]
