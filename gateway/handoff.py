"""Where the gateway hands canonical events on — and only then answers the platform.

A webhook is acknowledged once its events are durable: in embedded mode once its delivery is
appended to the local inbox and fsynced (gateway/inbox.py); in streaming mode once Kafka has
acked them (acks=all, idempotent producer). A crash before that answer makes the platform deliver
again, and the events' deterministic ids make the second delivery count once.

Embedded mode, two steps, each batched: the requests that arrive while an fsync runs are appended
together by the next one (group fsync); behind them a consumer feeds the inbox to the engine in
order and flushes ledger and state in batches, the inbox position it reached written with the
state (one atomic RocksDB write). ``tuike serve`` first replays the inbox from that position.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Protocol

import orjson

from schemas.dead_letter import DeadLetter
from schemas.records import records_of
from topologies.embedded import EmbeddedPipeline
from topologies.kafka_access import KafkaAccess, started
from topologies.state_cache import META

from gateway.inbox import Inbox

log = logging.getLogger("tuike.gateway")
APPLIED = "gateway_inbox"  # META key: the last inbox seq whose delivery the ledger and the state hold
MAX_APPEND = 2000  # requests appended (and fsynced) together at most
MAX_APPLY = 5000  # deliveries fed to the engine per ledger flush at most
FEED_SLICE = 8  # deliveries fed to the engine between two turns of the event loop
MAX_BACKLOG = 50_000  # acknowledged deliveries not yet applied: above it new requests wait
RETRY_SECONDS = (0.5, 1, 2, 5, 10)  # a failed flush is retried (the inbox still holds the deliveries)


@dataclass
class Delivery:
    """What one request hands on: events (decoded JSON objects) and refusals to record."""
    source: str  # "gateway:shopify", …
    position: str  # the request's id, for finding the original
    events: list[dict] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def encode(self) -> bytes:
        """One inbox record (JSON)."""
        return orjson.dumps({"s": self.source, "p": self.position, "e": self.events,
                             "d": [astuple(d) for d in self.dead]})

    @classmethod
    def decode(cls, payload: bytes) -> "Delivery":
        obj = orjson.loads(payload)
        return cls(obj["s"], obj["p"], obj["e"], [DeadLetter(*d) for d in obj["d"]])


def _warm_up() -> None:
    """Import now what the first ledger insert would import while serving (pyarrow's decimals
    pull in pandas: ~2 s holding the GIL, every request waiting)."""
    from decimal import Decimal

    import pyarrow as pa

    pa.array([Decimal("0.00")], pa.decimal128(18, 2))


class Handoff(Protocol):
    mode: str

    async def hand_on(self, delivery: Delivery) -> None: ...

    async def close(self) -> None: ...


class EmbeddedHandoff:
    """Into the embedded pipeline (RocksDB state, chDB or server ledger) through the inbox.

    ``thread`` is the pipeline's one thread (the dashboards read the ledger on it between
    batches). Opening it replays what the inbox holds beyond the state's position."""

    mode = "embedded"

    def __init__(self, pipeline: EmbeddedPipeline, inbox_dir: Path | None = None):
        self.pipeline = pipeline
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="pipeline")
        self.fsync_thread = ThreadPoolExecutor(1, thread_name_prefix="inbox")
        self.applied: int = pipeline.cache.get(META, APPLIED) or 0
        self.inbox = Inbox(inbox_dir or pipeline.checkpoint.data_dir / "inbox", applied=self.applied)
        self.appended = self.inbox.next_seq - 1
        self.replayed = self._replay()
        _warm_up()
        self._pending: list[tuple[bytes, Delivery, asyncio.Future]] = []
        self._to_apply: deque[tuple[int, Delivery]] = deque()
        self._progress = threading.Condition()  # wait_applied() waits on it
        self._tasks: list[asyncio.Task] = []
        self._wake: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._room: asyncio.Event | None = None

    def _replay(self) -> int:
        """Apply the deliveries acknowledged but not yet in the state (a crash, a kill): how many."""
        batch: list[Delivery] = []
        count = 0
        for seq, payload in self.inbox.replay(self.applied):
            batch.append(Delivery.decode(payload))
            if len(batch) >= MAX_APPLY:
                self._apply(batch, seq)
                count += len(batch)
                batch = []
            last = seq
        if batch:
            self._apply(batch, last)
            count += len(batch)
        self.inbox.release(self.applied)
        return count

    def _apply(self, deliveries: list[Delivery], last_seq: int) -> None:
        """Feed the deliveries, then one flush: ledger, then state with the inbox position."""
        try:
            for delivery in deliveries:
                self._feed(delivery)
            self._flush(last_seq)
        except BaseException:
            self.pipeline.discard()  # the state must not hold events whose rows are not in the ledger
            raise

    def _feed(self, delivery: Delivery) -> None:
        for dead in delivery.dead:
            self.pipeline.reject(dead)
        for rec in records_of(delivery.events, delivery.source, delivery.position):
            self.pipeline.feed(rec)

    def _flush(self, last_seq: int) -> None:
        """The fed deliveries up to ``last_seq`` into the ledger, then the state with that position."""
        self.pipeline.cache.put(META, APPLIED, last_seq)
        self.pipeline.flush()
        self.applied = last_seq
        self.inbox.release(last_seq)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake, self._ready, self._room = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._room.set()
        self._tasks = [loop.create_task(self._append_loop()), loop.create_task(self._apply_loop())]

    async def hand_on(self, delivery: Delivery) -> None:
        """Return once the delivery is in the inbox on disk (fsynced)."""
        if not self._tasks:
            self._start()
        assert self._wake is not None and self._room is not None
        while not self._room.is_set():
            await self._room.wait()
        done = asyncio.get_running_loop().create_future()
        self._pending.append((delivery.encode(), delivery, done))
        self._wake.set()
        await done

    async def _append_loop(self) -> None:
        """Group fsync: everything pending goes into one append (one fdatasync)."""
        assert self._wake is not None and self._ready is not None and self._room is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                group, self._pending = self._pending[:MAX_APPEND], self._pending[MAX_APPEND:]
                try:
                    last = await loop.run_in_executor(self.fsync_thread, self.inbox.append, [p for p, _, _ in group])
                except Exception as exc:  # not acknowledged: the platforms retry
                    log.error("the inbox could not take %d requests: %s", len(group), exc)
                    for _, _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                first = last - len(group) + 1
                for i, (_, delivery, done) in enumerate(group):
                    self._to_apply.append((first + i, delivery))
                    if not done.done():
                        done.set_result(None)
                self.appended = last
                self._ready.set()
                if len(self._to_apply) > MAX_BACKLOG:
                    self._room.clear()

    async def _apply_loop(self) -> None:
        """Feed the inbox to the pipeline in order, a batch per flush; a failed flush is retried.

        The engine runs on the event loop's thread, a slice of deliveries at a time with the loop
        let through in between; only the flush (chDB, RocksDB: mostly C) runs on the pipeline
        thread. Feeding from that thread instead made every request pay for the GIL: each time the
        loop released it (a socket write, an HMAC over a large body) it waited up to a switch
        interval for the engine to hand it back (10,000 webhooks on the loaded 2-core machine:
        76/s under py-spy with the engine on the pipeline thread; 206-234/s sliced on the loop)."""
        assert self._ready is not None and self._room is not None
        loop = asyncio.get_running_loop()
        pipeline = self.pipeline
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._to_apply:
                batch = list(itertools.islice(self._to_apply, MAX_APPLY))
                last_seq = batch[-1][0]
                for attempt in itertools.count():
                    try:
                        for i, (_, delivery) in enumerate(batch):
                            self._feed(delivery)
                            if i % FEED_SLICE == FEED_SLICE - 1:
                                await asyncio.sleep(0)
                        await loop.run_in_executor(self.thread, self._flush, last_seq)
                        break
                    except Exception as exc:  # acknowledged already: kept in the inbox, applied later
                        pipeline.discard()  # the state must not hold events whose rows are not in the ledger
                        wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                        log.error("applying inbox up to %d failed (%s); retrying in %s s", last_seq, exc, wait)
                        await asyncio.sleep(wait)
                for _ in batch:
                    self._to_apply.popleft()
                with self._progress:
                    self._progress.notify_all()
                if len(self._to_apply) <= MAX_BACKLOG:
                    self._room.set()

    @property
    def backlog(self) -> int:
        """Requests acknowledged (in the inbox) whose events are not yet in the ledger."""
        return len(self._pending) + len(self._to_apply)

    def wait_applied(self, timeout: float = 60) -> bool:
        """Block (from another thread) until every acknowledged delivery is in the ledger."""
        with self._progress:
            return self._progress.wait_for(lambda: self.applied >= self.appended, timeout)

    async def drain(self, timeout: float = 30) -> bool:
        """Wait until what was acknowledged is applied (a clean stop leaves an empty backlog)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._pending or self._to_apply) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not (self._pending or self._to_apply)

    async def close(self) -> None:
        if self._tasks and not await self.drain():
            log.warning("stopping with %d deliveries not yet applied: the next start replays them from the inbox",
                        len(self._to_apply))
        for task in self._tasks:
            task.cancel()
        await asyncio.get_running_loop().run_in_executor(self.thread, self.pipeline.close)
        self.thread.shutdown()
        self.fsync_thread.shutdown()
        self.inbox.close()


class KafkaHandoff:
    """Onto the input topics of contract §1.3, keyed as it says; refusals onto the dead letters.

    One producer for every request: each request's messages are appended to its batches without
    waiting, and the request waits only for their acks, so concurrent requests share produce
    requests (``linger_ms``) instead of paying a broker round trip each."""

    mode = "kafka"
    LINGER_MS = 5  # a batch waits up to 5 ms for more requests' records: fewer, larger produce requests

    def __init__(self, kafka: KafkaAccess | str, settings):
        self.kafka = KafkaAccess.of(kafka)
        self.settings = settings
        self.producer = None
        self._starting = asyncio.Lock()

    async def _producer(self):
        async with self._starting:  # one producer, kept only once it started (a failed start is retried)
            if self.producer is None:
                from aiokafka import AIOKafkaProducer

                self.producer = await started(AIOKafkaProducer(**self.kafka.client(
                    acks="all", enable_idempotence=True, linger_ms=self.LINGER_MS)), self.kafka)
        return self.producer

    async def hand_on(self, delivery: Delivery) -> None:
        from topologies.admin import outgoing
        from topologies.codec import encode_dead_letter

        producer = self.producer or await self._producer()
        sends = []
        for rec in records_of(delivery.events, delivery.source, delivery.position):
            out = outgoing(rec, self.settings)
            sends.append(await producer.send(out.topic, out.value, key=out.key, headers=out.headers))
        for d in delivery.dead:
            sends.append(await producer.send(self.settings.deadletter, encode_dead_letter(d),
                                             key=d.key.encode() if d.key else None))
        for sent in sends:  # most are acked together: one produce request carries many requests' records
            await sent

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
