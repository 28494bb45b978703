"""The backend module matplotlib loads for ``module://sorna.matplotlib.backend``.

Figures are drawn with Agg; ``show()`` (``plt.show()``) or a figure manager's ``show()``
emits each figure through :func:`sorna.types.emit` and closes it, as notebooks do.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from matplotlib._pylab_helpers import Gcf
from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sorna.types import PNG_MIME, SVG_MIME, MediaRecord, emit

from . import get_format


def figure_record(figure: Figure, fmt: str | None = None) -> MediaRecord:
    """``figure`` as an SVG or PNG media record (default: :func:`~sorna.matplotlib.get_format`)."""
    fmt = fmt or get_format()
    buf = io.BytesIO()
    figure.savefig(buf, format=fmt)
    if fmt == "png":
        return {"type": PNG_MIME, "data": base64.b64encode(buf.getvalue()).decode("ascii")}
    return {"type": SVG_MIME, "data": buf.getvalue().decode("utf-8")}


class FigureManagerSorna(FigureManagerBase):
    """Shows its figure by emitting it."""

    def show(self) -> None:
        emit(figure_record(self.canvas.figure))


class FigureCanvasSorna(FigureCanvasAgg):
    """Agg drawing; nothing interactive."""

    manager_class = FigureManagerSorna


def show(*args: Any, **kwargs: Any) -> None:
    """Emit every open figure, then close them (``block`` and other arguments are ignored)."""
    try:
        for manager in Gcf.get_all_fig_managers():
            manager.show()
    finally:
        Gcf.destroy_all()


FigureCanvas = FigureCanvasSorna
FigureManager = FigureManagerSorna

__all__ = ["FigureCanvas", "FigureManager", "figure_record", "show"]
