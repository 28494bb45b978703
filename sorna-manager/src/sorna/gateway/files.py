"""File names at the API edge: paths under /home/work, upload part names, download headers.

Every name is checked here, before any agent sees it, so that a bad one is a clear 400 and
never an agent-side failure (a 500) or a file somewhere unexpected.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from typing import Final

from sorna.common.constants import KERNEL_WORK_DIR, MAX_FILE_NAME_BYTES, MAX_FILE_PATH_BYTES
from sorna.manager.errors import InvalidAPIParams

# RFC 5987 attr-char besides letters, digits and "-._~" (which quote() always keeps).
_ATTR_CHARS: Final = "!#$&+^`|"


def _short(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:60] + "..." + name[-12:])


def work_path(name: str, *, upload: bool = False) -> str:
    """Return ``name`` relative to /home/work; 400 if it leaves it or is over a limit.

    Downloads and listings accept an absolute name inside /home/work, and any character but
    NUL (a run may well have made ``a\\b``). Upload names (``upload``) are stricter: relative,
    and without backslashes (a Windows-style ``..\\..\\x`` is refused, not taken literally).
    """
    if not name:
        raise InvalidAPIParams("empty file name")
    if "\x00" in name:
        raise InvalidAPIParams(f"file names may not contain NUL: {_short(name)}")
    if upload and "\\" in name:
        raise InvalidAPIParams(f"upload names may not contain a backslash: {_short(name)}")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise InvalidAPIParams(f"file names must be valid UTF-8: {_short(name)}") from None
    if name.startswith("/"):
        if upload:
            raise InvalidAPIParams(f"absolute file names are not accepted here: {_short(name)}")
        norm = posixpath.normpath(name)
        if norm != KERNEL_WORK_DIR and not norm.startswith(KERNEL_WORK_DIR + "/"):
            raise InvalidAPIParams(f"{_short(name)} is outside {KERNEL_WORK_DIR}")
        name = norm[len(KERNEL_WORK_DIR) + 1 :]
    parts = name.split("/")
    if ".." in parts:
        raise InvalidAPIParams(f"file names may not contain '..': {_short(name)}")
    rel = posixpath.normpath(name)
    if rel in (".", "") or rel.startswith("/"):
        raise InvalidAPIParams(f"no file name in {_short(name)}")
    longest = max(len(p.encode()) for p in parts)
    if longest > MAX_FILE_NAME_BYTES:
        raise InvalidAPIParams(
            f"a file name component is {longest} bytes; the limit is {MAX_FILE_NAME_BYTES}"
        )
    if size > MAX_FILE_PATH_BYTES:
        raise InvalidAPIParams(f"the file path is {size} bytes; the limit is {MAX_FILE_PATH_BYTES}")
    return rel


def _disposition_params(header: str) -> dict[str, str]:
    """Split ``form-data; k=v; k="quoted"`` into its parameters (keys lower-cased).

    In a quoted value only ``\\"`` and ``\\\\`` are escapes (RFC 9110 quoted-pairs of the
    characters that need them); any other backslash is kept, so that ``..\\..\\x`` arrives as
    written and is refused, where a full quoted-pair reading would turn it into ``....x``.
    """
    params: dict[str, str] = {}
    i, n = header.find(";"), len(header)
    if i < 0:
        return params
    while i < n:
        while i < n and header[i] in " \t;":
            i += 1
        eq = header.find("=", i)
        if eq < 0:
            break
        key = header[i:eq].strip().lower()
        i = eq + 1
        while i < n and header[i] in " \t":
            i += 1
        if i < n and header[i] == '"':
            i += 1
            out: list[str] = []
            while i < n and header[i] != '"':
                if header[i] == "\\" and i + 1 < n and header[i + 1] in '"\\':
                    i += 1
                out.append(header[i])
                i += 1
            value = "".join(out)
            i += 1
        else:
            end = header.find(";", i)
            end = n if end < 0 else end
            value = header[i:end].strip()
            i = end
        params.setdefault(key, value)
    return params


def upload_name(disposition: str | None) -> str:
    """Return the file name of an upload part, read from its raw Content-Disposition header.

    ``filename*`` (RFC 5987, UTF-8 only) wins over ``filename``; a plain ``filename`` is
    percent-decoded as UTF-8 (the aiohttp-based clients percent-encode it). The name is then
    checked by :func:`work_path` as an upload name. aiohttp's own
    ``part.filename`` is not used: it reads every backslash as an escape.
    """
    params = _disposition_params(disposition or "")
    if "filename*" in params:
        charset, _, rest = params["filename*"].partition("'")
        _, _, encoded = rest.partition("'")
        if charset.lower() != "utf-8":
            raise InvalidAPIParams("filename* must be UTF-8 (UTF-8''percent-encoded)")
    elif "filename" in params:
        encoded = params["filename"]
    else:
        raise InvalidAPIParams("no file name in the part's Content-Disposition")
    try:
        name = urllib.parse.unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        raise InvalidAPIParams("file names must be valid UTF-8") from None
    return work_path(name, upload=True)


def attachment(name: str) -> str:
    """The Content-Disposition of a download of ``name``: RFC 6266 ``filename*`` (UTF-8,
    percent-encoded) and an ASCII ``filename`` fallback for older clients, with quotes and
    backslashes escaped and controls and non-ASCII replaced by ``_``."""
    fallback = "".join(c if " " <= c < "\x7f" else "_" for c in name)
    fallback = fallback.replace("\\", "\\\\").replace('"', '\\"')
    encoded = urllib.parse.quote(name, safe=_ATTR_CHARS, errors="surrogateescape")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
