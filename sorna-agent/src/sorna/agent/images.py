"""Kernel images and the defaults their ``io.sorna.*`` labels carry (PROTOCOLS.md section 4)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sorna.common.constants import (
    DEFAULT_MAXDISK,
    LABEL_ALIASES,
    LABEL_ENVS_CORECOUNT,
    LABEL_FEATURES,
    LABEL_LANG,
    LABEL_MAXCORES,
    LABEL_MAXDISK,
    LABEL_MAXMEM,
    LABEL_TIMEOUT,
    LABEL_VERSION,
)
from sorna.common.messages import KernelLimits

from .config import CapsSettings
from .disk import MIN_DISK_KIB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS_KIB = {"": 1 / 1024, "k": 1, "m": 1024, "g": 1024**2, "t": 1024**3}


def parse_size_kib(text: str) -> int:
    """Parse a Docker-style size (``256m``, ``1g``, ``512k``, bytes if bare) into KiB."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return max(1, int(float(match.group(1)) * _UNITS_KIB[match.group(2).lower()]))


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """One kernel image as its labels describe it."""

    ref: str
    lang: str
    mem_kib: int = 256 * 1024
    cores: int = 1
    exec_timeout_ms: int = 0
    features: tuple[str, ...] = ()
    corecount_envs: tuple[str, ...] = ()
    disk_kib: int = parse_size_kib(DEFAULT_MAXDISK)
    #: The language's other names (its kernel.toml's, through the io.sorna.aliases label).
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_labels(cls, ref: str, labels: Mapping[str, str]) -> ImageInfo | None:
        """Build the info from an image's labels; None if it is not a Sorna kernel image."""
        lang = labels.get(LABEL_LANG)
        if not lang or LABEL_VERSION not in labels:
            return None
        try:
            return cls(
                ref=ref,
                lang=lang,
                mem_kib=parse_size_kib(labels.get(LABEL_MAXMEM, "256m")),
                cores=max(1, math.ceil(float(labels.get(LABEL_MAXCORES, "1")))),
                exec_timeout_ms=int(float(labels.get(LABEL_TIMEOUT, "0")) * 1000),
                features=tuple(labels.get(LABEL_FEATURES, "").split()),
                aliases=tuple(labels.get(LABEL_ALIASES, "").split()),
                disk_kib=parse_size_kib(labels.get(LABEL_MAXDISK, DEFAULT_MAXDISK)),
                corecount_envs=tuple(
                    e.strip() for e in labels.get(LABEL_ENVS_CORECOUNT, "").split(",") if e.strip()
                ),
            )
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Limits:
    """A kernel's effective limits: memory (KiB), whole cores, execution timeout (ms, 0 none),
    disk cap of /home/work (KiB, 0 none)."""

    mem_kib: int
    cores: int
    exec_timeout_ms: int
    disk_kib: int = 0

    def to_message(self) -> KernelLimits:
        """The wire form."""
        return KernelLimits(
            mem_kib=self.mem_kib,
            cpus=float(self.cores),
            exec_timeout_ms=self.exec_timeout_ms,
            disk_kib=self.disk_kib,
        )


def effective_limits(image: ImageInfo, asked: KernelLimits, caps: CapsSettings) -> Limits:
    """The image's defaults, overridden by the request, within the agent's caps."""
    mem = asked.mem_kib if asked.mem_kib else image.mem_kib
    cores = math.ceil(asked.cpus) if asked.cpus else image.cores
    timeout = asked.exec_timeout_ms if asked.exec_timeout_ms is not None else image.exec_timeout_ms
    if caps.max_exec_timeout_ms and (timeout <= 0 or timeout > caps.max_exec_timeout_ms):
        timeout = caps.max_exec_timeout_ms
    disk = asked.disk_kib if asked.disk_kib else image.disk_kib
    disk_cap = caps.max_disk_mib * 1024
    return Limits(
        mem_kib=max(8 * 1024, min(mem, caps.max_mem_kib)),
        cores=max(1, min(cores, caps.max_cpus)),
        exec_timeout_ms=max(0, timeout),
        disk_kib=max(MIN_DISK_KIB, min(disk, disk_cap)) if disk_cap else 0,
    )
