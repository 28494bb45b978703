"""The agent daemon: RPC server, kernel lifecycle, registry heartbeats and events.

Run it with ``await Agent(settings=...).run()`` (until SIGTERM/SIGINT), or inside a test's
event loop with ``await agent.start()`` ... ``await agent.close()``. What ``start()`` brings up
(Redis, the backend, the file pool, the output store, the RPC server, the registry) is one
:class:`Started` object, made whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis

from sorna.common import messages as m
from sorna.common.agentapi import AgentMethods
from sorna.common.constants import REPL_OUTPUT_IPC_NAME
from sorna.common.ids import AgentId, KernelId, new_boot_id
from sorna.common.keys import RedisKeys
from sorna.common.langs import LanguageOffer
from sorna.common.messages import (
    CompletionParams,
    CompletionResult,
    CreateKernelParams,
    CreateKernelResult,
    DestroyKernelResult,
    DownloadFileParams,
    DownloadFileResult,
    Empty,
    ExecuteParams,
    ExecuteResult,
    InstanceHeartbeat,
    InstanceStarted,
    InstanceTerminated,
    KernelRef,
    KernelStarted,
    KernelStats,
    KernelTerminated,
    KernelUsage,
    ListFilesParams,
    ListFilesResult,
    PingParams,
    PingResult,
    ResetResult,
    UploadFileParams,
)
from sorna.common.rpc import RPCServer
from sorna.common.types import AgentStatus, KernelStatus, TerminationReason
from sorna.repl import kernelspec

from .backend import KernelBackend, KernelSpec
from .config import AgentSettings
from .cpuset import CoreAllocator
from .disk import DiskCaps
from .dockerbackend import DockerBackend
from .errors import (
    InstanceFull,
    InvalidApiParams,
    KernelCreationFailed,
    KernelExecutionFailed,
    KernelNotFound,
    UnsupportedLang,
)
from .files import Scratch
from .images import ImageInfo, effective_limits
from .kernel import Kernel
from .localbackend import LocalBackend
from .registry import Load, Registry, claim_agent_id
from .storage import OutputStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest ipc socket path (sun_path is 108 bytes with its NUL).
MAX_IPC_PATH = 100


@dataclass(frozen=True, slots=True)
class Started:
    """What a started agent runs on; built whole by :meth:`Agent.start`, let go by close()."""

    redis: Redis
    backend: KernelBackend
    #: Kernels' files get threads of their own: whatever a kernel does to its folder cannot
    #: take the threads that create other users' kernels.
    file_pool: ThreadPoolExecutor
    store: OutputStore | None  # None: no S3 configured, output files are listed only
    server: RPCServer
    registry: Registry


class Agent:
    """One agent: serves RPC, runs kernels through a backend, reports to the registry."""

    def __init__(self, *, settings: AgentSettings, backend: KernelBackend | None = None) -> None:
        self.settings = settings
        self.agent_id = AgentId(settings.effective_agent_id)
        #: Names this start of the process; gateways that see it change fail calls in flight.
        self.boot_id = new_boot_id()
        self._backend_override = backend
        self._work_root = settings.scratch_root / "work"
        self._ipc_root = settings.scratch_root / "ipc"
        self._disks = DiskCaps(scratch_root=settings.scratch_root, work_root=self._work_root)
        self._kernels: dict[KernelId, Kernel] = {}
        self._images: dict[str, ImageInfo] = {}
        self._known_specs = _known_specs()
        self._cores = CoreAllocator(settings.cores or list(range(os.cpu_count() or 1)))
        self._parts: Started | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._up = asyncio.Event()  # set once start() has made every part
        self._closed = False
        self._methods = self._method_table()

    def _method_table(self) -> AgentMethods:
        methods = AgentMethods()
        methods.serve_inline(m.PING, self._ping)
        methods.serve(m.CREATE_KERNEL, self._create_kernel)
        methods.serve(m.DESTROY_KERNEL, self._destroy_kernel)
        methods.serve(m.RESTART_KERNEL, self._restart_kernel)
        methods.serve(m.EXECUTE, self._execute)
        methods.serve(m.INTERRUPT_KERNEL, self._interrupt_kernel)
        methods.serve(m.GET_COMPLETIONS, self._get_completions)
        methods.serve(m.UPLOAD_FILE, self._upload_file)
        methods.serve(m.LIST_FILES, self._list_files)
        methods.serve(m.DOWNLOAD_FILE, self._download_file)
        methods.serve(m.RESET, self._reset)
        return methods

    # -- properties ----------------------------------------------------------------------

    @property
    def started(self) -> Started:
        """The started parts; RuntimeError before :meth:`start` has finished."""
        if self._parts is None:
            raise RuntimeError("the agent is not started")
        return self._parts

    @property
    def backend(self) -> KernelBackend:
        return self.started.backend

    @property
    def address(self) -> str:
        """The RPC address gateways use (advertised host, bound port)."""
        return self._advertised(self.started.server)

    def _advertised(self, server: RPCServer) -> str:
        port = server.address.rsplit(":", 1)[1]
        return f"tcp://{self.settings.advertised_host}:{port}"

    @property
    def kernel_ids(self) -> list[KernelId]:
        """The kernels this agent runs."""
        return list(self._kernels)

    # -- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend, re-adopt surviving kernels, serve RPC and join the registry."""
        if self._parts is not None or self._closed:
            raise RuntimeError("an agent starts once")
        s = self.settings
        for folder in (self._work_root, self._ipc_root):
            folder.mkdir(parents=True, exist_ok=True)
        if s.caps.max_disk_mib:
            await asyncio.to_thread(self._disks.probe)
        else:
            log.warning("caps.max_disk_mib = 0: no disk caps, kernels can fill the host's disk")
        async with contextlib.AsyncExitStack() as undo:
            # Each part is let go (in reverse) if a later one fails; kept once all are up.
            redis = Redis.from_url(s.redis.url)
            undo.push_async_callback(redis.aclose)
            keys = RedisKeys(s.redis.namespace)
            await claim_agent_id(  # before the backend touches any kernel labelled with the id
                redis=redis,
                keys=keys,
                agent_id=self.agent_id,
                boot_id=self.boot_id,
                interval=s.heartbeat_interval,
            )
            backend = await self._start_backend()
            undo.push_async_callback(backend.close)
            self._images = await backend.images()
            file_pool = ThreadPoolExecutor(s.file_workers, thread_name_prefix="sorna-files")
            undo.push_async_callback(_shut_down, file_pool)
            store = None
            if s.s3.endpoint_url:
                store = OutputStore(settings=s.s3, url_expiry=s.s3_url_expiry)
                await store.start()
                undo.push_async_callback(store.close)
            undo.push_async_callback(self._drop_kernels)
            undo.push_async_callback(self._cancel_tasks)
            await self._adopt(backend, store, file_pool)
            server = RPCServer(
                address=f"tcp://{s.rpc_host}:{s.rpc_port}", handlers=self._methods.handlers()
            )
            await server.start()
            undo.push_async_callback(server.close)
            registry = Registry(
                redis=redis,
                keys=keys,
                agent_id=self.agent_id,
                addr=self._advertised(server),
                region=s.region,
                backend=backend.name,
                max_kernels=s.max_kernels,
                interval=s.heartbeat_interval,
                boot_id=self.boot_id,
            )
            await registry.heartbeat(self._load())
            await registry.publish(
                InstanceStarted(
                    agent_id=self.agent_id,
                    addr=self._advertised(server),
                    langs=sorted(self._images),
                    boot_id=self.boot_id,
                )
            )
            self._parts = Started(
                redis=redis,
                backend=backend,
                file_pool=file_pool,
                store=store,
                server=server,
                registry=registry,
            )
            self._up.set()
            undo.pop_all()
        self._spawn(self._every(s.heartbeat_interval, self._heartbeat))
        self._spawn(self._every(s.stats_interval, self._publish_stats))
        if s.idle_timeout > 0:
            self._spawn(self._every(min(1.0, s.idle_timeout / 4), self._reap_idle))
        log.info(
            "agent %s started: %s backend, RPC on %s, languages %s, %d kernel(s) re-adopted",
            self.agent_id,
            backend.name,
            self.address,
            ",".join(sorted(self._images)) or "none",
            len(self._kernels),
        )

    async def _start_backend(self) -> KernelBackend:
        choice = self.settings.backend
        candidates: list[KernelBackend]
        if self._backend_override is not None:
            candidates = [self._backend_override]
        elif choice == "local":
            candidates = [self._local_backend()]
        else:
            docker = DockerBackend(
                agent_id=self.agent_id,
                scratch_root=self._work_root,
                ipc_root=self._ipc_root,
                caps=self.settings.caps,
            )
            candidates = [docker] if choice == "docker" else [docker, self._local_backend()]
        for i, backend in enumerate(candidates):
            try:
                await backend.start(self._on_kernel_exit)
            except Exception as e:
                if i + 1 == len(candidates):
                    raise
                log.info("%s backend unavailable (%s); trying the next one", backend.name, e)
                continue
            return backend
        raise RuntimeError("no backend")  # pragma: no cover - the loop returns or raises

    def _local_backend(self) -> LocalBackend:
        s = self.settings
        return LocalBackend(
            ipc_root=self._ipc_root,
            state_root=s.scratch_root / "local",
            bwrap=s.bwrap_path,
            unsafe=s.unsafe_local_backend,
            uid_base=s.local_uid_base,
            uid_count=s.local_uid_count,
            tmp_bytes=s.caps.tmp_size_mib << 20,
        )

    async def run(self) -> None:
        """Run until SIGTERM or SIGINT (or :meth:`stop`), then shut down."""
        loop = asyncio.get_running_loop()
        await self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            await self._stopping.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to shut down."""
        self._stopping.set()

    async def close(self) -> None:
        """Stop serving, destroy kernels (unless they should survive), leave the registry."""
        if self._closed:
            return
        self._closed = True
        await self._cancel_tasks()
        parts, self._parts = self._parts, None
        if parts is None:
            return  # never started (or its start failed and let go of what it made)
        await parts.server.close()
        keep = self.settings.keep_kernels_on_shutdown and isinstance(parts.backend, DockerBackend)
        kept = self.kernel_ids if keep else []
        for kernel in list(self._kernels.values()):
            if keep:
                self._kernels.pop(kernel.spec.kernel_id, None)
                await kernel.close()
            else:
                await self._terminate(kernel, TerminationReason.AGENT_TERMINATED, parts)
        await parts.registry.publish(InstanceTerminated(agent_id=self.agent_id, kept=kept))
        if not keep:
            with contextlib.suppress(Exception):
                await parts.registry.heartbeat(self._load(), AgentStatus.TERMINATED)
        await parts.backend.close()
        if parts.store is not None:
            await parts.store.close()
        await _shut_down(parts.file_pool)
        await parts.redis.aclose()
        log.info("agent %s stopped", self.agent_id)

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drop_kernels(self) -> None:
        """Let go of the kernels of a start that failed (their containers stay for the next)."""
        kernels, self._kernels = list(self._kernels.values()), {}
        for kernel in kernels:
            await kernel.close()
            self._cores.release(kernel.spec.kernel_id)

    # -- background ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        me = asyncio.current_task()
        while True:
            # redis-py can swallow a cancellation that lands inside a call: honour it here,
            # or close() waits for this task forever.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("agent %s: %s failed", self.agent_id, job.__name__)

    def _load(self) -> Load:
        s = self.settings
        mem = s.mem_slots_mib or (os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) >> 20
        offer = self._offer()
        return Load(
            num_kernels=len(self._kernels),
            mem_slots=mem,
            cpu_slots=len(self._cores.cores),
            used_mem_slots=sum(k.spec.limits.mem_kib for k in self._kernels.values()) >> 10,
            used_cpu_slots=self._cores.used,
            langs=tuple(sorted(self._images)),
            kernels=tuple(self._kernels),
            unbuilt_langs=tuple(sorted(offer.unbuilt)),
            aliases=offer.aliases,
        )

    def _offer(self) -> LanguageOffer:
        """The languages of this agent's images, the known ones it has none of, their aliases.

        The known languages are the kernel folders of the sorna-repl installed beside the
        agent, so that a gateway can tell "not built here" from "no such language". An image's
        io.sorna.aliases label wins over the folder's (an image built before that label
        existed still has its folder's aliases).
        """
        offer = LanguageOffer()
        aliases = {a: lang for lang, spec in self._known_specs.items() for a in spec.aliases}
        aliases.update({a: lang for lang, info in self._images.items() for a in info.aliases})
        unbuilt = [lang for lang in self._known_specs if lang not in self._images]
        offer.add(self._images, unbuilt, aliases)
        return offer

    async def _heartbeat(self) -> None:
        registry = self.started.registry
        await registry.heartbeat(self._load())
        await registry.publish(
            InstanceHeartbeat(
                agent_id=self.agent_id,
                num_kernels=len(self._kernels),
                kernels=self.kernel_ids,
                boot_id=self.boot_id,
            )
        )

    async def _refresh_usage(self, kernel: Kernel, backend: KernelBackend) -> KernelUsage:
        usage = await backend.usage(kernel.spec.kernel_id)
        if usage is not None:
            kernel.usage = kernel.usage.merged(usage)
        return kernel.usage

    async def _publish_stats(self) -> None:
        parts = self.started
        stats: dict[KernelId, KernelUsage] = {}
        for kernel in list(self._kernels.values()):
            stats[kernel.spec.kernel_id] = await self._refresh_usage(kernel, parts.backend)
        if stats:
            await parts.registry.publish(KernelStats(stats=stats))

    async def _reap_idle(self) -> None:
        now = time.monotonic()
        for kernel in list(self._kernels.values()):
            idle = now - kernel.last_used
            if (
                kernel.status == KernelStatus.RUNNING
                and not kernel.busy
                and idle > self.settings.idle_timeout
            ):
                log.info("kernel %s idle for %.0f s: reaping it", kernel.spec.kernel_id, idle)
                await self._terminate(kernel, TerminationReason.IDLE_TIMEOUT, self.started)

    # -- kernel lifecycle ----------------------------------------------------------------

    def _new_kernel(
        self, spec: KernelSpec, store: OutputStore | None, file_pool: ThreadPoolExecutor
    ) -> Kernel:
        return Kernel(
            spec=spec,
            flush_interval=self.settings.flush_interval,
            max_output_file_bytes=self.settings.caps.max_output_file_bytes,
            store=store,
            restarter=self._restart,
            file_pool=file_pool,
        )

    async def _adopt(
        self, backend: KernelBackend, store: OutputStore | None, file_pool: ThreadPoolExecutor
    ) -> None:
        specs, leftovers = await backend.adoptable()
        for ref in leftovers:
            log.info("removing leftover kernel %s", ref)
            await backend.remove_leftover(ref)
        for spec in specs:
            endpoint = await backend.adopt(spec)
            kernel = self._new_kernel(spec, store, file_pool)
            attached = False
            if endpoint is not None:
                with contextlib.suppress(KernelExecutionFailed):
                    kernel.attach(endpoint)
                    attached = True
            if attached:
                if await kernel.ping():
                    self._cores.adopt(spec.kernel_id, spec.cores)
                    self._kernels[spec.kernel_id] = kernel
                    log.info("kernel %s (%s) re-adopted", spec.kernel_id, spec.lang)
                    continue
            log.info("kernel %s does not answer; removing it", spec.kernel_id)
            await kernel.close()
            await backend.destroy(spec.kernel_id)
        # Disks, scratch and ipc folders of kernels that are gone (unmounted before removal).
        for gone in await asyncio.to_thread(self._disks.clean, set(self._kernels)):
            log.info("released the disk of gone kernel %s", gone)
        for root in (self._work_root, self._ipc_root):
            for folder in root.iterdir():
                if folder.name not in self._kernels:
                    await asyncio.to_thread(shutil.rmtree, folder, True)

    def _on_kernel_exit(self, kernel_id: KernelId, reason: TerminationReason) -> None:
        kernel = self._kernels.get(kernel_id)
        if kernel is None or kernel.status != KernelStatus.RUNNING:
            return
        log.info("kernel %s ended on its own: %s", kernel_id, reason)
        self._spawn(self._end(kernel, reason))

    async def _end(self, kernel: Kernel, reason: TerminationReason) -> None:
        await self._up.wait()  # an exit seen while the agent starts is dealt with once started
        await self._terminate(kernel, reason, self.started)

    async def _terminate(
        self, kernel: Kernel, reason: TerminationReason, parts: Started
    ) -> KernelUsage:
        kernel_id = kernel.spec.kernel_id
        if self._kernels.get(kernel_id) is kernel:
            del self._kernels[kernel_id]
        kernel.status = KernelStatus.TERMINATING
        stats = await self._refresh_usage(kernel, parts.backend)
        await kernel.close(reason)
        await parts.backend.destroy(kernel_id)
        await asyncio.to_thread(_remove_dirs, kernel.spec, self._disks)
        self._cores.release(kernel_id)
        log.info("kernel %s terminated: %s", kernel_id, reason)
        await parts.registry.publish(
            KernelTerminated(kernel_id=kernel_id, reason=str(reason), stats=stats)
        )
        return stats

    async def _restart(self, kernel: Kernel) -> None:
        parts = self.started
        kernel.status = KernelStatus.RESTARTING
        kernel.detach()
        try:
            endpoint = await parts.backend.restart(kernel.spec)
        except KernelCreationFailed:
            log.warning("kernel %s did not come back from a restart", kernel.spec.kernel_id)
            self._spawn(self._terminate(kernel, TerminationReason.EXITED, parts))
            raise
        try:
            kernel.attach(endpoint)
        except KernelExecutionFailed:
            log.warning("kernel %s came back without its REPL sockets", kernel.spec.kernel_id)
            self._spawn(self._terminate(kernel, TerminationReason.EXITED, parts))
            raise
        log.info("kernel %s restarted", kernel.spec.kernel_id)

    async def _on_files(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking file operation on the kernels' file pool."""
        pool = self.started.file_pool
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def _kernel(self, kernel_id: KernelId) -> Kernel:
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            raise KernelNotFound(f"no kernel {kernel_id} on agent {self.agent_id}")
        return kernel

    # -- RPC methods ---------------------------------------------------------------------

    def _ping(self, params: PingParams) -> PingResult:
        return PingResult(echo=params.echo)

    async def _create_kernel(self, params: CreateKernelParams) -> CreateKernelResult:
        parts = self.started
        backend = parts.backend
        lang = self._offer().resolve(params.lang)
        if lang is not None and lang not in self._images:
            self._images = await backend.images()  # built since the last look
            lang = self._offer().resolve(params.lang)
        image = self._images.get(lang) if lang else None
        if lang is None or image is None:
            raise UnsupportedLang(f"no kernel image for {params.lang!r} on {self.agent_id}")
        kernel_id = params.kernel_id
        existing = self._kernels.get(kernel_id)
        if existing is not None:
            raise InvalidApiParams(f"kernel {kernel_id} already exists")
        if len(self._kernels) >= self.settings.max_kernels:
            raise InstanceFull(f"agent {self.agent_id} runs {len(self._kernels)} kernels")
        if "/" in kernel_id or kernel_id in ("", ".", ".."):
            raise InvalidApiParams(f"invalid kernel id {kernel_id!r}")
        limits = effective_limits(image, params.limits, self.settings.caps)
        ipc_dir = self._ipc_root / kernel_id
        if len(str(ipc_dir.resolve() / REPL_OUTPUT_IPC_NAME)) > MAX_IPC_PATH:
            raise KernelCreationFailed(f"scratch_root {self.settings.scratch_root} is too long")
        cores = self._cores.allocate(kernel_id, limits.cores)
        spec = KernelSpec(
            kernel_id=kernel_id,
            lang=lang,
            owner=params.owner,
            image=image,
            limits=limits,
            cores=cores,
            scratch=Scratch(self._work_root / kernel_id),
            ipc_dir=ipc_dir,
        )
        kernel = self._new_kernel(spec, parts.store, parts.file_pool)
        self._kernels[kernel_id] = kernel
        try:
            await asyncio.to_thread(_make_dirs, spec, backend.work_uid(spec), self._disks)
            endpoint = await backend.create(spec)
            try:
                kernel.attach(endpoint)
            except KernelExecutionFailed as e:  # its sockets are not what they should be
                await backend.destroy(kernel_id)
                raise KernelCreationFailed(str(e)) from None
        except BaseException as e:
            self._kernels.pop(kernel_id, None)
            self._cores.release(kernel_id)
            await asyncio.to_thread(_remove_dirs, spec, self._disks)
            if isinstance(e, OSError):
                raise KernelCreationFailed(f"kernel {kernel_id}: {e}") from None
            raise
        log.info("kernel %s created: %s, %s", kernel_id, lang, limits)
        await parts.registry.publish(KernelStarted(kernel_id=kernel_id, agent_id=self.agent_id))
        return CreateKernelResult(
            kernel_id=kernel_id,
            lang=lang,
            image=image.ref,
            limits=limits.to_message(),
            features=list(image.features),
        )

    async def _destroy_kernel(self, params: KernelRef) -> DestroyKernelResult:
        kernel = self._kernel(params.kernel_id)
        stats = await self._terminate(kernel, TerminationReason.DESTROYED, self.started)
        return DestroyKernelResult(stats=stats)

    async def _restart_kernel(self, params: KernelRef) -> Empty:
        kernel = self._kernel(params.kernel_id)
        kernel.abort_runs("kernel restarted", {"reason": "restarted"}, queued=False)
        await self._restart(kernel)
        return Empty()

    async def _execute(self, params: ExecuteParams) -> ExecuteResult:
        return await self._kernel(params.kernel_id).execute(params)

    async def _interrupt_kernel(self, params: KernelRef) -> Empty:
        await self._kernel(params.kernel_id).interrupt()
        return Empty()

    async def _get_completions(self, params: CompletionParams) -> CompletionResult:
        found = await self._kernel(params.kernel_id).complete(params.code, params.options)
        return CompletionResult(completions=found)

    async def _upload_file(self, params: UploadFileParams) -> Empty:
        # The size of one upload is the gateway's to cap (limits.upload_max_file_bytes); the
        # kernel's disk cap still bounds what its files take.
        kernel = self._kernel(params.kernel_id)
        kernel.last_used = time.monotonic()
        await self._on_files(
            kernel.spec.scratch.write,
            params.path,
            bytes(params.data),
            self.started.backend.work_uid(kernel.spec),
        )
        return Empty()

    async def _list_files(self, params: ListFilesParams) -> ListFilesResult:
        kernel = self._kernel(params.kernel_id)
        kernel.last_used = time.monotonic()
        files = await self._on_files(kernel.spec.scratch.list, params.path)
        return ListFilesResult(files=files)

    async def _download_file(self, params: DownloadFileParams) -> DownloadFileResult:
        kernel = self._kernel(params.kernel_id)
        kernel.last_used = time.monotonic()
        length = min(params.length, self.settings.caps.max_download_chunk)
        data, eof = await self._on_files(
            kernel.spec.scratch.read, params.path, params.offset, length
        )
        return DownloadFileResult(data=data, eof=eof)

    async def _reset(self, params: Empty) -> ResetResult:
        destroyed: list[KernelId] = []
        parts = self.started
        for kernel in list(self._kernels.values()):
            await self._terminate(kernel, TerminationReason.AGENT_RESET, parts)
            destroyed.append(kernel.spec.kernel_id)
        return ResetResult(destroyed=destroyed)


def _make_dirs(spec: KernelSpec, uid: int | None, disks: DiskCaps) -> None:
    spec.scratch.create(uid)
    if spec.limits.disk_kib:  # mounted before the kernel exists: nothing of its is on the path
        disks.attach(spec.kernel_id, spec.scratch.root, spec.limits.disk_kib, uid)
    spec.ipc_dir.mkdir(parents=True, exist_ok=True)
    if uid is not None:
        os.chown(spec.ipc_dir, uid, uid)


def _remove_dirs(spec: KernelSpec, disks: DiskCaps) -> None:
    disks.release(spec.kernel_id, spec.scratch.root)
    for folder in (spec.scratch.root, spec.ipc_dir):
        shutil.rmtree(folder, ignore_errors=True)


async def _shut_down(pool: ThreadPoolExecutor) -> None:
    await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


__all__ = ["Agent", "Started"]


def _known_specs() -> Mapping[str, kernelspec.KernelSpec]:
    """The kernel folders of the installed sorna-repl (none if they cannot be read)."""
    try:
        return kernelspec.kernel_specs()
    except kernelspec.KernelSpecError as e:
        log.warning("the kernel folders cannot be read, so no unbuilt language is offered: %s", e)
        return {}
