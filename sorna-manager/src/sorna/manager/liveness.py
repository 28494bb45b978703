"""The liveness sweep: notice lost agents, settle their kernels, take them back on return.

Every gateway runs the sweep. The one that sets an agent's ``lost`` marker settles the agent's
kernels (books, concurrency, routing); every gateway drops its RPC connection to a lost agent,
which fails the calls waiting on it (503 ``instance-not-available``). An agent whose alive key
reappears while it is marked lost is ``reset`` and taken back at zero load.

An agent restarted faster than its alive key expires is told by its boot id: every gateway
that sees an agent's boot id change fails its own calls in flight to the old process at once
(503 ``agent-restarted``: their replies will never come), and the one gateway that records the
change settles the kernels the old process ran that the new one does not report.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from sorna.common.errors import RPCPeerRestarted
from sorna.common.ids import AgentId
from sorna.common.keys import AgentField
from sorna.common.messages import Empty
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
        # Agent -> (boot id, address) last seen by this gateway.
        self._boots: dict[AgentId, tuple[str, str]] = {}

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
            await self.check_boot(info)
            if not info.alive or info.lost:
                await self.check(info)
        await self.registry.refresh_index(agents)

    async def check(self, info: AgentInfo) -> None:
        addr = info.fields.get(AgentField.ADDR, "")
        gone = info.fields.get(AgentField.STATUS) == AgentStatus.TERMINATED
        if not info.alive and not info.lost:
            if await self.registry.mark_lost(info.agent_id):
                log.warning("agent %s (%s) lost: no heartbeat", info.agent_id, addr)
                await self.settle_agent(info.agent_id, TerminationReason.AGENT_LOST)
            info = await self.registry.agent(info.agent_id) or info
        if (not info.alive or info.lost) and addr:
            await self.kernels.rpc.discard(addr)
        if info.alive and info.lost and not gone:
            await self.take_back(info.agent_id, addr)

    async def check_agent(self, agent_id: AgentId) -> None:
        """Check one agent's boot id now (e.g. on its ``instance_started`` event)."""
        info = await self.registry.agent(agent_id)
        if info is not None:
            await self.check_boot(info)

    async def check_boot(self, info: AgentInfo) -> None:
        """Notice a new process of the agent: fail calls to the old one, settle what it lost."""
        boot, addr = info.boot_id, info.fields.get(AgentField.ADDR, "")
        if not boot:
            return
        seen = self._boots.get(info.agent_id)
        self._boots[info.agent_id] = (boot, addr)
        if seen is not None and seen[0] != boot:
            error = RPCPeerRestarted(
                f"agent {info.agent_id} restarted (boot {seen[0][:8]} -> {boot[:8]})"
                " while the call was in flight"
            )
            failed = 0
            for old in {seen[1], addr} - {""}:
                failed += await self.kernels.rpc.discard(old, error)
            log.warning(
                "agent %s (%s) restarted: %d call(s) in flight failed", info.agent_id, addr, failed
            )
        if seen is not None and seen[0] == boot:
            return
        # The first gateway to record the new boot settles what the old process lost.
        previous = await self.registry.advance_boot(info.agent_id, boot)
        if previous:
            await self.settle_lost(info)

    async def settle_lost(self, info: AgentInfo) -> int:
        """Settle the kernels a restarted agent's old process ran and the new one did not keep.

        Those the new process reports (re-adopted containers) stay; so do kernels created
        after it started (they are not in a heartbeat yet).
        """
        try:
            started = datetime.datetime.fromtimestamp(
                float(info.fields.get(AgentField.STARTED_AT) or 0), datetime.UTC
            )
        except (ValueError, OverflowError):
            return 0
        kept = info.kernel_ids
        n = 0
        for kernel_id, created in await self.kernels.live_kernels_of_agent_since(info.agent_id):
            if kernel_id in kept or created >= started:
                continue
            if await self.kernels.settle(kernel_id, TerminationReason.AGENT_RESTARTED):
                n += 1
        log.info("agent %s restarted: %d kernel(s) lost, %d kept", info.agent_id, n, len(kept))
        return n

    async def take_back(self, agent_id: AgentId, addr: str) -> None:
        if not await self.registry.take_back(agent_id):
            return
        log.info("agent %s (%s) is back; resetting it", agent_id, addr)
        await self.kernels.rpc.discard(addr)
        try:
            await self.kernels.agent(addr).reset(Empty(), timeout=30.0)
        except Exception as e:
            log.warning("reset of returning agent %s failed: %s", agent_id, e)
        await self.settle_agent(agent_id, TerminationReason.AGENT_RESET)

    async def settle_agent(
        self, agent_id: AgentId, reason: str, keep: frozenset[str] = frozenset()
    ) -> int:
        """Settle every kernel the books place on ``agent_id`` but those in ``keep``.

        Return how many ended now.
        """
        n = 0
        for kernel_id in await self.kernels.live_kernels_of_agent(agent_id):
            if kernel_id in keep:
                continue
            if await self.kernels.settle(kernel_id, reason):
                n += 1
        if n:
            log.info("settled %d kernels of agent %s (%s)", n, agent_id, reason)
        return n
