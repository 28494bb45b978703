"""The demo console: static files under ``/console/``, served only when enabled.

``add_console(app)`` registers one :class:`ConsoleResource` on the router. The page itself
(``index.html``, ``console.js``, ``console.css``) comes from ``sorna.mediaassets.CONSOLE_DIR``
and the renderer module from ``JS_MODULE_DIR`` under ``/console/sorna-media/``. The page signs
its API requests with the keys typed into it, so these files need no authentication.

The console is not part of the API: the resource lists no routes, so ``router.routes()`` (and
with it the OpenAPI document and ``docs/api.md``) does not see it. Only the files present at
start-up are served, looked up by exact name, so no request path reaches the file system.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute, _InfoDict
from yarl import URL

from sorna.gateway.middlewares import public

log = logging.getLogger(__name__)

#: Where the console lives on the gateway.
CONSOLE_PREFIX: Final = "/console"
_FILES: Final = web.AppKey("console_files", dict[str, Path])
_METHODS: Final = frozenset({"GET", "HEAD"})
# Browsers refuse ES modules served as text/plain; do not trust the host's mime.types.
_TYPES: Final = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


def console_files(console_dir: Path, module_dir: Path, module_prefix: str) -> dict[str, Path]:
    """Map each served path below the console prefix (``index.html``, ``sorna-media/...``)
    to its file."""
    files: dict[str, Path] = {}
    for root, prefix in ((console_dir, ""), (module_dir, module_prefix)):
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                files[prefix + path.relative_to(root).as_posix()] = path
    if "index.html" not in files:
        raise FileNotFoundError(f"no index.html in {console_dir}")
    return files


@public
async def _serve(request: web.Request) -> web.StreamResponse:
    if request.match_info.get("redirect"):
        raise web.HTTPPermanentRedirect(f"{request.path}/")
    path = request.app[_FILES][request.match_info["file"] or "index.html"]
    content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    response = web.FileResponse(path, headers={"Cache-Control": "no-cache"})
    if content_type:
        response.content_type = content_type
    return response


class ConsoleResource(web.AbstractResource):
    """``/console`` (redirect), ``/console/`` (the page) and the files below it."""

    def __init__(self, files: Mapping[str, Path], prefix: str = CONSOLE_PREFIX) -> None:
        super().__init__(name=None)
        self._prefix = prefix
        self._names = frozenset(files)
        self._routes = {m: web.ResourceRoute(m, _serve, self) for m in _METHODS}

    @property
    def canonical(self) -> str:
        return self._prefix

    def url_for(self, **kwargs: str) -> URL:
        return URL.build(path=f"{self._prefix}/{kwargs.get('file', '')}")

    def add_prefix(self, prefix: str) -> None:
        self._prefix = prefix + self._prefix

    def get_info(self) -> _InfoDict:
        return {"prefix": self._prefix}

    def raw_match(self, path: str) -> bool:
        return False

    async def resolve(
        self, request: web.Request
    ) -> tuple[web.UrlMappingMatchInfo | None, set[str]]:
        path = request.rel_url.path
        if path == self._prefix:
            match = {"file": "", "redirect": "1"}
        elif path.startswith(self._prefix + "/"):
            match = {"file": path[len(self._prefix) + 1 :]}
            if match["file"] and match["file"] not in self._names:
                return None, set()
        else:
            return None, set()
        if request.method not in _METHODS:
            return None, set(_METHODS)
        return web.UrlMappingMatchInfo(match, self._routes[request.method]), set(_METHODS)

    # Not an API route: keep it out of router.routes() and so out of the OpenAPI document.
    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter(())


def add_console(app: web.Application) -> None:
    """Serve the demo console under ``/console/`` (needs the ``sorna-media`` package)."""
    try:
        from sorna.mediaassets import CONSOLE_DIR, JS_MODULE_DIR, JS_MODULE_URL_PREFIX
    except ImportError as e:
        raise RuntimeError(
            "server.console_enabled needs the sorna-media package in the gateway's environment"
        ) from e
    files = console_files(CONSOLE_DIR, JS_MODULE_DIR, JS_MODULE_URL_PREFIX)
    app[_FILES] = files
    app.router.register_resource(ConsoleResource(files))
    log.info("demo console enabled at %s/ (%d files)", CONSOLE_PREFIX, len(files))


__all__ = ["CONSOLE_PREFIX", "ConsoleResource", "add_console", "console_files"]
