"""The one table of language names and their aliases."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

#: Canonical language names; each has a kernel image ``sorna/kernel-<name>``.
CANONICAL_LANGS: Final = ("python3", "nodejs", "c", "cpp", "shell")

#: Alias -> canonical name. Canonical names map to themselves.
LANG_ALIASES: Final = MappingProxyType(
    {
        **{name: name for name in CANONICAL_LANGS},
        "python": "python3",
        "py": "python3",
        "py3": "python3",
        "node": "nodejs",
        "js": "nodejs",
        "javascript": "nodejs",
        "c++": "cpp",
        "cxx": "cpp",
        "g++": "cpp",
        "gcc": "c",
        "sh": "shell",
        "bash": "shell",
        "git": "shell",
    }
)

KERNEL_IMAGE_PREFIX: Final = "sorna/kernel-"


def resolve_lang(name: str) -> str | None:
    """Return the canonical language for ``name`` (case-insensitive), or None if unknown."""
    return LANG_ALIASES.get(name.strip().lower())


def image_name(lang: str, tag: str = "latest") -> str:
    """Return the kernel image reference for a canonical language."""
    return f"{KERNEL_IMAGE_PREFIX}{lang}:{tag}"
