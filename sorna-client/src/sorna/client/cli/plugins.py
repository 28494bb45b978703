"""Extra ``sorna`` subcommands contributed by other installed packages.

A package adds a subcommand by declaring an entry point in the ``sorna.cli_commands`` group;
the entry point's name is the subcommand and its object an :class:`ExternalCommand`::

    [project.entry-points."sorna.cli_commands"]
    up = "sorna.singlepc.cli:UP"

The client only knows this protocol: it does not import, depend on, or need any such package.
An external command gets its parsed arguments and returns the exit status itself (no
credentials are loaded for it). A command that fails to load is reported on stderr and left
out, so a broken plugin cannot break ``sorna run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Final, Protocol, runtime_checkable

#: The entry-point group scanned for extra subcommands.
GROUP: Final = "sorna.cli_commands"


@runtime_checkable
class ExternalCommand(Protocol):
    """A subcommand provided by another package."""

    #: One line for ``sorna --help`` and the subcommand's description.
    help: str

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the subcommand's arguments to ``parser``."""

    def __call__(self, args: argparse.Namespace) -> int:
        """Run the subcommand; return the exit status."""


def add_external_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    make_parser: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add one subcommand per entry point of :data:`GROUP` not already taken.

    ``make_parser(name, help)`` creates the subparser (so external commands share the common
    options and epilog of the built-in ones).
    """
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in sub.choices:
            continue
        try:
            command: Any = ep.load()
        except Exception as e:  # a broken plugin must not break the client
            print(
                f"sorna: warning: cannot load command {ep.name!r} ({ep.value}): {e}",
                file=sys.stderr,
            )
            continue
        if not isinstance(command, ExternalCommand):
            print(f"sorna: warning: {ep.value} is not a sorna command; ignored", file=sys.stderr)
            continue
        parser = make_parser(ep.name, command.help)
        command.configure(parser)
        parser.set_defaults(external=command)
