"""Where the kernel folders and the jail live, in a checkout and in an installed wheel.

A checkout keeps them beside ``src/``: ``sorna-repl/kernels/`` and ``sorna-repl/jail/``. The
wheel carries them inside the package (``sorna/repl/kernels/``, ``sorna/repl/jail/``, with the
prebuilt static jail binary in ``sorna/repl/jail/bin/jail`` when ``make dist`` built one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: The ``sorna/repl`` package folder.
PACKAGE_DIR: Final = Path(__file__).resolve().parent
#: True when running from a wheel (kernels and jail inside the package).
INSTALLED: Final = (PACKAGE_DIR / "kernels").is_dir()
#: ``sorna-repl/`` of a checkout (meaningless when INSTALLED).
CHECKOUT_DIR: Final = PACKAGE_DIR.parents[2]

#: Per-language folders: daemon, policy, Dockerfile, examples (``SORNA_REPL_KERNELS_DIR`` wins).
KERNELS_DIR: Final = Path(
    os.environ.get("SORNA_REPL_KERNELS_DIR")
    or (PACKAGE_DIR / "kernels" if INSTALLED else CHECKOUT_DIR / "kernels")
)
#: The jail's Go sources, and ``bin/jail`` below them.
JAIL_DIR: Final = PACKAGE_DIR / "jail" if INSTALLED else CHECKOUT_DIR / "jail"
