"""``sorna-manager``: serve the API, migrate the database, manage keypairs.

::

    sorna-manager [--config FILE] serve [--workers N]
    sorna-manager [--config FILE] db migrate
    sorna-manager [--config FILE] keypair create [--admin] [--concurrency N] [--rate N]
    sorna-manager [--config FILE] keypair list
    sorna-manager [--config FILE] keypair deactivate ACCESS_KEY
    sorna-manager [--config FILE] keypair set-limits ACCESS_KEY [--concurrency N] [--rate N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import multiprocessing
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sorna.common.config import load_settings
from sorna.common.errors import ConfigError
from sorna.common.logging import setup_logging
from sorna.manager import db
from sorna.manager.config import ManagerSettings
from sorna.manager.keypairs import KeypairStore

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sorna-manager", description="Sorna API gateway and manager")
    p.add_argument("--config", help="TOML settings file (SORNA_* env vars override it)")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API gateway")
    serve.add_argument("--workers", type=int, default=None, help="processes sharing the port")
    serve.add_argument("--port", type=int, default=None)
    dbp = sub.add_parser("db", help="database schema")
    dbp.add_subparsers(dest="db_command", required=True).add_parser("migrate")
    kp = sub.add_parser("keypair", help="keypairs")
    kps = kp.add_subparsers(dest="kp_command", required=True)
    create = kps.add_parser("create")
    create.add_argument("--admin", action="store_true")
    create.add_argument("--concurrency", type=int, default=None)
    create.add_argument("--rate", type=int, default=None)
    create.add_argument("--owner", default="")
    kps.add_parser("list")
    deact = kps.add_parser("deactivate")
    deact.add_argument("access_key")
    limits = kps.add_parser("set-limits")
    limits.add_argument("access_key")
    limits.add_argument("--concurrency", type=int, default=None)
    limits.add_argument("--rate", type=int, default=None)
    return p


async def _with_store(
    settings: ManagerSettings, job: Callable[[KeypairStore], Awaitable[Any]]
) -> Any:
    await db.migrate_url(settings.db.url)
    pool = await db.create_pool(settings.db.url, 2)
    try:
        return await job(KeypairStore(pool, cache_ttl=0))
    finally:
        await pool.close()


async def _keypair(settings: ManagerSettings, args: argparse.Namespace) -> int:
    limits = settings.limits

    async def job(store: KeypairStore) -> int:
        if args.kp_command == "create":
            kp = await store.create(
                concurrency_limit=args.concurrency or limits.default_concurrency_limit,
                rate_limit=args.rate or limits.default_rate_limit,
                is_admin=args.admin,
                owner=args.owner,
            )
            print(json.dumps({**kp.public(), "secretKey": kp.secret_key}, indent=2))
        elif args.kp_command == "list":
            for kp in await store.list():
                print(json.dumps(kp.public()))
        elif args.kp_command == "deactivate":
            if await store.deactivate(args.access_key) is None:
                print(f"no keypair {args.access_key}", file=sys.stderr)
                return 1
        else:
            got = await store.update(
                args.access_key, concurrency_limit=args.concurrency, rate_limit=args.rate
            )
            if got is None:
                print(f"no keypair {args.access_key}", file=sys.stderr)
                return 1
            print(json.dumps(got.public()))
        return 0

    result: int = await _with_store(settings, job)
    return result


def _serve_one(settings: ManagerSettings, reuse_port: bool) -> None:
    from sorna.gateway.app import create_app
    from sorna.gateway.server import serve

    setup_logging(settings.logging.level, settings.logging.format)
    app = create_app(settings)
    asyncio.run(serve(app, settings.server.host, settings.server.port, reuse_port=reuse_port))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(ManagerSettings, path=args.config)
    except ConfigError as e:
        print(f"sorna-manager: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.logging.level, settings.logging.format)
    if args.command == "db":
        applied = asyncio.run(db.migrate_url(settings.db.url))
        print(f"applied migrations: {applied or 'none (up to date)'}")
        return 0
    if args.command == "keypair":
        return asyncio.run(_keypair(settings, args))
    server = settings.server
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    if args.workers is not None:
        server = dataclasses.replace(server, workers=args.workers)
    settings = dataclasses.replace(settings, server=server)
    asyncio.run(db.migrate_url(settings.db.url))
    if server.workers <= 1:
        _serve_one(settings, reuse_port=False)
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_serve_one, args=(settings, True), name=f"gateway-{i}")
        for i in range(server.workers)
    ]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
