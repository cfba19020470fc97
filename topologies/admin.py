"""Kafka housekeeping for the streaming commands: publishing an event file, and the admin
commands of :mod:`topologies.kafka_admin` (topics, consumer lag) under the names callers use.

- :func:`produce_records` publishes the records of an event file to the input topics of
  contract §1.3, keyed there, with Kafka's default partitioner. Values are the lines as read,
  unchanged: the workers validate them. A record that cannot be routed (no JSON object, no or
  an unknown ``type``, no string key) goes to ``<prefix>.deadletter`` with the reason. It stays
  on aiokafka: its throughput was measured and tuned there (see produce_records), and it is not
  an admin command.
- :func:`ensure_topics`, :func:`delete_topics`, :func:`consumer_lag` and :func:`group_members`
  are the kafka-python commands of :mod:`topologies.kafka_admin` as coroutines, for callers on an
  event loop (the workers' replay check, ``tuike replay``); the ``*_sync`` names are the plain
  commands, for the command line.

Each takes where Kafka is as a :class:`~topologies.kafka_access.KafkaAccess` (a bare
``HOST:PORT`` is PLAINTEXT). An unreachable broker is a :class:`BrokerUnreachable`, a broker that
refuses the credentials or whose certificate is not trusted an :class:`AccessRefused`; both say
what to do.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, Iterable, NamedTuple, ParamSpec, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from schemas.dead_letter import DeadLetter
from schemas.records import Record
from schemas.routes import admit, reason_class, topic_and_key

from topologies import kafka_admin
from topologies.codec import encode_dead_letter, origin_headers
from topologies.kafka_access import DEFAULT_BROKER, KafkaAccess, started  # DEFAULT_BROKER: the benchmarks read it here
from topologies.kafka_admin import TopicLayoutError, TopicSpec  # noqa: F401 (TopicLayoutError: callers import it here)
from topologies.settings import StreamSettings

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
Kafka = KafkaAccess | str  # where Kafka is: an access, or a bare HOST:PORT (PLAINTEXT)

# Producer settings, measured with `python -m benchmarks.produce_throughput` (see produce_records).
LINGER_MS = 20
MAX_BATCH_BYTES = 512 * 1024  # below the broker's message.max.bytes (1 MiB) even uncompressed
# None: lz4 ran at the same rate here (the producer is bound by aiokafka's per-message Python
# cost) and would add a dependency (aiokafka 0.14 compresses with cramjam, not the lz4 package).
COMPRESSION: str | None = None
CHUNK = 10_000  # delivery futures awaited together; at most four chunks are unconfirmed at once
PROGRESS_EVERY = 2_000  # records between two calls of the progress callback


class ProduceError(Exception):
    """The broker refused or lost a message (not the input's fault)."""


# --- clients (aiokafka, for the control topic and replay: topologies/generation.py) ------------


async def _admin(kafka: Kafka) -> AIOKafkaAdminClient:
    kafka = KafkaAccess.of(kafka)
    return await started(AIOKafkaAdminClient(**kafka.client(request_timeout_ms=30_000)), kafka)


async def _consumer(kafka: Kafka, **kw) -> AIOKafkaConsumer:
    kafka = KafkaAccess.of(kafka)
    return await started(AIOKafkaConsumer(**kafka.client(enable_auto_commit=False, **kw)), kafka)


async def _describe_partitions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, list[int]]:
    if not names:
        return {}
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"])
            for t in await admin.describe_topics(names) if t["error_code"] == 0}


def input_topic_specs(settings: StreamSettings) -> list[TopicSpec]:
    """The four input topics and the dead letters (§1.3), ``settings.partitions`` each, and the
    control topic (one compacted partition: the current generation)."""
    n = settings.partitions
    return ([TopicSpec(t, n) for t in settings.inputs] + [TopicSpec(settings.deadletter, n)]
            + [TopicSpec(settings.control, 1, compacted=True)])


# --- produce ---------------------------------------------------------------------------------


@dataclass
class ProduceStats:
    records: int = 0
    published: Counter = field(default_factory=Counter)  # topic -> messages (dead letters included)
    dead_lettered: int = 0
    dead_reasons: Counter = field(default_factory=Counter)  # reason class -> count
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    # what tuike.progress.Progress reads
    @property
    def read(self) -> int:
        return self.records

    @property
    def rejected(self) -> int:
        return self.dead_lettered


