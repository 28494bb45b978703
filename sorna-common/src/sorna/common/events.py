"""The agent event stream on Redis (PROTOCOLS.md section 2).

Agents publish with :class:`EventPublisher` (``XADD``). Gateways read with one consumer group
through :class:`EventConsumer`: each entry is handled, then acknowledged; entries left pending by
a dead consumer are claimed after ``claim_idle_ms``. Handling is exactly-once for the Redis
effects a handler queues on the transaction it is given: the handler's commands, a "handled"
marker and the ``XACK`` commit together, watched on the marker, so an entry delivered twice
(re-read, claimed, or raced by two consumers) changes Redis only once. Effects outside Redis
should be keyed by :attr:`Event.entry_id` to stay idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError, WatchError

from sorna.common import codec
from sorna.common.errors import CodecError, EventStreamError
from sorna.common.keys import RedisKeys
from sorna.common.messages import EVENT_NAMES, EVENT_TYPES
from sorna.common.types import EventName
from sorna.common.wire import WireMessage

log = logging.getLogger(__name__)

DEFAULT_GROUP = "gateways"


@dataclass(frozen=True, slots=True)
class Event:
    """One stream entry, decoded."""

    entry_id: str
    name: EventName
    body: WireMessage


#: A handler queues its Redis effects on the transaction (already in MULTI mode) it is given.
EventHandler = Callable[[Event, Pipeline], Awaitable[None]]


class EventPublisher:
    """Publish agent events on the stream."""

    def __init__(self, *, redis: Redis, keys: RedisKeys, maxlen: int = 100_000) -> None:
        self._redis = redis
        self._keys = keys
        self._maxlen = maxlen

    async def publish(self, event: WireMessage) -> str:
        """Append ``event`` to the stream and return its entry id."""
        name = EVENT_NAMES.get(type(event))
        if name is None:
            raise EventStreamError(f"{type(event).__name__} is not an event type")
        fields: dict[Any, Any] = {"name": str(name), "body": codec.packb(event.to_wire())}
        entry_id = await self._redis.xadd(
            self._keys.events(), fields, maxlen=self._maxlen, approximate=True
        )
        return _text(entry_id)


class EventConsumer:
    """Consume the stream as one member of a consumer group."""

    def __init__(
        self,
        *,
        redis: Redis,
        keys: RedisKeys,
        consumer: str,
        handlers: Mapping[EventName, EventHandler],
        group: str = DEFAULT_GROUP,
        block_ms: int = 1000,
        batch: int = 64,
        claim_idle_ms: int = 15_000,
        handled_ttl_s: int = 86_400,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._stream = keys.events()
        self._consumer = consumer
        self._handlers = dict(handlers)
        self._group = group
        self._block_ms = block_ms
        self._batch = batch
        self._claim_idle_ms = claim_idle_ms
        self._handled_ttl_s = handled_ttl_s

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if they do not exist yet."""
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise EventStreamError(f"cannot create consumer group: {e}") from e

    async def poll(self, block_ms: int | None = None) -> int:
        """Read and handle new entries (blocking up to ``block_ms``); return how many."""
        reply: Any = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            {self._stream: ">"},
            count=self._batch,
            block=self._block_ms if block_ms is None else block_ms,
        )
        entries: list[tuple[Any, Any]] = [
            entry for _stream, stream_entries in (reply or ()) for entry in stream_entries
        ]
        for entry_id, fields in entries:
            await self._handle_entry(_text(entry_id), fields)
        return len(entries)

    async def claim_stale(self) -> int:
        """Claim and handle entries another consumer left pending too long; return how many."""
        handled = 0
        start = "0-0"
        while True:
            reply = await self._redis.xautoclaim(
                self._stream,
                self._group,
                self._consumer,
                min_idle_time=self._claim_idle_ms,
                start_id=start,
                count=self._batch,
            )
            start, entries = _text(reply[0]), reply[1]
            for entry_id, fields in entries:
                if fields is None:  # deleted from the stream while pending
                    continue
                await self._handle_entry(_text(entry_id), fields)
                handled += 1
            if start == "0-0":
                return handled

    async def run(self) -> None:
        """Consume until cancelled: claim stale entries now and then, poll for new ones."""
        await self.ensure_group()
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        next_claim = 0.0
        while True:
            # redis-py can swallow a cancellation that lands inside a blocking read; honour it
            # here so that cancelling the consumer always ends it within one block period.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            try:
                if loop.time() >= next_claim:
                    await self.claim_stale()
                    next_claim = loop.time() + self._claim_idle_ms / 2000
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError from None
                log.exception("event consumer %s: stream read failed; retrying", self._consumer)
                await asyncio.sleep(1.0)

    async def handle(self, event: Event) -> bool:
        """Handle one decoded event exactly once; return False if it was already handled."""
        handler = self._handlers.get(event.name)
        marker = self._keys.event_handled(self._group, event.entry_id)
        async with self._redis.pipeline(transaction=True) as tx:
            await tx.watch(marker)
            if await tx.exists(marker):
                await tx.reset()  # type: ignore[no-untyped-call]
                await self._redis.xack(self._stream, self._group, event.entry_id)
                return False
            tx.multi()  # type: ignore[no-untyped-call]
            if handler is not None:
                await handler(event, tx)
            tx.set(marker, b"1", ex=self._handled_ttl_s)
            tx.xack(self._stream, self._group, event.entry_id)
            try:
                await tx.execute()
            except WatchError:
                # Another consumer handled it between our check and our commit.
                await self._redis.xack(self._stream, self._group, event.entry_id)
                return False
        return handler is not None

    async def _handle_entry(self, entry_id: str, fields: Mapping[Any, Any]) -> None:
        try:
            event = decode_entry(entry_id, fields)
        except CodecError as e:
            log.warning("dropping malformed event %s: %s", entry_id, e)
            await self._redis.xack(self._stream, self._group, entry_id)
            return
        if event.name not in self._handlers:
            log.debug("no handler for %s (%s); acknowledging", event.name, entry_id)
        try:
            await self.handle(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Left pending: another consumer (or this one) claims it after claim_idle_ms.
            log.exception("handling event %s %s failed; left pending", event.name, entry_id)


def decode_entry(entry_id: str, fields: Mapping[Any, Any]) -> Event:
    """Decode one raw stream entry into an :class:`Event`."""
    plain = {_text(k): v for k, v in fields.items()}
    try:
        name = EventName(_text(plain["name"]))
        body_cls: type[WireMessage] = EVENT_TYPES[name]
        body = body_cls.from_wire(codec.unpackb(plain["body"]))
    except (KeyError, ValueError) as e:
        raise CodecError(f"bad event entry {entry_id}: {e}") from e
    return Event(entry_id=entry_id, name=name, body=body)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
