"""What every command shares: exit statuses, the usage error, and table output."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..exceptions import SornaClientError

EXIT_OK: Final = 0
EXIT_PROGRAM_FAILED: Final = 1
EXIT_ERROR: Final = 2


class UsageError(SornaClientError):
    """The command line asks for something impossible."""


def print_table(rows: Sequence[Mapping[str, Any]], preferred: Sequence[str]) -> None:
    """Print rows as aligned columns: the ``preferred`` keys present, else every key."""
    if not rows:
        print("(none)")
        return
    keys = [k for k in preferred if any(k in r for r in rows)]
    if not keys:
        keys = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_cell(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.upper().ljust(w) for k, w in zip(keys, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)
