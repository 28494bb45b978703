"""Where the browser side of Sorna media lives: the ES module and the demo console.

For the gateway, which serves them as static files (``/console``): it needs nothing else from
the media packages. In a wheel the files are package data under ``static/``; in a checkout
they are read straight from ``sorna-media/js``.

* :data:`CONSOLE_DIR` - ``index.html``, ``console.js``, ``console.css`` of the demo page; the
  page imports the renderer from ``./sorna-media/index.js``, so serve :data:`JS_MODULE_DIR`
  under ``<console url>/sorna-media/``.
* :data:`JS_MODULE_DIR` - the renderer's ES module sources (``index.js`` exports
  ``renderResult``); no build step is needed to serve them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

_HERE = Path(__file__).resolve().parent


def _find(packaged: str, checkout: str) -> Path:
    candidate = _HERE / "static" / packaged
    if candidate.is_dir():
        return candidate
    # src/sorna/mediaassets -> sorna-media/js/...
    return _HERE.parents[2] / "js" / checkout


#: The demo console's static files.
CONSOLE_DIR: Final[Path] = _find("console", "console")
#: The ES module sources of the renderer (serve under ``<console>/sorna-media/``).
JS_MODULE_DIR: Final[Path] = _find("sorna-media", "src")
#: URL path the console page expects the renderer under, relative to the page.
JS_MODULE_URL_PREFIX: Final = "sorna-media/"

__all__ = ["CONSOLE_DIR", "JS_MODULE_DIR", "JS_MODULE_URL_PREFIX"]
