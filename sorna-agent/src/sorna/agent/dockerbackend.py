"""Kernels as locked-down Docker containers, through aiodocker.

Each kernel is a container named ``sorna.kernel.<id>``, labelled with its kernel id, owner,
language, limits and agent id, started from the kernel container profile of
:mod:`sorna.repl.container` (the one the kernel image tests use too): no network, a read-only
root, no capabilities, ``/home/work`` bind-mounted from its scratch folder, a size-capped tmpfs
``/tmp``, memory without swap, a cpuset, a pids limit, and its REPL sockets as ipc files in a
bind-mounted folder. Deaths are read from Docker's event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from sorna.common.constants import (
    KERNEL_CONTAINER_PREFIX,
    KERNEL_WORK_UID,
    LABEL_AGENT_ID,
    LABEL_KERNEL_ID,
    LABEL_KERNEL_LANG,
    LABEL_KERNEL_LIMITS,
    LABEL_KERNEL_OWNER,
)
from sorna.common.ids import KernelId
from sorna.common.langs import KERNEL_IMAGE_PREFIX
from sorna.common.messages import KernelUsage
from sorna.common.types import TerminationReason
from sorna.repl.container import ContainerSpec, container_config, host_socket_paths

from .backend import Endpoint, ExitCallback, KernelBackend, KernelSpec
from .config import CapsSettings
from .cpuset import format_cpuset, parse_cpuset
from .errors import KernelCreationFailed
from .files import Scratch
from .images import ImageInfo, Limits
from .stats import from_docker_stats, read_cgroup

log = logging.getLogger(__name__)

#: How long a daemon may take to bind its sockets.
START_TIMEOUT = 30.0
#: How long a restart waits for Docker's "die" event of the daemon it killed.
RESTART_DIE_WAIT = 2.0


def container_name(kernel_id: KernelId) -> str:
    """The container of a kernel."""
    return f"{KERNEL_CONTAINER_PREFIX}{kernel_id}"


def ipc_endpoint(ipc_dir: Path) -> Endpoint:
    """The host-side addresses of the REPL sockets in an ipc folder."""
    input_socket, output_socket = host_socket_paths(ipc_dir)
    return Endpoint(f"ipc://{input_socket}", f"ipc://{output_socket}")


def _clear_sockets(ipc_dir: Path) -> None:
    for socket in host_socket_paths(ipc_dir):
        socket.unlink(missing_ok=True)


class DockerBackend(KernelBackend):
    """Kernels in Docker containers."""

    name = "docker"

    def __init__(
        self, *, agent_id: str, scratch_root: Path, ipc_root: Path, caps: CapsSettings
    ) -> None:
        self._agent_id = agent_id
        self._scratch_root = scratch_root
        self._ipc_root = ipc_root
        self._caps = caps
        self._docker: aiodocker.Docker | None = None
        self._on_exit: ExitCallback | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._images: dict[str, ImageInfo] = {}
        self._dead: dict[str, asyncio.Event] = {}
        # Last usage read from a container's cgroup, kept for the final stats of one that died.
        self._last_usage: dict[str, KernelUsage] = {}

    def work_uid(self, spec: KernelSpec) -> int | None:
        """Every container runs as the image's work user."""
        return KERNEL_WORK_UID

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            raise RuntimeError("DockerBackend is not started")
        return self._docker

    async def start(self, on_exit: ExitCallback) -> None:
        self._docker = aiodocker.Docker()
        try:
            await self._docker.version()
        except Exception:
            await self._docker.close()
            self._docker = None
            raise
        self._on_exit = on_exit
        ready = asyncio.Event()
        self._events_task = asyncio.create_task(self._watch_events(ready))
        await ready.wait()

    async def close(self) -> None:
        task, self._events_task = self._events_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._docker is not None:
            with contextlib.suppress(Exception):
                await self._docker.events.stop()  # type: ignore[no-untyped-call]
            await self._docker.close()
            self._docker = None

    # -- images --------------------------------------------------------------------------

    async def images(self) -> dict[str, ImageInfo]:
        found: dict[str, ImageInfo] = {}
        for image in await self.docker.images.list():
            labels = image.get("Labels") or {}
            for ref in image.get("RepoTags") or []:
                if not ref.startswith(KERNEL_IMAGE_PREFIX):
                    continue
                info = ImageInfo.from_labels(ref, labels)
                if info is None:
                    continue
                # Prefer :latest when an image has several tags.
                if info.lang not in found or ref.endswith(":latest"):
                    found[info.lang] = info
        self._images = found
        return found

    # -- lifecycle -----------------------------------------------------------------------

    def _config(self, spec: KernelSpec) -> dict[str, Any]:
        cores = str(len(spec.cores))
        limits = {
            "mem_kib": spec.limits.mem_kib,
            "cores": spec.limits.cores,
            "exec_timeout_ms": spec.limits.exec_timeout_ms,
        }
        return container_config(
            ContainerSpec(
                image=spec.image.ref,
                workdir=spec.scratch.root,
                ipc_dir=spec.ipc_dir,
                mem_bytes=spec.limits.mem_kib * 1024,
                pids_limit=self._caps.pids_limit,
                tmp_size_mib=self._caps.tmp_size_mib,
                cpuset=format_cpuset(spec.cores),
                labels={
                    LABEL_KERNEL_ID: spec.kernel_id,
                    LABEL_KERNEL_OWNER: spec.owner,
                    LABEL_KERNEL_LANG: spec.lang,
                    LABEL_KERNEL_LIMITS: json.dumps(limits),
                    LABEL_AGENT_ID: self._agent_id,
                },
                env=tuple(f"{name}={cores}" for name in spec.image.corecount_envs),
            )
        )

    async def create(self, spec: KernelSpec) -> Endpoint:
        name = container_name(spec.kernel_id)
        self._dead[spec.kernel_id] = asyncio.Event()
        try:
            container = await self.docker.containers.create(self._config(spec), name=name)
            await container.start()
        except DockerError as e:
            await self.destroy(spec.kernel_id)
            raise KernelCreationFailed(f"{name}: {e.message}") from None
        await self._wait_ready(spec)
        return ipc_endpoint(spec.ipc_dir)

    async def restart(self, spec: KernelSpec) -> Endpoint:
        name = container_name(spec.kernel_id)
        container = self.docker.containers.container(name)
        old_death = self._dead.setdefault(spec.kernel_id, asyncio.Event())
        try:
            with contextlib.suppress(DockerError):
                await container.kill()
            await container.wait()
            # Let the old daemon's "die" event land first, so it is not taken for the new one's.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(old_death.wait(), RESTART_DIE_WAIT)
            _clear_sockets(spec.ipc_dir)
            self._dead[spec.kernel_id] = asyncio.Event()
            await container.start()
        except DockerError as e:
            raise KernelCreationFailed(f"{name}: restart failed: {e.message}") from None
        await self._wait_ready(spec)
        return ipc_endpoint(spec.ipc_dir)

    async def _wait_ready(self, spec: KernelSpec) -> None:
        sockets = host_socket_paths(spec.ipc_dir)
        dead = self._dead.setdefault(spec.kernel_id, asyncio.Event())
        deadline = time.monotonic() + START_TIMEOUT
        while not all(s.exists() for s in sockets):
            if dead.is_set() or time.monotonic() > deadline:
                logs = await self._logs(spec.kernel_id)
                await self.destroy(spec.kernel_id)
                why = "exited" if dead.is_set() else "did not bind its sockets"
                raise KernelCreationFailed(f"{spec.lang} kernel {why}; log: {logs}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dead.wait(), 0.005)

    async def _logs(self, kernel_id: KernelId) -> str:
        try:
            lines = await self.docker.containers.container(container_name(kernel_id)).log(
                stdout=True, stderr=True, tail=20
            )
        except DockerError:
            return ""
        return "".join(lines)[-2000:]

    async def destroy(self, kernel_id: KernelId) -> None:
        self._dead.pop(kernel_id, None)
        self._last_usage.pop(kernel_id, None)
        try:
            await self.docker.containers.container(container_name(kernel_id)).delete(
                force=True, v=True
            )
        except DockerError as e:
            if e.status != 404:
                log.warning("kernel %s: removing its container failed: %s", kernel_id, e)

    async def usage(self, kernel_id: KernelId) -> KernelUsage | None:
        container = self.docker.containers.container(container_name(kernel_id))
        try:
            info = await container.show()
        except DockerError:
            return None
        if not info["State"].get("Running"):
            return self._last_usage.get(kernel_id)
        usage = await asyncio.to_thread(read_cgroup, info["Id"])
        if usage is not None:
            self._last_usage[kernel_id] = usage
            return usage
        try:
            data = await container.stats(stream=False)
        except DockerError:
            return None
        return from_docker_stats(data[0] if isinstance(data, list) else data)

    # -- re-adoption ---------------------------------------------------------------------

    async def adoptable(self) -> tuple[list[KernelSpec], list[str]]:
        filters = json.dumps({"label": [f"{LABEL_AGENT_ID}={self._agent_id}"]})
        adopt: list[KernelSpec] = []
        leftovers: list[str] = []
        for container in await self.docker.containers.list(all=True, filters=filters):
            try:
                info = await container.show()
            except DockerError:
                continue  # removed meanwhile
            if not self._ours(info):
                continue  # never another agent's kernel, whatever the filter matched
            name = info["Name"].lstrip("/")
            spec = self._spec_from(info)
            if spec is None or not info["State"].get("Running"):
                leftovers.append(name)
            else:
                adopt.append(spec)
        return adopt, leftovers

    def _ours(self, info: dict[str, Any]) -> bool:
        """Whether a container (its ``show()``) is labelled with this agent's id."""
        labels = (info.get("Config") or {}).get("Labels") or {}
        return bool(labels.get(LABEL_AGENT_ID) == self._agent_id)

    def _spec_from(self, info: dict[str, Any]) -> KernelSpec | None:
        labels = info["Config"].get("Labels") or {}
        try:
            kernel_id = KernelId(labels[LABEL_KERNEL_ID])
            lang = labels[LABEL_KERNEL_LANG]
            raw = json.loads(labels[LABEL_KERNEL_LIMITS])
            limits = Limits(int(raw["mem_kib"]), int(raw["cores"]), int(raw["exec_timeout_ms"]))
        except (KeyError, ValueError, TypeError):
            return None
        image = self._images.get(lang) or ImageInfo(ref=info["Config"]["Image"], lang=lang)
        return KernelSpec(
            kernel_id=kernel_id,
            lang=lang,
            owner=labels.get(LABEL_KERNEL_OWNER, ""),
            image=image,
            limits=limits,
            cores=tuple(parse_cpuset(info["HostConfig"].get("CpusetCpus") or "")),
            scratch=Scratch(self._scratch_root / kernel_id),
            ipc_dir=self._ipc_root / kernel_id,
        )

    async def adopt(self, spec: KernelSpec) -> Endpoint | None:
        sockets = host_socket_paths(spec.ipc_dir)
        if not all(s.exists() for s in sockets):
            return None
        self._dead[spec.kernel_id] = asyncio.Event()
        return ipc_endpoint(spec.ipc_dir)

    async def remove_leftover(self, ref: str) -> None:
        try:
            container = self.docker.containers.container(ref)
            if not self._ours(await container.show()):
                log.warning("not removing container %s: it is not this agent's", ref)
                return
            await container.delete(force=True, v=True)
        except DockerError as e:
            if e.status != 404:
                log.warning("removing leftover container %s failed: %s", ref, e)

    # -- events --------------------------------------------------------------------------

    async def _watch_events(self, ready: asyncio.Event) -> None:
        filters = json.dumps(
            {
                "type": ["container"],
                "event": ["die", "oom"],
                "label": [f"{LABEL_AGENT_ID}={self._agent_id}"],
            }
        )
        while True:
            events = self.docker.events
            subscriber = events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
            runner = asyncio.create_task(events.run(filters=filters))
            try:
                # The stream is open once Docker answered; a short pause covers the request.
                await asyncio.sleep(0.05)
                ready.set()
                oom: set[str] = set()
                while True:
                    event = await subscriber.get()
                    if event is None:
                        break
                    await self._on_event(event, oom)
            except asyncio.CancelledError:
                runner.cancel()
                raise
            except Exception:
                log.exception("Docker event stream failed; reconnecting")
            finally:
                runner.cancel()
                with contextlib.suppress(BaseException):
                    await runner
            await asyncio.sleep(0.5)

    async def _on_event(self, event: dict[str, Any], oom: set[str]) -> None:
        actor = event.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        kernel_id = attrs.get(LABEL_KERNEL_ID)
        if not kernel_id or attrs.get(LABEL_AGENT_ID) != self._agent_id:
            return  # another agent's container (the stream is filtered; this makes it sure)
        action = event.get("Action") or event.get("status")
        usage = await asyncio.to_thread(read_cgroup, actor.get("ID", ""))
        if usage is not None:  # the cgroup outlives the "oom" event, and "die" now and then
            last = self._last_usage.get(kernel_id)
            self._last_usage[kernel_id] = last.merged(usage) if last else usage
        if action == "oom":
            oom.add(kernel_id)
            return
        if action != "die":
            return
        reason = TerminationReason.EXITED
        try:
            info = await self.docker.containers.container(actor.get("ID", "")).show()
            state = info["State"]
            if state.get("Running"):
                return  # restarted meanwhile
            if state.get("OOMKilled") or kernel_id in oom:
                reason = TerminationReason.OOM_KILLED
            elif int(state.get("ExitCode", 0)) in (137, 143):
                reason = TerminationReason.KILLED
        except DockerError:
            if kernel_id in oom:
                reason = TerminationReason.OOM_KILLED
        oom.discard(kernel_id)
        dead = self._dead.get(kernel_id)
        if dead is not None:
            dead.set()
        if self._on_exit is not None:
            self._on_exit(KernelId(kernel_id), reason)
