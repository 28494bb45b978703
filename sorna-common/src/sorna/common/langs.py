"""Language names as the agents offer them; no table of languages lives here.

Each language's names are data in its folder (``sorna-repl/kernels/<lang>/kernel.toml``); they
reach a kernel image as its ``io.sorna.aliases`` label, and the agent publishes the languages
of its images, the known languages it has no image of, and every alias in its registry entry
(``AgentField.LANGS``, ``UNBUILT_LANGS``, ``ALIASES``). A gateway merges the entries of the live
agents into one :class:`LanguageOffer` and resolves a requested name against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

KERNEL_IMAGE_PREFIX: Final = "sorna/kernel-"
#: Between an alias and its language in the ``aliases`` agent field (``py3=python3,...``).
ALIAS_PAIR_SEP: Final = "="
#: Between the entries of the list-valued agent fields (the same as keys.FIELD_LIST_SEP).
LIST_SEP: Final = ","


def image_name(lang: str, tag: str = "latest") -> str:
    """Return the kernel image reference for a canonical language."""
    return f"{KERNEL_IMAGE_PREFIX}{lang}:{tag}"


def normalize(name: str) -> str:
    """A requested language name as it is compared: stripped, lower case."""
    return name.strip().lower()


def encode_aliases(aliases: Mapping[str, str]) -> str:
    """The ``aliases`` agent field of ``{alias: language}``."""
    return LIST_SEP.join(
        f"{alias}{ALIAS_PAIR_SEP}{lang}" for alias, lang in sorted(aliases.items())
    )


def decode_aliases(text: str) -> dict[str, str]:
    """``{alias: language}`` of an ``aliases`` agent field (malformed pairs are skipped)."""
    out: dict[str, str] = {}
    for pair in text.split(LIST_SEP):
        alias, sep, lang = pair.partition(ALIAS_PAIR_SEP)
        if sep and alias and lang:
            out[normalize(alias)] = lang
    return out


def decode_list(text: str) -> list[str]:
    """The entries of a list-valued agent field."""
    return [x for x in text.split(LIST_SEP) if x]


@dataclass(slots=True)
class LanguageOffer:
    """What some agents offer: languages with an image, known ones without, their aliases."""

    served: set[str] = field(default_factory=set)
    unbuilt: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)

    def add(
        self, served: Iterable[str], unbuilt: Iterable[str], aliases: Mapping[str, str]
    ) -> None:
        """Merge one agent's entry into this offer."""
        self.served.update(served)
        self.unbuilt.update(unbuilt)
        for alias, lang in aliases.items():
            self.aliases.setdefault(normalize(alias), lang)

    def resolve(self, name: str) -> str | None:
        """The language ``name`` (a language or an alias, any case) stands for, or None."""
        wanted = normalize(name)
        if wanted in self.served or wanted in self.unbuilt:
            return wanted
        return self.aliases.get(wanted)

    def why_not(self, name: str) -> str:
        """Why ``name`` cannot be served, in one line for the user."""
        lang = self.resolve(name)
        served = ", ".join(sorted(self.served)) or "none"
        if lang is not None and lang not in self.served:
            return (
                f"no agent has an image of {lang!r}: build it with `make image LANG={lang}` "
                f"or `python -m sorna.repl.imagebuild {lang}` (served: {served})"
            )
        return f"unknown language {name!r} (served: {served})"
