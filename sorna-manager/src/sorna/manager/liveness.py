"""The liveness sweep: notice lost agents, settle their kernels, take them back on return.

Every gateway runs the sweep. The one that sets an agent's ``lost`` marker settles the agent's
kernels (books, concurrency, routing); every gateway drops its RPC connection to a lost agent,
which fails the calls waiting on it (503 ``instance-not-available``). An agent whose alive key
reappears while it is marked lost is ``reset`` and taken back at zero load.
"""

from __future__ import annotations

import asyncio
import logging

from sorna.common.ids import AgentId
from sorna.common.types import AgentStatus, TerminationReason
from sorna.manager.kernels import KernelManager
from sorna.manager.registry import AgentInfo

log = logging.getLogger(__name__)


class LivenessChecker:
    """Sweep the registry every ``interval`` seconds."""

    def __init__(self, *, kernels: KernelManager, interval: float = 1.0) -> None:
        self.kernels = kernels
        self.registry = kernels.registry
        self.interval = interval

    async def run(self) -> None:
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("liveness sweep failed (retrying): %s", e)
            await asyncio.sleep(self.interval)

    async def sweep(self) -> None:
        """Check each agent once, then refresh the schedule index."""
        agents = await self.registry.agents()
        for info in agents:
            if not info.alive or info.lost:
                await self.check(info)
        await self.registry.refresh_index(agents)

    async def check(self, info: AgentInfo) -> None:
        addr = info.fields.get("addr", "")
        gone = info.fields.get("status") == AgentStatus.TERMINATED
        if not info.alive and not info.lost:
            if await self.registry.mark_lost(info.agent_id):
                log.warning("agent %s (%s) lost: no heartbeat", info.agent_id, addr)
                await self.settle_agent(info.agent_id, TerminationReason.AGENT_LOST)
            info = await self.registry.agent(info.agent_id) or info
        if (not info.alive or info.lost) and addr:
            await self.kernels.rpc.discard(addr)
        if info.alive and info.lost and not gone:
            await self.take_back(info.agent_id, addr)

    async def take_back(self, agent_id: AgentId, addr: str) -> None:
        if not await self.registry.take_back(agent_id):
            return
        log.info("agent %s (%s) is back; resetting it", agent_id, addr)
        await self.kernels.rpc.discard(addr)
        try:
            await self.kernels.rpc.call(addr, "reset", {}, timeout=30.0)
        except Exception as e:
            log.warning("reset of returning agent %s failed: %s", agent_id, e)
        await self.settle_agent(agent_id, TerminationReason.AGENT_RESET)

    async def settle_agent(self, agent_id: AgentId, reason: str) -> int:
        """Settle every kernel the books place on ``agent_id``; return how many ended now."""
        n = 0
        for kernel_id in await self.kernels.live_kernels_of_agent(agent_id):
            if await self.kernels.settle(kernel_id, reason, {}):
                n += 1
        if n:
            log.info("settled %d kernels of agent %s (%s)", n, agent_id, reason)
        return n
