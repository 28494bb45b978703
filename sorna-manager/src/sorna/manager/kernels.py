"""Kernels: get-or-create by session, calls forwarded to their agent, and the books.

A kernel's life in the books (PostgreSQL ``kernels``) and in the keypair's concurrency count
ends exactly once, in :meth:`KernelManager.settle`, whoever notices first: a destroy call, a
``kernel_terminated`` event, or the liveness sweep after an agent is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio.client import Pipeline

from sorna.common.agentapi import AgentClient
from sorna.common.errors import (
    ErrorType,
    RemoteError,
    RPCClosed,
    RPCError,
    RPCPeerRestarted,
    RPCTimeout,
)
from sorna.common.ids import AccessKey, AgentId, KernelId, RunId, new_kernel_id, new_run_id
from sorna.common.messages import (
    CompletionParams,
    CreateKernelParams,
    DownloadFileParams,
    ExecuteParams,
    KernelLimits,
    KernelRef,
    KernelUsage,
    ListFilesParams,
    UploadFileParams,
)
from sorna.common.rpc import RPCClientPool
from sorna.common.types import ExecMode, KernelStatus, RunStatus, TerminationReason
from sorna.manager.config import ManagerSettings
from sorna.manager.errors import (
    AGENT_ERRORS,
    AgentFailure,
    AgentRestarted,
    InstanceNotAvailable,
    InvalidAPIParams,
    KernelCreationFailed,
    KernelExecutionFailed,
    KernelNotFound,
    PayloadTooLarge,
    QuotaExceeded,
    ServiceUnavailable,
    UnsupportedLang,
)
from sorna.manager.registry import Placement, Registry, now_ms

log = logging.getLogger(__name__)

#: Checked with ``fullmatch`` (``$`` alone would also accept a trailing newline).
TOKEN_RE: Final = re.compile(r"[A-Za-z0-9._-]{4,64}")


def _parse_kernel_id(text: str) -> KernelId:
    """Return the canonical form of a kernel id (a UUID), else KernelNotFound."""
    try:
        if len(text) > 64:
            raise ValueError(text)
        return KernelId(str(uuid.UUID(text)))
    except ValueError:
        shown = text if len(text) <= 64 else text[:48] + "..."
        raise KernelNotFound(f"no kernel {shown!r}") from None


def query_mode(
    mode: ExecMode, code: str, run_id: str | None, pending: str | None, state: str
) -> ExecMode:
    """The mode a ``query`` really asks for: the original client's habits (API.md).

    An empty query continues a run; a query with code while the kernel's pending run waits
    for input is that input; a query naming the pending run continues it. Decided here only:
    the agent takes every mode literally.
    """
    if mode is not ExecMode.QUERY:
        return mode
    if not code:
        return ExecMode.CONTINUE
    if pending and run_id in (None, pending):
        if state == RunStatus.WAITING_INPUT:
            return ExecMode.INPUT
        if run_id == pending:
            return ExecMode.CONTINUE
    return mode


@dataclass(frozen=True, slots=True)
class Route:
    """Where a live kernel runs, and what the gateways know of it."""

    kernel_id: KernelId
    agent_id: AgentId
    addr: str
    owner: AccessKey
    lang: str
    token: str
    fields: dict[str, str]


class KernelManager:
    """Create, address and settle kernels for the gateway."""

    def __init__(
        self,
        *,
        pool: Any,
        registry: Registry,
        rpc: RPCClientPool,
        settings: ManagerSettings,
        started_at: float | None = None,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.rpc = rpc
        self.settings = settings
        self.started_at = time.monotonic() if started_at is None else started_at

    # ------------------------------------------------------------ creation

    async def get_or_create(
        self,
        owner: AccessKey,
        lang_name: str,
        token: str,
        limits: KernelLimits,
    ) -> tuple[KernelId, bool]:
        """Return the live kernel of (owner, lang, token), creating it if there is none."""
        if not TOKEN_RE.fullmatch(token):
            raise InvalidAPIParams("clientSessionToken must be 4-64 characters of [A-Za-z0-9._-]")
        # The live agents' entries name the languages and aliases; the gateway has no table.
        offer = await self.registry.offer()
        lang = offer.resolve(lang_name)
        if lang is None or lang not in offer.served:
            # While heartbeats rebuild the registry, an agent with the language may yet come.
            # A name that no registered agent knows is unknown, though: every agent lists all
            # its kernel folders, built or not, so bad input is a 404 even then.
            may_come = lang is not None or not (offer.served or offer.unbuilt)
            if may_come and self.in_grace():
                raise ServiceUnavailable("the agent registry is being rebuilt after start-up")
            raise UnsupportedLang(offer.why_not(lang_name), languages=sorted(offer.served))
        deadline = time.monotonic() + self.settings.timings.create_wait_s
        while True:
            existing = await self.registry.session(owner, lang, token)
            if existing is not None:
                route = await self.registry.kernel(existing)
                if route is not None and route.get("status") == KernelStatus.RUNNING:
                    return existing, False
                if route is not None and route.get("status") == KernelStatus.PREPARING:
                    if time.monotonic() > deadline:
                        raise ServiceUnavailable("the session's kernel is still being created")
                    await asyncio.sleep(0.05)
                    continue
                if route is None and await self._rebuild_route(existing) is not None:
                    return existing, False
                await self.registry.drop_session(owner, lang, token, existing)
                continue
            kernel_id = new_kernel_id()
            await self.registry.put_kernel(
                kernel_id,
                {
                    "id": kernel_id,
                    "owner": owner,
                    "lang": lang,
                    "token": token,
                    "status": str(KernelStatus.PREPARING),
                    "created_at": now_ms(),
                    "last_used": now_ms(),
                    "num_queries": 0,
                },
            )
            if await self.registry.claim_session(owner, lang, token, kernel_id):
                break
            await self.registry.redis.delete(self.registry.keys.kernel(kernel_id))
        await self._create(kernel_id, owner, lang, token, limits)
        return kernel_id, True

    async def _create(
        self, kernel_id: KernelId, owner: AccessKey, lang: str, token: str, limits: KernelLimits
    ) -> None:
        placement: Placement | None = None
        booked = False
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                counted = await conn.fetchval(
                    "UPDATE keypairs SET concurrency_used = concurrency_used + 1"
                    " WHERE access_key = $1 AND concurrency_used < concurrency_limit"
                    " RETURNING concurrency_used",
                    owner,
                )
                if counted is None:
                    raise QuotaExceeded()
                await conn.execute(
                    "INSERT INTO kernels (id, access_key, lang, token, status, mem_limit_kib,"
                    " exec_timeout_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    kernel_id,
                    owner,
                    lang,
                    token,
                    str(KernelStatus.PREPARING),
                    limits.mem_kib,
                    limits.exec_timeout_ms,
                )
            booked = True
            reserved = await self.registry.reserve(lang)
            if not isinstance(reserved, Placement):
                if self.in_grace():
                    raise ServiceUnavailable("the agent registry is being rebuilt after start-up")
                if reserved:
                    raise InstanceNotAvailable("no agent has room for a new kernel")
                raise UnsupportedLang(f"no agent offers {lang}")
            placement = reserved
            await self.registry.set_kernel_fields(
                kernel_id, agent=placement.agent_id, addr=placement.addr
            )
            await self.pool.execute(
                "UPDATE kernels SET agent_id = $2, agent_addr = $3 WHERE id = $1",
                kernel_id,
                placement.agent_id,
                placement.addr,
            )
            async with self._agent_errors(KernelCreationFailed):
                result = await self.agent(placement.addr).create_kernel(
                    CreateKernelParams(kernel_id=kernel_id, lang=lang, owner=owner, limits=limits),
                    timeout=self.settings.timings.create_timeout_s,
                )
            mem = result.limits.mem_kib or limits.mem_kib or 0
            timeout = result.limits.exec_timeout_ms or limits.exec_timeout_ms or 0
            await self.pool.execute(
                "UPDATE kernels SET status = $2, mem_limit_kib = $3, exec_timeout_ms = $4"
                " WHERE id = $1 AND terminated_at IS NULL",
                kernel_id,
                str(KernelStatus.RUNNING),
                mem,
                timeout,
            )
            await self.registry.set_kernel_fields(
                kernel_id,
                status=KernelStatus.RUNNING,
                mem_limit_kib=mem,
                exec_timeout_ms=timeout,
                features=",".join(result.features),
            )
            log.info(
                "kernel %s (%s) created on %s for %s", kernel_id, lang, placement.agent_id, owner
            )
        except BaseException:
            await asyncio.shield(
                self._undo_create(kernel_id, owner, lang, token, placement, booked)
            )
            raise

    async def _undo_create(
        self,
        kernel_id: KernelId,
        owner: AccessKey,
        lang: str,
        token: str,
        placement: Placement | None,
        booked: bool,
    ) -> None:
        try:
            async with self.registry.redis.pipeline(transaction=True) as tx:
                self.registry.forget_kernel_in(tx, kernel_id, owner, lang, token)
                await tx.execute()
            if booked:
                row = await self._settle_books(
                    kernel_id, TerminationReason.CREATION_FAILED, None, 0, KernelStatus.ERROR
                )
                if row is not None and placement is not None:
                    await self.registry.release(placement.agent_id)
        except Exception:
            log.exception("cleaning up the failed creation of kernel %s failed", kernel_id)

    def in_grace(self) -> bool:
        return time.monotonic() - self.started_at < self.settings.timings.startup_grace_s

    # ------------------------------------------------------------ addressing

    async def route(self, owner: AccessKey, kernel_id: str, *, queries: int = -1) -> Route:
        """Return the route of ``owner``'s live kernel ``kernel_id``, else KernelNotFound.

        With ``queries`` >= 0 the kernel is also marked used, counting that many queries.
        Anything that is not a UUID is unknown at once: odd ids (NUL, undecodable bytes, huge
        strings) never reach Redis or PostgreSQL.
        """
        kernel_id = _parse_kernel_id(kernel_id)
        if queries >= 0:
            fields = await self.registry.touch_kernel(KernelId(kernel_id), queries)
        else:
            fields = await self.registry.kernel(KernelId(kernel_id))
        if fields is None:
            fields = await self._rebuild_route(KernelId(kernel_id))
        if (
            fields is None
            or fields.get("owner") != owner
            or fields.get("status") not in (KernelStatus.RUNNING, KernelStatus.RESTARTING)
            or not fields.get("addr")
        ):
            raise KernelNotFound(f"no kernel {kernel_id}")
        return Route(
            kernel_id=KernelId(kernel_id),
            agent_id=AgentId(fields.get("agent", "")),
            addr=fields["addr"],
            owner=owner,
            lang=fields.get("lang", ""),
            token=fields.get("token", ""),
            fields=fields,
        )

    async def _rebuild_route(self, kernel_id: KernelId) -> dict[str, str] | None:
        """Rebuild routing from the books (after Redis lost it); None if the kernel is not live."""
        try:
            row = await self.pool.fetchrow(
                "SELECT id, access_key, lang, token, agent_id, agent_addr, status, created_at,"
                " mem_limit_kib, exec_timeout_ms, num_queries FROM kernels"
                " WHERE id = $1::text::uuid AND terminated_at IS NULL AND status = $2",
                kernel_id,
                str(KernelStatus.RUNNING),
            )
        except (ValueError, TypeError):
            return None
        except Exception as e:
            if type(e).__name__ == "InvalidTextRepresentationError":
                return None
            raise
        if row is None or not row["agent_addr"]:
            return None
        fields = {
            "id": str(row["id"]),
            "owner": row["access_key"],
            "lang": row["lang"],
            "token": row["token"],
            "agent": row["agent_id"],
            "addr": row["agent_addr"],
            "status": row["status"],
            "created_at": str(int(row["created_at"].timestamp() * 1000)),
            "last_used": str(now_ms()),
            "num_queries": str(row["num_queries"]),
            "mem_limit_kib": str(row["mem_limit_kib"] or 0),
            "exec_timeout_ms": str(row["exec_timeout_ms"] or 0),
        }
        await self.registry.put_kernel(kernel_id, fields)
        await self.registry.claim_session(
            AccessKey(row["access_key"]), row["lang"], row["token"], kernel_id
        )
        return fields

    def agent(self, addr: str) -> AgentClient:
        """The typed client of the agent at ``addr`` (its connection is shared)."""
        return AgentClient(self.rpc.get(addr))

    @contextlib.asynccontextmanager
    async def _agent_errors(
        self, failure: type[AgentFailure] = KernelExecutionFailed, route: Route | None = None
    ) -> AsyncIterator[None]:
        """Turn what a call to an agent raises into the API's errors (``AGENT_ERRORS``).

        A kernel the agent does not know (``route``'s) is settled: it is gone.
        """
        try:
            yield
        except RPCPeerRestarted as e:
            lost = f"; kernel {route.kernel_id} was lost unless the agent kept it" if route else ""
            raise AgentRestarted(f"{e}{lost}") from e
        except (RPCTimeout, RPCClosed) as e:
            raise InstanceNotAvailable(f"the kernel's agent did not answer: {e}") from e
        except RemoteError as e:
            if e.type is ErrorType.KERNEL_NOT_FOUND and route is not None:
                await self.settle(route.kernel_id, TerminationReason.EXITED)
                raise KernelNotFound(f"no kernel {route.kernel_id}") from e
            problem = AGENT_ERRORS.get(e.type)
            if problem is not None:
                raise problem(e.message) from e
            raise failure(
                e.message,
                agent_details={"type": str(e.type), "message": e.message, "data": e.data},
            ) from e
        except RPCError as e:
            raise InstanceNotAvailable(str(e)) from e

    # ------------------------------------------------------------ operations

    async def info(self, owner: AccessKey, kernel_id: str) -> dict[str, Any]:
        route = await self.route(owner, kernel_id)
        f = route.fields
        now = now_ms()

        def num(name: str) -> int:
            try:
                return int(float(f.get(name) or 0))
            except ValueError:
                return 0

        return {
            "lang": route.lang,
            "age": max(0, now - num("created_at")),
            "memoryLimit": num("mem_limit_kib"),
            "numQueriesExecuted": num("num_queries"),
            "idle": max(0, now - num("last_used")),
            "memoryUsed": num("mem_used_kib"),
            "cpuCreditUsed": num("cpu_used_ms"),
            "execTimeout": num("exec_timeout_ms"),
            "idleTimeout": 0,
        }

    async def destroy(self, owner: AccessKey, kernel_id: str) -> dict[str, Any]:
        route = await self.route(owner, kernel_id)
        await self.registry.set_kernel_fields(route.kernel_id, status=KernelStatus.TERMINATING)
        try:
            async with self._agent_errors(route=route):
                result = await self.agent(route.addr).destroy_kernel(KernelRef(route.kernel_id))
        except KernelNotFound:
            return {}
        await self.settle(route.kernel_id, TerminationReason.DESTROYED, result.stats)
        return result.stats.to_wire()

    async def restart(self, owner: AccessKey, kernel_id: str) -> None:
        route = await self.route(owner, kernel_id)
        await self.registry.set_kernel_fields(route.kernel_id, status=KernelStatus.RESTARTING)
        try:
            async with self._agent_errors(route=route):
                await self.agent(route.addr).restart_kernel(
                    KernelRef(route.kernel_id), timeout=self.settings.timings.create_timeout_s
                )
        finally:
            await self.registry.set_kernel_fields(
                route.kernel_id, status=KernelStatus.RUNNING, run_id="", run_state=""
            )

    async def interrupt(self, owner: AccessKey, kernel_id: str) -> None:
        route = await self.route(owner, kernel_id)
        async with self._agent_errors(route=route):
            await self.agent(route.addr).interrupt_kernel(KernelRef(route.kernel_id))

    async def complete(
        self, owner: AccessKey, kernel_id: str, code: str, options: dict[str, Any] | None
    ) -> list[str]:
        route = await self.route(owner, kernel_id)
        async with self._agent_errors(route=route):
            result = await self.agent(route.addr).get_completions(
                CompletionParams(kernel_id=route.kernel_id, code=code, options=options)
            )
        return result.completions

    async def execute(
        self,
        owner: AccessKey,
        kernel_id: str,
        *,
        mode: str,
        code: str,
        run_id: str | None,
        options: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Run one execute request; return the API result object (or completions)."""
        try:
            exec_mode = ExecMode(mode)
        except ValueError:
            raise InvalidAPIParams(f"unknown mode {mode!r}") from None
        if len(code.encode()) > self.settings.limits.max_code_bytes:
            raise PayloadTooLarge("code is larger than allowed")
        counted = 1 if exec_mode is ExecMode.BATCH or (exec_mode is ExecMode.QUERY and code) else 0
        route = await self.route(owner, kernel_id, queries=counted)
        if exec_mode is ExecMode.COMPLETE:
            return {"completions": await self.complete(owner, kernel_id, code, options)}
        pending = route.fields.get("run_id") or None
        exec_mode = query_mode(exec_mode, code, run_id, pending, route.fields.get("run_state", ""))
        if exec_mode in (ExecMode.CONTINUE, ExecMode.INPUT) and run_id is None:
            run_id = pending
        rid = RunId(run_id) if run_id else new_run_id()
        async with self._agent_errors(route=route):
            result = await self.agent(route.addr).execute(
                ExecuteParams(
                    kernel_id=route.kernel_id,
                    run_id=rid,
                    mode=str(exec_mode),
                    code=code,
                    options=options,
                ),
                timeout=self.settings.timings.execute_timeout_s,
            )
        if result.status in (RunStatus.CONTINUED, RunStatus.WAITING_INPUT):
            await self.registry.set_kernel_fields(
                route.kernel_id, run_id=result.runId, run_state=result.status
            )
        elif pending:
            await self.registry.set_kernel_fields(route.kernel_id, run_id="", run_state="")
        return result.to_wire()

    async def upload(
        self, owner: AccessKey, kernel_id: str, files: list[tuple[str, bytes]]
    ) -> None:
        route = await self.route(owner, kernel_id)
        for path, data in files:
            async with self._agent_errors(route=route):
                await self.agent(route.addr).upload_file(
                    UploadFileParams(kernel_id=route.kernel_id, path=path, data=data)
                )

    async def list_files(self, owner: AccessKey, kernel_id: str, path: str) -> list[Any]:
        route = await self.route(owner, kernel_id)
        async with self._agent_errors(route=route):
            result = await self.agent(route.addr).list_files(
                ListFilesParams(kernel_id=route.kernel_id, path=path)
            )
        return result.files

    async def download(self, owner: AccessKey, kernel_id: str, path: str) -> AsyncIterator[bytes]:
        """Yield the file's bytes in chunks; the first chunk is fetched before returning."""
        route = await self.route(owner, kernel_id)
        chunk = self.settings.limits.download_chunk_bytes

        async def fetch(offset: int) -> tuple[bytes, bool]:
            async with self._agent_errors(route=route):
                r = await self.agent(route.addr).download_file(
                    DownloadFileParams(
                        kernel_id=route.kernel_id, path=path, offset=offset, length=chunk
                    )
                )
            return bytes(r.data), r.eof

        first = await fetch(0)

        async def gen() -> AsyncIterator[bytes]:
            data, eof = first
            offset = 0
            while True:
                if data:
                    yield data
                offset += len(data)
                if eof or not data:
                    return
                data, eof = await fetch(offset)

        return gen()

    # ------------------------------------------------------------ settlement

    async def settle(
        self,
        kernel_id: KernelId,
        reason: str,
        stats: KernelUsage | None = None,
        tx: Pipeline | None = None,
    ) -> bool:
        """End a kernel in the books and routing, once; True for the call that ended it.

        ``stats`` is its last usage, if known. With ``tx`` (an event handler's transaction)
        the Redis effects are queued on it.
        """
        fields = await self.registry.kernel(kernel_id) or {}
        try:
            queries = int(fields.get("num_queries") or 0)
        except ValueError:
            queries = 0
        row = await self._settle_books(kernel_id, reason, stats, queries, KernelStatus.TERMINATED)
        owner = fields.get("owner") or (row["access_key"] if row else "")
        lang = fields.get("lang") or (row["lang"] if row else "")
        token = fields.get("token") or (row["token"] if row else "")
        agent = (row["agent_id"] if row else None) or fields.get("agent")

        def queue(t: Pipeline) -> None:
            self.registry.forget_kernel_in(t, kernel_id, owner, lang, token)
            if row is not None and agent:
                self.registry.release_in(t, AgentId(agent))

        if tx is not None:
            queue(tx)
        else:
            async with self.registry.redis.pipeline(transaction=True) as own:
                queue(own)
                await own.execute()
        if row is not None:
            log.info("kernel %s terminated (%s)", kernel_id, reason)
        return row is not None

    async def _settle_books(
        self,
        kernel_id: KernelId,
        reason: str,
        stats: KernelUsage | None,
        queries: int,
        status: KernelStatus,
    ) -> Any:
        cols = (stats or KernelUsage()).columns()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE kernels SET status = $2, terminated_at = $3, termination_reason = $4,"
                    " stats = $5, num_queries = GREATEST(num_queries, $6), cpu_used_ms = $7,"
                    " max_mem_kib = $8, io_read_bytes = $9, io_write_bytes = $10,"
                    " net_rx_bytes = $11, net_tx_bytes = $12"
                    " WHERE id = $1::text::uuid AND terminated_at IS NULL"
                    " RETURNING access_key, lang, token, agent_id",
                    kernel_id,
                    str(status),
                    datetime.datetime.now(datetime.UTC),
                    reason,
                    stats.to_wire() if stats is not None else {},
                    queries,
                    cols["cpu_used_ms"],
                    cols["max_mem_kib"],
                    cols["io_read_bytes"],
                    cols["io_write_bytes"],
                    cols["net_rx_bytes"],
                    cols["net_tx_bytes"],
                )
                if row is not None:
                    await conn.execute(
                        "UPDATE keypairs SET concurrency_used = GREATEST(concurrency_used - 1, 0)"
                        " WHERE access_key = $1",
                        row["access_key"],
                    )
        except Exception as e:
            if type(e).__name__ == "InvalidTextRepresentationError":
                return None
            raise
        return row

    async def live_kernels_of_agent(self, agent_id: AgentId) -> list[KernelId]:
        rows = await self.pool.fetch(
            "SELECT id FROM kernels WHERE agent_id = $1 AND terminated_at IS NULL", agent_id
        )
        return [KernelId(str(r["id"])) for r in rows]

    async def live_kernels_of_agent_since(
        self, agent_id: AgentId
    ) -> list[tuple[KernelId, datetime.datetime]]:
        """The live kernels the books place on ``agent_id``, with their creation times."""
        rows = await self.pool.fetch(
            "SELECT id, created_at FROM kernels WHERE agent_id = $1 AND terminated_at IS NULL",
            agent_id,
        )
        return [(KernelId(str(r["id"])), r["created_at"]) for r in rows]

    async def live_kernels(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT id, access_key, lang, agent_id, status, created_at, num_queries"
            " FROM kernels WHERE terminated_at IS NULL ORDER BY created_at"
        )
        return [
            {
                "kernelId": str(r["id"]),
                "accessKey": r["access_key"],
                "lang": r["lang"],
                "agent": r["agent_id"],
                "status": r["status"],
                "createdAt": r["created_at"].isoformat(),
            }
            for r in rows
        ]
