"""The agent daemon: RPC server, kernel lifecycle, registry heartbeats and events.

Run it with ``await Agent(settings=...).run()`` (until SIGTERM/SIGINT), or inside a test's
event loop with ``await agent.start()`` ... ``await agent.close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from redis.asyncio import Redis

from sorna.common.constants import REPL_OUTPUT_IPC_NAME
from sorna.common.errors import CodecError
from sorna.common.ids import AgentId, KernelId, new_boot_id
from sorna.common.keys import RedisKeys
from sorna.common.langs import resolve_lang
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
    InstanceHeartbeat,
    InstanceStarted,
    InstanceTerminated,
    KernelRef,
    KernelStarted,
    KernelStats,
    KernelTerminated,
    ListFilesParams,
    ListFilesResult,
    PingParams,
    PingResult,
    ResetResult,
    UploadFileParams,
)
from sorna.common.rpc import Handler, RPCServer
from sorna.common.types import AgentStatus, KernelStatus, TerminationReason
from sorna.common.wire import WireMessage

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
    PayloadTooLarge,
    UnsupportedLang,
)
from .files import Scratch
from .images import ImageInfo, effective_limits
from .kernel import Kernel
from .localbackend import LocalBackend
from .registry import Load, Registry, claim_agent_id
from .stats import KernelUsage
from .storage import OutputStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest ipc socket path (sun_path is 108 bytes with its NUL).
MAX_IPC_PATH = 100


class Agent:
    """One agent: serves RPC, runs kernels through a backend, reports to the registry."""

    def __init__(self, *, settings: AgentSettings, backend: KernelBackend | None = None) -> None:
        self.settings = settings
        self.agent_id = AgentId(settings.effective_agent_id)
        #: Names this start of the process; gateways that see it change fail calls in flight.
        self.boot_id = new_boot_id()
        self._backend_override = backend
        self._backend: KernelBackend | None = None
        self._work_root = settings.scratch_root / "work"
        self._ipc_root = settings.scratch_root / "ipc"
        self._disks = DiskCaps(scratch_root=settings.scratch_root, work_root=self._work_root)
        self._kernels: dict[KernelId, Kernel] = {}
        self._images: dict[str, ImageInfo] = {}
        self._cores = CoreAllocator(settings.cores or list(range(os.cpu_count() or 1)))
        self._redis: Redis | None = None
        self._registry: Registry | None = None
        self._store: OutputStore | None = None
        self._server: RPCServer | None = None
        self._file_pool: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._closed = False
        self._handlers: dict[str, Handler] = {
            "ping": self._rpc(PingParams, self._ping),
            "create_kernel": self._rpc(CreateKernelParams, self._create_kernel),
            "destroy_kernel": self._rpc(KernelRef, self._destroy_kernel),
            "restart_kernel": self._rpc(KernelRef, self._restart_kernel),
            "execute": self._rpc(ExecuteParams, self._execute),
            "interrupt_kernel": self._rpc(KernelRef, self._interrupt_kernel),
            "get_completions": self._rpc(CompletionParams, self._get_completions),
            "upload_file": self._rpc(UploadFileParams, self._upload_file),
            "list_files": self._rpc(ListFilesParams, self._list_files),
            "download_file": self._rpc(DownloadFileParams, self._download_file),
            "reset": self._rpc(Empty, self._reset),
        }

    # -- properties ----------------------------------------------------------------------

    @property
    def backend(self) -> KernelBackend:
        if self._backend is None:
            raise RuntimeError("the agent is not started")
        return self._backend

    @property
    def address(self) -> str:
        """The RPC address gateways use (advertised host, bound port)."""
        if self._server is None:
            raise RuntimeError("the agent is not started")
        port = self._server.address.rsplit(":", 1)[1]
        return f"tcp://{self.settings.advertised_host}:{port}"

    @property
    def kernel_ids(self) -> list[KernelId]:
        """The kernels this agent runs."""
        return list(self._kernels)

    # -- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend, re-adopt surviving kernels, serve RPC and join the registry."""
        s = self.settings
        for folder in (self._work_root, self._ipc_root):
            folder.mkdir(parents=True, exist_ok=True)
        if s.caps.max_disk_mib:
            await asyncio.to_thread(self._disks.probe)
        else:
            log.warning("caps.max_disk_mib = 0: no disk caps, kernels can fill the host's disk")
        self._redis = Redis.from_url(s.redis.url)
        await self._claim_id()  # before the backend touches any kernel labelled with the id
        try:
            await self._start_serving()
        except BaseException:
            await self.close()  # whatever was started (Redis, backend, pool) is let go
            raise

    async def _start_serving(self) -> None:
        s = self.settings
        assert self._redis is not None  # made by start() before the id claim
        self._backend = await self._start_backend()
        self._images = await self.backend.images()
        # Kernels' files get threads of their own: whatever a kernel does to its folder
        # cannot take the threads that create other users' kernels.
        self._file_pool = ThreadPoolExecutor(s.file_workers, thread_name_prefix="sorna-files")
        if s.s3.endpoint_url:
            self._store = OutputStore(settings=s.s3, url_expiry=s.s3_url_expiry)
            await self._store.start()
        await self._adopt()
        self._server = RPCServer(
            address=f"tcp://{s.rpc_host}:{s.rpc_port}", handlers=self._handlers
        )
        await self._server.start()
        self._registry = Registry(
            redis=self._redis,
            keys=RedisKeys(s.redis.namespace),
            agent_id=self.agent_id,
            addr=self.address,
            region=s.region,
            backend=self.backend.name,
            max_kernels=s.max_kernels,
            interval=s.heartbeat_interval,
            boot_id=self.boot_id,
        )
        await self._registry.heartbeat(self._load())
        await self._registry.publish(
            InstanceStarted(
                agent_id=self.agent_id,
                addr=self.address,
                langs=sorted(self._images),
                boot_id=self.boot_id,
            )
        )
        self._spawn(self._every(s.heartbeat_interval, self._heartbeat))
        self._spawn(self._every(s.stats_interval, self._publish_stats))
        if s.idle_timeout > 0:
            self._spawn(self._every(min(1.0, s.idle_timeout / 4), self._reap_idle))
        log.info(
            "agent %s started: %s backend, RPC on %s, languages %s, %d kernel(s) re-adopted",
            self.agent_id,
            self.backend.name,
            self.address,
            ",".join(sorted(self._images)) or "none",
            len(self._kernels),
        )

    async def _claim_id(self) -> None:
        assert self._redis is not None
        try:
            await claim_agent_id(
                redis=self._redis,
                keys=RedisKeys(self.settings.redis.namespace),
                agent_id=self.agent_id,
                boot_id=self.boot_id,
                interval=self.settings.heartbeat_interval,
            )
        except BaseException:
            self._closed = True  # nothing else was started; close() has nothing to do
            redis, self._redis = self._redis, None
            await redis.aclose()
            raise

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
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.close()
        keep = self.settings.keep_kernels_on_shutdown and isinstance(self._backend, DockerBackend)
        kept = self.kernel_ids if keep else []
        for kernel in list(self._kernels.values()):
            if keep:
                self._kernels.pop(kernel.spec.kernel_id, None)
                await kernel.close()
            else:
                await self._terminate(kernel, TerminationReason.AGENT_TERMINATED)
        if self._registry is not None:
            await self._registry.publish(InstanceTerminated(agent_id=self.agent_id, kept=kept))
            if not keep:
                with contextlib.suppress(Exception):
                    await self._registry.heartbeat(self._load(), AgentStatus.TERMINATED)
        if self._backend is not None:
            await self._backend.close()
        if self._store is not None:
            await self._store.close()
        if self._file_pool is not None:
            await asyncio.to_thread(self._file_pool.shutdown, wait=True, cancel_futures=True)
        if self._redis is not None:
            await self._redis.aclose()
        log.info("agent %s stopped", self.agent_id)

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
        return Load(
            num_kernels=len(self._kernels),
            mem_slots=mem,
            cpu_slots=len(self._cores.cores),
            used_mem_slots=sum(k.spec.limits.mem_kib for k in self._kernels.values()) >> 10,
            used_cpu_slots=self._cores.used,
            langs=tuple(sorted(self._images)),
            kernels=tuple(self._kernels),
        )

    async def _heartbeat(self) -> None:
        if self._registry is None:
            return
        await self._registry.heartbeat(self._load())
        await self._registry.publish(
            InstanceHeartbeat(
                agent_id=self.agent_id,
                num_kernels=len(self._kernels),
                kernels=self.kernel_ids,
                boot_id=self.boot_id,
            )
        )

    async def _refresh_usage(self, kernel: Kernel) -> KernelUsage:
        usage = await self.backend.usage(kernel.spec.kernel_id)
        if usage is not None:
            kernel.usage = kernel.usage.merged(usage)
        return kernel.usage

    async def _publish_stats(self) -> None:
        stats: dict[str, dict[str, Any]] = {}
        for kernel in list(self._kernels.values()):
            stats[kernel.spec.kernel_id] = (await self._refresh_usage(kernel)).to_wire()
        if stats and self._registry is not None:
            await self._registry.publish(KernelStats(stats=stats))

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
                await self._terminate(kernel, TerminationReason.IDLE_TIMEOUT)

    # -- kernel lifecycle ----------------------------------------------------------------

    def _new_kernel(self, spec: KernelSpec) -> Kernel:
        return Kernel(
            spec=spec,
            flush_interval=self.settings.flush_interval,
            max_output_file_bytes=self.settings.caps.max_output_file_bytes,
            store=self._store,
            restarter=self._restart,
            file_pool=self._files(),
        )

    async def _adopt(self) -> None:
        specs, leftovers = await self.backend.adoptable()
        for ref in leftovers:
            log.info("removing leftover kernel %s", ref)
            await self.backend.remove_leftover(ref)
        for spec in specs:
            endpoint = await self.backend.adopt(spec)
            kernel = self._new_kernel(spec)
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
            await self.backend.destroy(spec.kernel_id)
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
        self._spawn(self._terminate(kernel, reason))

    async def _terminate(self, kernel: Kernel, reason: TerminationReason) -> dict[str, Any]:
        kernel_id = kernel.spec.kernel_id
        if self._kernels.get(kernel_id) is kernel:
            del self._kernels[kernel_id]
        kernel.status = KernelStatus.TERMINATING
        stats = (await self._refresh_usage(kernel)).to_wire()
        await kernel.close(reason)
        await self.backend.destroy(kernel_id)
        await asyncio.to_thread(_remove_dirs, kernel.spec, self._disks)
        self._cores.release(kernel_id)
        log.info("kernel %s terminated: %s", kernel_id, reason)
        if self._registry is not None:
            await self._registry.publish(
                KernelTerminated(kernel_id=kernel_id, reason=str(reason), stats=stats)
            )
        return stats

    async def _restart(self, kernel: Kernel) -> None:
        kernel.status = KernelStatus.RESTARTING
        kernel.detach()
        try:
            endpoint = await self.backend.restart(kernel.spec)
        except KernelCreationFailed:
            log.warning("kernel %s did not come back from a restart", kernel.spec.kernel_id)
            self._spawn(self._terminate(kernel, TerminationReason.EXITED))
            raise
        try:
            kernel.attach(endpoint)
        except KernelExecutionFailed:
            log.warning("kernel %s came back without its REPL sockets", kernel.spec.kernel_id)
            self._spawn(self._terminate(kernel, TerminationReason.EXITED))
            raise
        log.info("kernel %s restarted", kernel.spec.kernel_id)

    def _files(self) -> ThreadPoolExecutor:
        if self._file_pool is None:
            raise RuntimeError("the agent is not started")
        return self._file_pool

    async def _on_files(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking file operation on the kernels' file pool."""
        return await asyncio.get_running_loop().run_in_executor(self._files(), fn, *args)

    def _kernel(self, kernel_id: KernelId) -> Kernel:
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            raise KernelNotFound(f"no kernel {kernel_id} on agent {self.agent_id}")
        return kernel

    # -- RPC methods ---------------------------------------------------------------------

    def _rpc(
        self,
        params_type: type[WireMessage],
        method: Callable[[Any], Awaitable[WireMessage]],
    ) -> Handler:
        async def handler(raw: dict[str, Any]) -> Any:
            try:
                params = params_type.from_wire(raw)
            except CodecError as e:
                raise InvalidApiParams(str(e)) from None
            return (await method(params)).to_wire()

        return handler

    async def _ping(self, params: PingParams) -> PingResult:
        return PingResult(echo=params.echo)

    async def _create_kernel(self, params: CreateKernelParams) -> CreateKernelResult:
        lang = resolve_lang(params.lang)
        if lang is not None and lang not in self._images:
            self._images = await self.backend.images()
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
        kernel = self._new_kernel(spec)
        self._kernels[kernel_id] = kernel
        try:
            await asyncio.to_thread(_make_dirs, spec, self.backend.work_uid(spec), self._disks)
            endpoint = await self.backend.create(spec)
            try:
                kernel.attach(endpoint)
            except KernelExecutionFailed as e:  # its sockets are not what they should be
                await self.backend.destroy(kernel_id)
                raise KernelCreationFailed(str(e)) from None
        except BaseException as e:
            self._kernels.pop(kernel_id, None)
            self._cores.release(kernel_id)
            await asyncio.to_thread(_remove_dirs, spec, self._disks)
            if isinstance(e, OSError):
                raise KernelCreationFailed(f"kernel {kernel_id}: {e}") from None
            raise
        log.info("kernel %s created: %s, %s", kernel_id, lang, limits)
        if self._registry is not None:
            await self._registry.publish(KernelStarted(kernel_id=kernel_id, agent_id=self.agent_id))
        return CreateKernelResult(
            kernel_id=kernel_id,
            lang=lang,
            image=image.ref,
            limits=limits.to_message(),
            features=list(image.features),
        )

    async def _destroy_kernel(self, params: KernelRef) -> DestroyKernelResult:
        kernel = self._kernel(params.kernel_id)
        stats = await self._terminate(kernel, TerminationReason.DESTROYED)
        return DestroyKernelResult(stats=stats)

    async def _restart_kernel(self, params: KernelRef) -> Empty:
        kernel = self._kernel(params.kernel_id)
        kernel.abort_runs("kernel restarted", {"reason": "restarted"}, queued=False)
        await self._restart(kernel)
        return Empty()

    async def _execute(self, params: ExecuteParams) -> WireMessage:
        return await self._kernel(params.kernel_id).execute(params)

    async def _interrupt_kernel(self, params: KernelRef) -> Empty:
        await self._kernel(params.kernel_id).interrupt()
        return Empty()

    async def _get_completions(self, params: CompletionParams) -> CompletionResult:
        found = await self._kernel(params.kernel_id).complete(params.code, params.options)
        return CompletionResult(completions=found)

    async def _upload_file(self, params: UploadFileParams) -> Empty:
        kernel = self._kernel(params.kernel_id)
        cap = self.settings.caps.max_upload_bytes
        if len(params.data) > cap:
            raise PayloadTooLarge(f"{len(params.data)} bytes is over the {cap} byte cap")
        kernel.last_used = time.monotonic()
        await self._on_files(
            kernel.spec.scratch.write,
            params.path,
            bytes(params.data),
            self.backend.work_uid(kernel.spec),
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
        for kernel in list(self._kernels.values()):
            await self._terminate(kernel, TerminationReason.AGENT_RESET)
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


__all__ = ["Agent"]
