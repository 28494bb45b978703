"""sorna.drawing: the exact commands each call produces, decoded from the emitted record."""

from __future__ import annotations

import pytest

from sorna.drawing import Canvas, Color, Colors, decode_drawing
from sorna.types import DRAWING_MIME, MediaRecord

BLACK = "#000000ff"
WHITE = "#ffffffff"
RED = "#ff0000ff"
BLUE = "#0000ffff"


def shown(canvas: Canvas, emitted: list[MediaRecord]) -> list[list[object]]:
    """update() the canvas and return the commands of the one record it emitted."""
    before = len(emitted)
    canvas.update()
    assert len(emitted) == before + 1
    record = emitted[-1]
    assert record["type"] == DRAWING_MIME
    return decode_drawing(record["data"])


def test_canvas_command_comes_first(emitted: list[MediaRecord]) -> None:
    c = Canvas(320, 240, bgcolor=Colors.Yellow, fgcolor="#123456")
    assert shown(c, emitted) == [[c.id, "canvas", 320, 240, "#ffff00ff", "#123456ff"]]


def test_each_shape_gives_one_obj_command(emitted: list[MediaRecord]) -> None:
    c = Canvas(100, 100)
    c.line(1, 2, 3, 4, stroke=Colors.Red, line_width=2)
    c.circle(50, 50, 10, fill=Colors.Blue)
    c.rectangle(10, 20, 30, 40, stroke="red", angle=45)
    c.triangle(0, 0, 10, 10, fill=(0, 0, 255))
    c.polygon([(0, 0), (10, 0), (5, 5)], x=1, y=2)
    c.text(5, 6, "hi", size=12)
    cid = c.id
    assert shown(c, emitted)[1:] == [
        [cid, "obj", 1, ["line", 1, 2, 3, 4, RED, 2]],
        [cid, "obj", 2, ["circle", 50, 50, 10, BLACK, BLUE, 0, 1]],
        [cid, "obj", 3, ["rect", 10, 20, 30, 40, RED, None, 45, 1]],
        [cid, "obj", 4, ["triangle", 0, 0, 10, 10, BLACK, BLUE, 0, 1]],
        [cid, "obj", 5, ["polygon", 1, 2, [[0, 0], [10, 0], [5, 5]], BLACK, None, 0, 1]],
        [cid, "obj", 6, ["text", 5, 6, "hi", BLACK, 12, 0]],
    ]


def test_setting_properties_records_updates(emitted: list[MediaRecord]) -> None:
    c = Canvas(100, 100)
    ball = c.circle(10, 10, 5)
    shown(c, emitted)
    ball.x = 90
    ball.fill = Colors.Red
    ball.angle = 12.5
    assert ball.x == 90 and ball.fill == Colors.Red
    assert shown(c, emitted) == [
        [c.id, "update", 1, "x", 90],
        [c.id, "update", 1, "fill", RED],
        [c.id, "update", 1, "angle", 12.5],
    ]


def test_update_sends_only_pending_and_is_a_no_op_when_idle(emitted: list[MediaRecord]) -> None:
    c = Canvas(10, 10)
    c.update()
    c.show()
    assert len(emitted) == 1
    assert c.pending == []


def test_canvas_colours_groups_fills_and_animation(emitted: list[MediaRecord]) -> None:
    c = Canvas(100, 100)
    shown(c, emitted)
    c.bgcolor = Colors.Black
    c.fgcolor = Colors.White
    with c.begin_group() as g:
        c.line(0, 0, 1, 1)
    g.x = 10
    with c.begin_fill(Colors.Blue) as f:
        c.line(0, 0, 5, 0)
    f.color = Colors.Red
    c.stop_animation()
    g.angle = 90
    c.resume_animation()
    cid = c.id
    assert shown(c, emitted) == [
        [cid, "bgcolor", BLACK],
        [cid, "fgcolor", WHITE],
        [cid, "begin-group", 1],
        [cid, "obj", 2, ["line", 0, 0, 1, 1, WHITE, 1]],
        [cid, "end-group", 1],
        [cid, "update", 1, "x", 10],
        [cid, "begin-fill", 3, BLUE],
        [cid, "obj", 4, ["line", 0, 0, 5, 0, WHITE, 1]],
        [cid, "end-fill", 3],
        [cid, "update", 3, "color", RED],
        [cid, "stop-anim"],
        [cid, "update", 1, "angle", 90],
        [cid, "resume-anim"],
    ]


def test_unbalanced_group_and_fill_raise() -> None:
    c = Canvas(10, 10)
    with pytest.raises(RuntimeError, match="begin_group"):
        c.end_group()
    with pytest.raises(RuntimeError, match="begin_fill"):
        c.end_fill()


def test_bad_values_are_rejected_before_recording() -> None:
    c = Canvas(10, 10)
    shape = c.circle(1, 1, 1)
    before = c.pending
    with pytest.raises(TypeError):
        shape.x = "left"
    with pytest.raises(ValueError):
        shape.fill = "no-such-colour"
    with pytest.raises(ValueError):
        c.polygon([(0, 0)])
    assert c.pending == before


def test_colors() -> None:
    assert Color.from_hex("#f00").to_hex() == RED
    assert Color.from_hex("00ff0080") == Color(0, 255, 0, 128)
    assert Color.from_rgba(1, 2, 3).to_hex() == "#010203ff"
    assert Color.parse("Grey") == Colors.Gray
    assert Color.parse((1, 2, 3, 4)) == Color(1, 2, 3, 4)
    assert Colors.Red.with_alpha(0).to_hex() == "#ff000000"
    assert str(Colors.Blue) == BLUE
    with pytest.raises(ValueError):
        Color(256, 0, 0)
    with pytest.raises(ValueError):
        Color.from_hex("#12345")
    with pytest.raises(TypeError):
        Color.parse(3.5)  # type: ignore[arg-type]


def test_canvas_ids_differ() -> None:
    assert len({Canvas(1, 1).id for _ in range(50)}) == 50
