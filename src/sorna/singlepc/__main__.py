"""``python -m sorna.singlepc supervise SETTINGS_JSON``: the supervisor ``sorna up`` starts."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from sorna.common.logging import setup_logging

from .config import Layout, UpSettings
from .supervisor import Supervisor


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "supervise":
        print("usage: python -m sorna.singlepc supervise SETTINGS_JSON (use `sorna up`)")
        return 2
    settings = UpSettings.from_json(args[1])
    setup_logging("WARNING")

    def say(line: str) -> None:
        print(line, flush=True)

    supervisor = Supervisor(settings=settings, layout=Layout(Path(settings.data_dir)), say=say)
    return asyncio.run(supervisor.run())


if __name__ == "__main__":
    sys.exit(main())
