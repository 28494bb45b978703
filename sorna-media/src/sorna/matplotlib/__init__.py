"""A matplotlib backend that sends figures to the Sorna front-end on ``plt.show()``.

The python3 kernel image selects it in its matplotlibrc (``backend:
module://sorna.matplotlib.backend``); elsewhere select it with ``matplotlib.use(BACKEND)`` or
``MPLBACKEND=module://sorna.matplotlib.backend``. ``plt.show()`` emits every open figure as an
``image/svg+xml`` record (or ``image/png`` after ``set_format("png")``) and closes it.

This module does not import matplotlib; :mod:`sorna.matplotlib.backend` does.
"""

from __future__ import annotations

from typing import Final, Literal

#: The value of matplotlib's ``backend`` setting that selects this backend.
BACKEND: Final = "module://sorna.matplotlib.backend"
#: Formats ``plt.show()`` can emit.
FORMATS: Final = ("svg", "png")

Format = Literal["svg", "png"]

_format: list[Format] = ["svg"]


def set_format(fmt: Format) -> None:
    """Choose what ``plt.show()`` emits: ``"svg"`` (the default) or ``"png"``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    _format[0] = fmt


def get_format() -> Format:
    """The format ``plt.show()`` emits."""
    return _format[0]


__all__ = ["BACKEND", "FORMATS", "Format", "get_format", "set_format"]
