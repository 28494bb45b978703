"""``sorna-agent``: run the agent of this host."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from sorna.common.config import describe, load_settings
from sorna.common.errors import ConfigError, SornaError
from sorna.common.logging import setup_logging

from .agent import Agent
from .config import AgentSettings


def _parser() -> argparse.ArgumentParser:
    rows = describe(AgentSettings)
    width = max(len(env) for _, env, _, _ in rows)
    settings_help = "\n".join(
        f"  {env:<{width}}  {text} (default: {default!r})" for _, env, default, text in rows
    )
    return argparse.ArgumentParser(
        prog="sorna-agent",
        description=(
            "Run the Sorna agent of this host: it starts kernels (Docker containers, or local "
            "jailed processes), serves the gateway's RPC calls, and heartbeats into Redis."
        ),
        epilog=(
            "Settings come from the TOML file given with --config, then from these environment "
            "variables (TOML keys are the same names, lower case, sections as tables):\n"
            + settings_help
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load settings and run the agent until SIGTERM."""
    parser = _parser()
    parser.add_argument("-c", "--config", help="TOML settings file")
    parser.add_argument("--backend", choices=["docker", "local", "auto"], help="kernel backend")
    parser.add_argument("--port", type=int, help="RPC port (overrides rpc_port)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(AgentSettings, path=args.config)
        overrides = {}
        if args.backend:
            overrides["backend"] = args.backend
        if args.port is not None:
            overrides["rpc_port"] = args.port
        if overrides:
            import dataclasses

            settings = dataclasses.replace(settings, **overrides)
    except ConfigError as e:
        print(f"sorna-agent: configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.logging.level, settings.logging.format)
    try:
        asyncio.run(Agent(settings=settings).run())
    except SornaError as e:
        print(f"sorna-agent: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