class Outgoing(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None
    dead: DeadLetter | None  # the record's dead letter, when it goes to the dead-letter topic


def outgoing(rec: Record, settings: StreamSettings) -> Outgoing:
    """How a record is published: to its input topic (contract §1.3), keyed there, its value the
    record exactly as read and its origin in the headers (the workers admit it); or, when it
    cannot be routed, as its dead letter, keyed by the original key."""
    target = topic_and_key(rec.obj)
    if target is not None:
        return Outgoing(settings.topic(target[0]), target[1].encode(), rec.raw.encode(), origin_headers(rec), None)
    dead = admit(rec)
    assert isinstance(dead, DeadLetter), "a record with no route is never a valid event"
    return Outgoing(settings.deadletter, dead.key.encode() if dead.key else None, encode_dead_letter(dead), None, dead)


async def _settle(futures: list[asyncio.Future]) -> None:
    """Wait for these deliveries; raise on the first failed one. (Cheaper than gather: most are
    done by the time a chunk is settled.)"""
    try:
        for f in futures:
            if f.done():
                exc = f.exception()
                if exc is not None:
                    raise exc
            else:
                await f
    except KafkaError as exc:
        raise ProduceError(f"the broker did not take a message: {exc} (producing the file again is safe: the "
                           "workers ignore an event_id they have seen)") from None


async def produce_records(kafka: Kafka, settings: StreamSettings, records: Iterable[Record],
                          progress: Callable[..., None] | None = None, *,
                          compression: str | None = COMPRESSION, linger_ms: int = LINGER_MS,
                          max_batch_size: int = MAX_BATCH_BYTES) -> ProduceStats:
    """Publish every record to its input topic (contract §1.3), keyed by its id (UTF-8 bytes),
    placed by Kafka's default partitioner (murmur2, = ``partitioning.partition_of``); the value is
    the record's JSON exactly as read. An unroutable record goes to ``settings.deadletter`` as an
    encoded :class:`DeadLetter` (keyed by whatever key it has). The topics must exist
    (:func:`ensure_topics`). Delivery is acks=all and idempotent; at most ``4 * CHUNK``
    messages are unconfirmed at once, so memory stays flat on any file size. ``progress`` is
    called with the stats every ``PROGRESS_EVERY`` records (a :class:`tuike.progress.Progress`).

    Measured (``python -m benchmarks.produce_throughput --events 200000``: generated events of ~290 bytes,
    4 partitions, the local broker on the same 2-core machine, which other jobs shared, load
    average 1-5): 200,000 events in 4-7 s, 28,000-53,000 events/s, typically about 38,000. The
    whole ``tuike produce`` of 1M generated events: 31,000 events/s, peak RSS 128 MB. lz4 ran at
    the rate of no compression (alternating runs: 45.7k vs 44.4k, 35.3k vs 36.9k events/s) while
    sending about 17% of the bytes; linger 5-50 ms, batches of 64 KiB-1 MiB and chunks of
    2k-50k made no difference beyond the noise. The cost is aiokafka's per-message Python path
    (send, the murmur2 partitioner, the accumulator), not bytes or the broker.
    """
    stats = ProduceStats()
    kafka = KafkaAccess.of(kafka)
    producer = await started(AIOKafkaProducer(**kafka.client(
        acks="all", enable_idempotence=True, linger_ms=linger_ms, max_batch_size=max_batch_size,
        compression_type=compression, request_timeout_ms=30_000)), kafka)
    t0 = time.perf_counter()
    pending: deque[list[asyncio.Future]] = deque()
    chunk: list[asyncio.Future] = []
    published = stats.published
    send = producer.send
    try:
        n = 0
        for rec in records:
            n += 1
            out = outgoing(rec, settings)
            fut = await send(out.topic, out.value, key=out.key, headers=out.headers)
            if out.dead is not None:
                stats.dead_lettered += 1
                stats.dead_reasons[reason_class(out.dead.reason)] += 1
            published[out.topic] += 1
            chunk.append(fut)
            if len(chunk) >= CHUNK:
                pending.append(chunk)
                chunk = []
                if len(pending) > 2:
                    await _settle(pending.popleft())
            if progress is not None and n % PROGRESS_EVERY == 0:
                stats.records = n
                progress(stats)
        stats.records = n
        await producer.flush()
        while pending:
            await _settle(pending.popleft())
        await _settle(chunk)
    finally:
        await producer.stop()
    stats.seconds = time.perf_counter() - t0
    return stats


# --- the admin commands on an event loop -----------------------------------------------------


def _off_the_loop(command: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A command of :mod:`topologies.kafka_admin` for a caller on an event loop (a worker's timer,
    replay, tests): run in a thread, so the loop goes on meanwhile."""
    @functools.wraps(command)
    async def run(*args: P.args, **kw: P.kwargs) -> T:
        return await asyncio.to_thread(command, *args, **kw)
    return run


ensure_topics = _off_the_loop(kafka_admin.ensure_topics)
delete_topics = _off_the_loop(kafka_admin.delete_topics)
consumer_lag = _off_the_loop(kafka_admin.consumer_lag)
group_members = _off_the_loop(kafka_admin.group_members)


# --- for the command line: the admin commands are plain functions; the producer runs a loop ----

ensure_topics_sync = kafka_admin.ensure_topics
existing_topics_sync = kafka_admin.existing_topics
consumer_lag_sync = kafka_admin.consumer_lag
pipeline_lag_sync = kafka_admin.pipeline_lag
group_members_sync = kafka_admin.group_members


def produce_records_sync(kafka: Kafka, settings: StreamSettings, records: Iterable[Record],
                         progress: Callable[..., None] | None = None, **kw) -> ProduceStats:
    return asyncio.run(produce_records(kafka, settings, records, progress, **kw))
