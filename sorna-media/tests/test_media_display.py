"""sorna.display, the matplotlib backend, and emit() outside a kernel."""

from __future__ import annotations

import base64
import builtins
import io
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

import sorna.matplotlib as sorna_mpl
from sorna.display import display, to_record
from sorna.drawing import Canvas
from sorna.matplotlib.backend import figure_record
from sorna.types import EMIT_HOOK, MEDIA_DIR_ENV, MediaRecord, emit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_dataframe_is_an_html_table(emitted: list[MediaRecord]) -> None:
    display(pd.DataFrame({"name": ["ada", "bob"], "score": [3, 4]}))
    assert emitted[0]["type"] == "text/html"
    html = emitted[0]["data"]
    assert "<table" in html and "<th>name</th>" in html and "<td>ada</td>" in html


def test_series_is_html() -> None:
    assert to_record(pd.Series([1, 2], name="s"))["type"] == "text/html"


def test_ndarray_is_an_html_table_with_escaped_cells() -> None:
    record = to_record(np.array([[1, 2], [3, 4]]))
    assert record["type"] == "text/html"
    assert "<tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr>" in record["data"]
    assert "shape (2, 2)" in record["data"]
    assert "<td>&lt;b&gt;</td>" in to_record(np.array(["<b>"]))["data"]
    assert to_record(np.zeros((2, 2, 2)))["data"].startswith("<pre>")


def test_repr_html_objects() -> None:
    class Rich:
        def _repr_html_(self) -> str:
            return "<b>rich</b>"

    assert to_record(Rich()) == {"type": "text/html", "data": "<b>rich</b>"}


def test_pil_image_is_png() -> None:
    record = to_record(Image.new("RGB", (4, 3), "red"))
    assert record["type"] == "image/png"
    png = base64.b64decode(record["data"])
    assert Image.open(io.BytesIO(png)).size == (4, 3)


def test_png_and_svg_bytes() -> None:
    png = PNG_SIGNATURE + b"rest"
    assert to_record(png) == {"type": "image/png", "data": base64.b64encode(png).decode()}
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'
    assert to_record(svg) == {"type": "image/svg+xml", "data": svg.decode()}


@pytest.mark.parametrize("value", [42, "text", b"not an image", None, [1, 2]])
def test_anything_else_is_a_clear_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=r"display\(\) cannot show .*DataFrame.*_repr_html_"):
        display(value)


def test_figure_is_svg() -> None:
    fig = Figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    record = to_record(fig)
    assert record["type"] == "image/svg+xml" and "<svg" in record["data"]


@pytest.fixture
def sorna_backend() -> object:
    import matplotlib.pyplot as plt

    previous = matplotlib.get_backend()
    plt.switch_backend(sorna_mpl.BACKEND)
    yield plt
    plt.close("all")
    sorna_mpl.set_format("svg")
    plt.switch_backend(previous)


def test_plt_show_emits_svg_and_closes_figures(
    sorna_backend: object, emitted: list[MediaRecord]
) -> None:
    import matplotlib.pyplot as plt

    plt.plot([1, 2], [3, 4])
    plt.show()
    assert [r["type"] for r in emitted] == ["image/svg+xml"]
    assert "<svg" in emitted[0]["data"]
    assert plt.get_fignums() == []


def test_plt_show_emits_png_when_asked(sorna_backend: object, emitted: list[MediaRecord]) -> None:
    import matplotlib.pyplot as plt

    sorna_mpl.set_format("png")
    plt.figure()
    plt.figure()
    plt.show()
    assert [r["type"] for r in emitted] == ["image/png", "image/png"]
    assert base64.b64decode(emitted[0]["data"]).startswith(PNG_SIGNATURE)


def test_figure_record_and_format_checks() -> None:
    fig = Figure()
    assert figure_record(fig, "png")["type"] == "image/png"
    with pytest.raises(ValueError, match="svg, png"):
        sorna_mpl.set_format("gif")  # type: ignore[arg-type]


def test_outside_a_kernel_records_are_dropped(no_kernel: None) -> None:
    assert not hasattr(builtins, EMIT_HOOK)
    Canvas(10, 10).update()
    display(np.array([1]))
    assert emit({"type": "text/html", "data": "x"}) is None


def test_outside_a_kernel_records_go_to_the_media_dir(
    no_kernel: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MEDIA_DIR_ENV, str(tmp_path / "media"))
    png = PNG_SIGNATURE + b"x"
    path = emit(to_record(png))
    assert path is not None and path.suffix == ".png" and path.read_bytes() == png
    svg_path = emit({"type": "image/svg+xml", "data": "<svg/>"})
    assert svg_path is not None and svg_path.read_text() == "<svg/>"


def test_malformed_records_are_type_errors(emitted: list[MediaRecord]) -> None:
    with pytest.raises(TypeError):
        emit({"type": "image/png", "data": b"raw"})  # type: ignore[typeddict-item]
    assert emitted == []
