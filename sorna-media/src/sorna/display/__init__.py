"""``display(obj)``: show a table, an array, an image or rich HTML in the Sorna front-end.

==========================================  =========================================
what                                        record
==========================================  =========================================
pandas DataFrame / Series                   ``text/html`` (``obj.to_html()``)
numpy ndarray (0-2 dimensions)              ``text/html`` table (higher: ``<pre>`` repr)
matplotlib Figure                           ``image/svg+xml``
PIL image                                   ``image/png`` (base64)
``bytes`` starting with the PNG signature   ``image/png`` (base64)
``bytes`` of an SVG document                ``image/svg+xml``
anything with ``_repr_html_()``             ``text/html``
==========================================  =========================================

Anything else is a ``TypeError`` naming what display() accepts. numpy, pandas, matplotlib and
PIL are recognised without importing them. Outside a kernel, see :func:`sorna.types.emit`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any, Final

from sorna.types import HTML_MIME, PNG_MIME, SVG_MIME, MediaRecord, emit

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: Arrays larger than this many cells are summarised (numpy's own repr) instead of tabled.
MAX_TABLE_CELLS: Final = 10_000


def display(obj: object) -> None:
    """Send ``obj`` to the front-end as HTML or an image; TypeError if it cannot be shown."""
    emit(to_record(obj))


def to_record(obj: object) -> MediaRecord:
    """The media record ``display(obj)`` would emit."""
    for accepts, convert in _CONVERTERS:
        if accepts(obj):
            return convert(obj)
    raise TypeError(
        f"display() cannot show a {type(obj).__module__}.{type(obj).__qualname__}: give it a "
        "pandas DataFrame or Series, a numpy array, a matplotlib Figure, a PIL image, "
        "PNG or SVG bytes, or an object with a _repr_html_() method (print() shows text)"
    )


def _is_from(obj: object, package: str, *names: str) -> bool:
    for cls in type(obj).__mro__:
        if cls.__module__.split(".")[0] == package and cls.__name__ in names:
            return True
    return False


def _html(text: str) -> MediaRecord:
    return {"type": HTML_MIME, "data": text}


def _png(data: bytes) -> MediaRecord:
    return {"type": PNG_MIME, "data": base64.b64encode(data).decode("ascii")}


def _is_svg(data: bytes) -> bool:
    head = data[:1024].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data.lower())


def _from_pandas(obj: Any) -> MediaRecord:
    frame = obj if hasattr(obj, "to_html") else obj.to_frame()  # a Series has no to_html()
    return _html(str(frame.to_html()))


def _from_ndarray(obj: Any) -> MediaRecord:
    if obj.ndim > 2 or obj.size > MAX_TABLE_CELLS:
        return _html(f"<pre>{html.escape(repr(obj))}</pre>")
    rows = [[obj.item()]] if obj.ndim == 0 else [list(obj)] if obj.ndim == 1 else obj.tolist()
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    caption = f"<caption>{html.escape(str(obj.dtype))} array, shape {tuple(obj.shape)}</caption>"
    return _html(f'<table class="sorna-ndarray">{caption}<tbody>{body}</tbody></table>')


def _from_figure(obj: Any) -> MediaRecord:
    buf = io.BytesIO()
    obj.savefig(buf, format="svg")
    return {"type": SVG_MIME, "data": buf.getvalue().decode("utf-8")}


def _from_pil(obj: Any) -> MediaRecord:
    buf = io.BytesIO()
    obj.save(buf, format="PNG")
    return _png(buf.getvalue())


def _from_bytes(obj: Any) -> MediaRecord:
    data = bytes(obj)
    if data.startswith(PNG_SIGNATURE):
        return _png(data)
    return {"type": SVG_MIME, "data": data.decode("utf-8")}


def _from_repr_html(obj: Any) -> MediaRecord:
    return _html(str(obj._repr_html_()))


#: (accepts, convert), tried in order; the first that accepts wins.
_CONVERTERS: Final[list[tuple[Callable[[object], bool], Callable[[Any], MediaRecord]]]] = [
    (lambda o: _is_from(o, "pandas", "DataFrame", "Series"), _from_pandas),
    (lambda o: _is_from(o, "numpy", "ndarray"), _from_ndarray),
    (lambda o: _is_from(o, "matplotlib", "Figure"), _from_figure),
    (lambda o: _is_from(o, "PIL", "Image"), _from_pil),
    (
        lambda o: (
            isinstance(o, bytes | bytearray | memoryview)
            and (bytes(o).startswith(PNG_SIGNATURE) or _is_svg(bytes(o)))
        ),
        _from_bytes,
    ),
    (lambda o: callable(getattr(o, "_repr_html_", None)), _from_repr_html),
]

__all__ = ["MAX_TABLE_CELLS", "display", "to_record"]
