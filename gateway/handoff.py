"""Where the gateway hands canonical events on — and only then answers the platform.

A webhook is acknowledged after its events are durable: in embedded mode once the engine has
run them and the ledger and the state are flushed; in streaming mode once Kafka has acked them
(acks=all, idempotent producer). A crash before that answer makes the platform deliver again,
and the events' deterministic ids make the second delivery count once.

Embedded mode group-commits: requests that arrive while a flush is running wait for the next
one, which takes them all (one ledger insert and one state write for many requests).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from schemas.dead_letter import DeadLetter
from schemas.records import records_of
from topologies.embedded import EmbeddedPipeline

MAX_GROUP = 500  # requests flushed together at most


@dataclass
class Delivery:
    """What one request hands on: events (decoded JSON objects) and refusals to record."""
    source: str  # "gateway:shopify", …
    position: str  # the request's id, for finding the original
    events: list[dict] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


class Handoff(Protocol):
    mode: str

    async def hand_on(self, delivery: Delivery) -> None: ...

    async def close(self) -> None: ...


class EmbeddedHandoff:
    """Into the embedded pipeline (RocksDB state, chDB or server ledger), one thread, group commit."""

    mode = "embedded"

    def __init__(self, pipeline: EmbeddedPipeline):
        self.pipeline = pipeline
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="pipeline")
        self.queue: asyncio.Queue[tuple[Delivery, asyncio.Future]] | None = None
        self.task: asyncio.Task | None = None

    async def hand_on(self, delivery: Delivery) -> None:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._commit_loop())
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((delivery, done))
        await done

    async def _commit_loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            group = [await self.queue.get()]
            while not self.queue.empty() and len(group) < MAX_GROUP:
                group.append(self.queue.get_nowait())
            try:
                await loop.run_in_executor(self.thread, self._apply, [d for d, _ in group])
            except Exception as exc:  # nothing of the group is acknowledged: the platforms retry
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in group:
                if not done.done():
                    done.set_result(None)

    def _apply(self, deliveries: list[Delivery]) -> None:
        try:
            for delivery in deliveries:
                for dead in delivery.dead:
                    self.pipeline.reject(dead)
                for rec in records_of(delivery.events, delivery.source, delivery.position):
                    self.pipeline.feed(rec)
            self.pipeline.flush()
        except BaseException:
            self.pipeline.discard()  # the platforms retry; the state must not already hold these events
            raise

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await asyncio.get_running_loop().run_in_executor(self.thread, self.pipeline.close)
        self.thread.shutdown()


class KafkaHandoff:
    """Onto the input topics of contract §1.3, keyed as it says; refusals onto the dead letters."""

    mode = "kafka"

    def __init__(self, broker: str, settings):
        self.broker = broker
        self.settings = settings
        self.producer = None
        self._starting = asyncio.Lock()

    async def hand_on(self, delivery: Delivery) -> None:
        from aiokafka import AIOKafkaProducer

        from topologies.admin import outgoing
        from topologies.codec import encode_dead_letter

        async with self._starting:  # one producer, kept only once it started (a failed start is retried)
            if self.producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self.broker, acks="all", enable_idempotence=True,
                                            linger_ms=2)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self.producer = producer
        sends = []
        for rec in records_of(delivery.events, delivery.source, delivery.position):
            out = outgoing(rec, self.settings)
            sends.append(await self.producer.send(out.topic, out.value, key=out.key, headers=out.headers))
        for d in delivery.dead:
            sends.append(await self.producer.send(self.settings.deadletter, encode_dead_letter(d),
                                                  key=d.key.encode() if d.key else None))
        await asyncio.gather(*sends)

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
