"""Handlers of the agent event stream, and the consumer loop that survives a Redis flush."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio.client import Pipeline

from sorna.common.events import Event, EventConsumer, EventHandler
from sorna.common.messages import (
    InstanceStarted,
    InstanceTerminated,
    KernelStats,
    KernelTerminated,
)
from sorna.common.types import EventName, TerminationReason
from sorna.manager.kernels import KernelManager
from sorna.manager.liveness import LivenessChecker

log = logging.getLogger(__name__)


class EventHandlers:
    """What a gateway does with each event."""

    def __init__(self, *, kernels: KernelManager, liveness: LivenessChecker) -> None:
        self.kernels = kernels
        self.liveness = liveness

    def table(self) -> dict[EventName, EventHandler]:
        return {
            EventName.KERNEL_TERMINATED: self.kernel_terminated,
            EventName.KERNEL_STATS: self.kernel_stats,
            EventName.INSTANCE_TERMINATED: self.instance_terminated,
            EventName.INSTANCE_STARTED: self.instance_started,
        }

    async def kernel_terminated(self, event: Event, tx: Pipeline) -> None:
        body = event.body
        assert isinstance(body, KernelTerminated)
        await self.kernels.settle(body.kernel_id, body.reason, body.stats, tx)

    async def kernel_stats(self, event: Event, tx: Pipeline) -> None:
        body = event.body
        assert isinstance(body, KernelStats)
        for kernel_id, usage in body.stats.items():
            self.kernels.registry.set_kernel_fields_in(
                tx, kernel_id, mem_used_kib=usage.mem_cur_kib, cpu_used_ms=usage.cpu_ms
            )

    async def instance_started(self, event: Event, tx: Pipeline) -> None:
        # Only one gateway gets the event; the others see the new boot id in their sweeps.
        body = event.body
        assert isinstance(body, InstanceStarted)
        if body.boot_id:
            await self.liveness.check_agent(body.agent_id)

    async def instance_terminated(self, event: Event, tx: Pipeline) -> None:
        body = event.body
        assert isinstance(body, InstanceTerminated)
        log.info(
            "agent %s terminated (%s), %d kernel(s) left running",
            body.agent_id,
            body.reason,
            len(body.kept),
        )
        await self.liveness.settle_agent(
            body.agent_id, TerminationReason.AGENT_TERMINATED, keep=frozenset(body.kept)
        )


async def consume(consumer: EventConsumer) -> None:
    """Run ``consumer`` until cancelled, recreating its group if Redis lost it."""
    me = asyncio.current_task()
    while True:
        try:
            await consumer.ensure_group()
            while True:
                await consumer.claim_stale()
                for _ in range(8):
                    # redis-py can swallow a cancellation landing in a blocking read.
                    if me is not None and me.cancelling():
                        raise asyncio.CancelledError
                    await consumer.poll()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if me is not None and me.cancelling():
                raise asyncio.CancelledError from None
            log.warning("event consumer: %s; recreating the group", e)
            await asyncio.sleep(0.5)
