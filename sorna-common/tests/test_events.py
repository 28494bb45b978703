"""The event stream: publish, consume, acknowledge, claim, and exactly-once effects."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from sorna.common import codec
from sorna.common.events import Event, EventConsumer, EventPublisher
from sorna.common.ids import AgentId, KernelId
from sorna.common.keys import RedisKeys
from sorna.common.messages import KernelStarted, KernelTerminated
from sorna.common.types import EventName

KEYS = RedisKeys("sornatest")


def consumer(redis: Redis, name: str, handlers: dict, **kw: object) -> EventConsumer:
    return EventConsumer(redis=redis, keys=KEYS, consumer=name, handlers=handlers, **kw)  # type: ignore[arg-type]


async def pending(redis: Redis) -> int:
    info = await redis.xpending(KEYS.events(), "gateways")
    return int(info["pending"])


async def test_publish_consume_ack(redis: Redis) -> None:
    seen: list[Event] = []

    async def on_started(event: Event, tx: Pipeline) -> None:
        seen.append(event)
        tx.incr("sornatest:started")

    c = consumer(redis, "gw-1", {EventName.KERNEL_STARTED: on_started})
    await c.ensure_group()
    pub = EventPublisher(redis=redis, keys=KEYS)
    ids = [
        await pub.publish(KernelStarted(kernel_id=KernelId(f"k{i}"), agent_id=AgentId("i-a")))
        for i in range(3)
    ]
    assert await c.poll(block_ms=100) == 3
    assert [e.entry_id for e in seen] == ids
    assert [e.body.kernel_id for e in seen] == ["k0", "k1", "k2"]  # type: ignore[attr-defined]
    assert await redis.get("sornatest:started") == b"3"
    assert await pending(redis) == 0
    assert await c.poll(block_ms=50) == 0


async def test_killed_consumer_entry_is_claimed_by_another(redis: Redis) -> None:
    started = asyncio.Event()

    async def hang(event: Event, tx: Pipeline) -> None:
        started.set()
        await asyncio.sleep(3600)

    handled: list[str] = []

    async def record(event: Event, tx: Pipeline) -> None:
        handled.append(event.body.kernel_id)  # type: ignore[attr-defined]
        tx.rpush("sornatest:terminated", event.body.kernel_id)  # type: ignore[attr-defined]

    dying = consumer(redis, "gw-dying", {EventName.KERNEL_TERMINATED: hang})
    await dying.ensure_group()
    await EventPublisher(redis=redis, keys=KEYS).publish(
        KernelTerminated(kernel_id=KernelId("k-lost"), reason="exited")
    )
    task = asyncio.create_task(dying.poll(block_ms=100))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()  # the consumer dies before acknowledging
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending(redis) == 1

    survivor = consumer(
        redis, "gw-survivor", {EventName.KERNEL_TERMINATED: record}, claim_idle_ms=100
    )
    assert await survivor.poll(block_ms=50) == 0  # not redelivered as new
    assert await survivor.claim_stale() == 0  # not idle long enough yet
    await asyncio.sleep(0.15)
    assert await survivor.claim_stale() == 1
    assert handled == ["k-lost"]
    assert await redis.lrange("sornatest:terminated", 0, -1) == [b"k-lost"]
    assert await pending(redis) == 0


async def test_same_event_handled_twice_has_one_effect(redis: Redis) -> None:
    calls = 0

    async def count(event: Event, tx: Pipeline) -> None:
        nonlocal calls
        calls += 1
        tx.hincrby("sornatest:usage", "kernels_terminated", 1)

    a = consumer(redis, "gw-a", {EventName.KERNEL_TERMINATED: count})
    b = consumer(redis, "gw-b", {EventName.KERNEL_TERMINATED: count})
    await a.ensure_group()
    await EventPublisher(redis=redis, keys=KEYS).publish(
        KernelTerminated(kernel_id=KernelId("k1"), reason="killed", stats={"cpu_ms": 5})
    )
    assert await a.poll(block_ms=100) == 1
    entry_id = (await redis.xrange(KEYS.events()))[0][0].decode()
    event = Event(
        entry_id=entry_id,
        name=EventName.KERNEL_TERMINATED,
        body=KernelTerminated(kernel_id=KernelId("k1"), reason="killed"),
    )
    # Delivered again (re-read after a crash, claimed, or raced): no second effect.
    assert await a.handle(event) is False
    assert await b.handle(event) is False
    assert calls == 1
    assert await redis.hget("sornatest:usage", "kernels_terminated") == b"1"


async def test_concurrent_consumers_racing_on_one_entry_commit_once(redis: Redis) -> None:
    gate = asyncio.Event()

    async def slow(event: Event, tx: Pipeline) -> None:
        await gate.wait()
        tx.incr("sornatest:effects")

    a = consumer(redis, "gw-a", {EventName.KERNEL_STARTED: slow})
    b = consumer(redis, "gw-b", {EventName.KERNEL_STARTED: slow})
    await a.ensure_group()
    entry = await EventPublisher(redis=redis, keys=KEYS).publish(
        KernelStarted(kernel_id=KernelId("k9"), agent_id=AgentId("i-b"))
    )
    event = Event(
        entry_id=entry,
        name=EventName.KERNEL_STARTED,
        body=KernelStarted(kernel_id=KernelId("k9"), agent_id=AgentId("i-b")),
    )
    both = asyncio.gather(a.handle(event), b.handle(event))
    await asyncio.sleep(0.05)
    gate.set()
    results = await both
    assert sorted(results) == [False, True]
    assert await redis.get("sornatest:effects") == b"1"


async def test_failed_handler_leaves_entry_pending_for_retry(redis: Redis) -> None:
    attempts = 0

    async def flaky(event: Event, tx: Pipeline) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("database briefly unreachable")
        tx.set("sornatest:done", "yes")

    c = consumer(redis, "gw-1", {EventName.KERNEL_STARTED: flaky}, claim_idle_ms=50)
    await c.ensure_group()
    await EventPublisher(redis=redis, keys=KEYS).publish(
        KernelStarted(kernel_id=KernelId("k1"), agent_id=AgentId("i-a"))
    )
    await c.poll(block_ms=100)
    assert await pending(redis) == 1
    assert await redis.get("sornatest:done") is None
    await asyncio.sleep(0.1)
    assert await c.claim_stale() == 1
    assert await redis.get("sornatest:done") == b"yes"
    assert await pending(redis) == 0


async def test_malformed_and_unhandled_entries_are_acknowledged(redis: Redis) -> None:
    c = consumer(redis, "gw-1", {})
    await c.ensure_group()
    await redis.xadd(KEYS.events(), {"name": "kernel_started", "body": b"\xc1garbage"})
    await redis.xadd(KEYS.events(), {"name": "no_such_event", "body": codec.packb({})})
    await EventPublisher(redis=redis, keys=KEYS).publish(
        KernelStarted(kernel_id=KernelId("k1"), agent_id=AgentId("i-a"))
    )
    assert await c.poll(block_ms=100) == 3
    assert await pending(redis) == 0


async def test_run_loop_consumes_until_cancelled(redis: Redis) -> None:
    got = asyncio.Event()

    async def on_started(event: Event, tx: Pipeline) -> None:
        got.set()

    c = consumer(redis, "gw-1", {EventName.KERNEL_STARTED: on_started}, block_ms=50)
    task = asyncio.create_task(c.run())
    await asyncio.sleep(0.1)
    await EventPublisher(redis=redis, keys=KEYS).publish(
        KernelStarted(kernel_id=KernelId("k1"), agent_id=AgentId("i-a"))
    )
    await asyncio.wait_for(got.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending(redis) == 0
