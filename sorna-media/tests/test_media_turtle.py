"""sorna.drawing.Turtle: geometry of the lines it draws and of its own shape."""

from __future__ import annotations

import pytest

from sorna.drawing import Canvas, Turtle, decode_drawing
from sorna.types import MediaRecord


def segments(t: Turtle) -> list[tuple[float, float, float, float]]:
    return [(ln.x0, ln.y0, ln.x1, ln.y1) for ln in t.lines]


def test_a_square_is_four_segments(emitted: list[MediaRecord]) -> None:
    c = Canvas(200, 200)
    t = Turtle(c)
    for _ in range(4):
        t.forward(50)
        t.left(90)
    # Starts at the centre facing east; left turns counter-clockwise (y points down).
    assert segments(t) == [
        (100, 100, 150, 100),
        (150, 100, 150, 50),
        (150, 50, 100, 50),
        (100, 50, 100, 100),
    ]
    assert t.pos() == (100, 100)
    assert t.heading() == 0
    c.update()
    commands = decode_drawing(emitted[-1]["data"])
    lines = [cmd[3] for cmd in commands if cmd[1] == "obj" and cmd[3][0] == "line"]
    assert [tuple(ln[1:5]) for ln in lines] == segments(t)


def test_penup_moves_without_drawing() -> None:
    t = Turtle(Canvas(100, 100))
    t.penup()
    t.forward(10)
    t.pendown()
    t.right(90)
    t.forward(10)
    assert segments(t) == [(60, 50, 60, 60)]
    assert t.isdown()


def test_setpos_and_backward() -> None:
    t = Turtle(Canvas(100, 100))
    t.setpos(0, 0)
    t.backward(10)
    assert segments(t) == [(50, 50, 0, 0), (0, 0, -10, 0)]
    assert t.pos() == (-10, 0)


def test_diagonal_geometry() -> None:
    t = Turtle(Canvas(0, 0))
    t.left(45)
    t.forward(2**0.5)
    assert t.pos().x == pytest.approx(1)
    assert t.pos().y == pytest.approx(-1)


def test_the_turtle_shape_follows_and_turns() -> None:
    t = Turtle(Canvas(100, 100))
    assert (t.shape.x, t.shape.y, t.shape.angle) == (45, 45, 90)
    t.forward(10)
    t.left(90)
    assert (t.shape.x, t.shape.y, t.shape.angle) == (55, 45, 0)
