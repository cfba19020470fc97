"""Kafka housekeeping for the streaming commands: topics, publishing an event file, consumer lag.

- :func:`ensure_topics` creates missing topics and checks the partition count of existing ones
  (every tuike topic has ``kafka.partitions`` partitions: co-partitioning, see
  ``partitioning.py``); a topic with another count is a :class:`TopicLayoutError`.
- :func:`produce_records` publishes the records of an event file to the input topics of
  contract §1.3, keyed there, with Kafka's default partitioner. Values are the lines as read,
  unchanged: the workers validate them. A record that cannot be routed (no JSON object, no or
  an unknown ``type``, no string key) goes to ``<prefix>.deadletter`` with the reason.
- :func:`consumer_lag` and :func:`group_members` read a consumer group's state (``tuike lag``,
  and ``tuike replay``'s "the workers must be stopped").

Every entry point is a coroutine; the ``*_sync`` wrappers run one with :func:`asyncio.run` for
the command line. Each takes where Kafka is as a :class:`~topologies.kafka_access.KafkaAccess`
(a bare ``HOST:PORT`` is PLAINTEXT). An unreachable broker is a :class:`BrokerUnreachable`, a
broker that refuses the credentials or whose certificate is not trusted an :class:`AccessRefused`;
both say what to do.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from schemas.dead_letter import DeadLetter
from schemas.records import Record
from schemas.routes import admit, reason_class, topic_and_key

from topologies.codec import encode_dead_letter, origin_headers
from topologies.kafka_access import DEFAULT_BROKER, KafkaAccess, started  # DEFAULT_BROKER: the benchmarks read it here
from topologies.settings import STAGES, StreamSettings

log = logging.getLogger(__name__)
Kafka = KafkaAccess | str  # where Kafka is: an access, or a bare HOST:PORT (PLAINTEXT)

# Producer settings, measured with `python -m benchmarks.produce_throughput` (see produce_records).
LINGER_MS = 20
MAX_BATCH_BYTES = 512 * 1024  # below the broker's message.max.bytes (1 MiB) even uncompressed
# None: lz4 ran at the same rate here (the producer is bound by aiokafka's per-message Python
# cost) and would add a dependency (aiokafka 0.14 compresses with cramjam, not the lz4 package).
COMPRESSION: str | None = None
CHUNK = 10_000  # delivery futures awaited together; at most four chunks are unconfirmed at once
PROGRESS_EVERY = 2_000  # records between two calls of the progress callback


class TopicLayoutError(Exception):
    """An existing topic has another partition count (or cleanup policy) than tuike expects."""


class ProduceError(Exception):
    """The broker refused or lost a message (not the input's fault)."""


class TopicSpec(NamedTuple):
    name: str
    partitions: int
    compacted: bool = False
    configs: dict[str, str] | None = None  # more topic configs, for a topic created here


# --- clients ---------------------------------------------------------------------------------


async def _admin(kafka: Kafka) -> AIOKafkaAdminClient:
    kafka = KafkaAccess.of(kafka)
    return await started(AIOKafkaAdminClient(**kafka.client(request_timeout_ms=30_000)), kafka)


async def _consumer(kafka: Kafka, **kw) -> AIOKafkaConsumer:
    kafka = KafkaAccess.of(kafka)
    return await started(AIOKafkaConsumer(**kafka.client(enable_auto_commit=False, **kw)), kafka)


# --- topics ----------------------------------------------------------------------------------


def input_topic_specs(settings: StreamSettings) -> list[TopicSpec]:
    """The four input topics and the dead letters (§1.3), ``settings.partitions`` each, and the
    control topic (one compacted partition: the current generation)."""
    n = settings.partitions
    return ([TopicSpec(t, n) for t in settings.inputs] + [TopicSpec(settings.deadletter, n)]
            + [TopicSpec(settings.control, 1, compacted=True)])


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int | None]:
    """Partition count per topic; None for a topic that does not exist (yet)."""
    out: dict[str, int | None] = {}
    for t in await admin.describe_topics(names):
        out[t["topic"]] = len(t["partitions"]) if t["error_code"] == 0 else None
    return out


async def _not_compacted(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, str]:
    """cleanup.policy of the given topics that are not compacted."""
    if not names:
        return {}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    bad = {}
    for response in responses:
        for _err, _msg, _type, name, entries in response.resources:
            for entry in entries:
                if entry[0] == "cleanup.policy" and "compact" not in str(entry[1]):
                    bad[name] = entry[1]
    return bad


def _layout_message(name: str, found: int, expected: int) -> str:
    return (f"topic {name} has {found} partition{'s' if found != 1 else ''}, tuike expects {expected}: every tuike "
            f"topic must have kafka.partitions partitions so that a key lives in the same partition of each. "
            f"Set kafka.partitions: {found} in the configuration, or use another kafka.topic_prefix, or delete "
            f"{name} (its messages are lost) and run the command again to create it with {expected}")


async def ensure_topics(kafka: Kafka, specs: Iterable[TopicSpec | tuple], replication_factor: int | None = None,
                        *, timeout: float = 30.0) -> list[str]:
    """Create the missing topics of ``specs`` ((name, partitions, compacted) each) and check the
    existing ones; return the names created here.

    Safe when several processes race: a topic another one created first is fine (its partition
    count is still checked). ``replication_factor`` defaults to min(3, number of brokers).
    Raises :class:`TopicLayoutError` naming the topic, the counts found and expected, and what
    to do; :class:`BrokerUnreachable`."""
    specs = [TopicSpec(*s) for s in specs]
    admin = await _admin(kafka)
    try:
        if replication_factor is None:
            replication_factor = min(3, len((await admin.describe_cluster())["brokers"]) or 1)
        found = await _describe(admin, [s.name for s in specs])
        missing = [s for s in specs if found.get(s.name) is None]
        created: list[str] = []
        if missing:
            new = [NewTopic(s.name, s.partitions, replication_factor,
                            topic_configs={**({"cleanup.policy": "compact"} if s.compacted else {}), **(s.configs or {})}
                            or None) for s in missing]
            response = await admin.create_topics(new)
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif code != 36:  # 36 TOPIC_ALREADY_EXISTS: another process was first
                    msg = rest[0] if rest and rest[0] else f"error code {code}"
                    raise TopicLayoutError(f"cannot create topic {name}: {msg}")
        # Check every topic, created ones included (a racing process may have used another count);
        # a new topic's metadata takes a moment to reach every listener.
        deadline = time.monotonic() + timeout
        while True:
            found = await _describe(admin, [s.name for s in specs])
            if all(found.get(s.name) for s in specs) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        for s in specs:
            n = found.get(s.name)
            if n is None:
                raise ProduceError(f"topic {s.name} was created but its partitions did not show up within {timeout:.0f} s")
            if n != s.partitions:
                raise TopicLayoutError(_layout_message(s.name, n, s.partitions))
        bad = await _not_compacted(admin, [s.name for s in specs if s.compacted and s.name not in created])
        if bad:
            name, policy = next(iter(bad.items()))
            raise TopicLayoutError(f"topic {name} has cleanup.policy={policy}, tuike expects compact (it keeps "
                                   f"only the latest value per key, forever): run kafka-configs.sh --alter "
                                   f"--entity-type topics --entity-name {name} --add-config cleanup.policy=compact")
        return created
    finally:
        await admin.close()


async def delete_topics(kafka: Kafka, names: Iterable[str] = (), *, prefix: str | None = None) -> list[str]:
    """Delete the named topics and, with ``prefix``, every topic whose name starts with it (for
    tests and measurements; their messages are lost). Returns the names deleted."""
    admin = await _admin(kafka)
    try:
        existing = set(await admin.list_topics())
        doomed = sorted((existing & set(names)) | {t for t in existing if prefix and t.startswith(prefix)})
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


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


# --- groups ----------------------------------------------------------------------------------


class LagRow(NamedTuple):
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing there
    end: int
    lag: int  # end - committed, or end - beginning when nothing is committed


async def consumer_lag(kafka: Kafka, group: str, topics: Iterable[str] | None = None,
                       settings: StreamSettings | None = None) -> list[LagRow]:
    """Lag of ``group`` per topic and partition, sorted. ``topics`` None means every topic the
    group has offsets for plus the four input topics (of ``settings``, default prefix ``tuike``);
    topics that do not exist are left out."""
    settings = settings or StreamSettings()
    admin = await _admin(kafka)
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        wanted = list(topics) if topics is not None else sorted({tp.topic for tp in offsets} | set(settings.inputs))
        parts = await _describe_partitions(admin, wanted)
    finally:
        await admin.close()
    tps = [TopicPartition(t, p) for t in wanted for p in parts.get(t, ())]
    if not tps:
        return []
    consumer = await _consumer(kafka)
    try:
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    rows = []
    for tp in tps:
        meta = offsets.get(tp)
        committed = meta.offset if meta is not None and meta.offset >= 0 else None
        end = ends[tp]
        lag = end - committed if committed is not None else end - begins[tp]
        rows.append(LagRow(tp.topic, tp.partition, committed, end, max(lag, 0)))
    return sorted(rows)


async def pipeline_lag(kafka: Kafka, settings: StreamSettings, generation: int) -> list[LagRow]:
    """Lag of one generation's workers: their group on the input and routed topics, and their
    sink group on the ledger topic and the dead letters (topologies/sink.py), sorted."""
    routed = [settings.routed_topic(generation, s) for s in STAGES]
    rows = await consumer_lag(kafka, settings.app_id(generation), [*settings.inputs, *routed], settings)
    rows += await consumer_lag(kafka, settings.sink_group(generation),
                               [settings.ledger_topic(generation), settings.deadletter], settings)
    return sorted(rows)


async def _describe_partitions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, list[int]]:
    if not names:
        return {}
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"])
            for t in await admin.describe_topics(names) if t["error_code"] == 0}


async def group_members(kafka: Kafka, group: str) -> int:
    """How many consumers are members of ``group`` now (0 for an empty or unknown group)."""
    admin = await _admin(kafka)
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    count = 0
    for response in responses:
        for g in response.to_object()["groups"]:
            if g["group"] == group:
                count += len(g["members"])
    return count


async def existing_topics(kafka: Kafka, names: list[str]) -> list[str]:
    """Those of ``names`` that exist in the cluster. (From the list of every topic: a metadata
    request naming a missing topic creates it on a broker with auto.create.topics.enable, Kafka's
    default.)"""
    admin = await _admin(kafka)
    try:
        found = set(await admin.list_topics())
    finally:
        await admin.close()
    return [n for n in names if n in found]


# --- sync wrappers for the command line -------------------------------------------------------


def ensure_topics_sync(kafka: Kafka, specs: Iterable[TopicSpec | tuple], replication_factor: int | None = None) -> list[str]:
    return asyncio.run(ensure_topics(kafka, specs, replication_factor))


def produce_records_sync(kafka: Kafka, settings: StreamSettings, records: Iterable[Record],
                         progress: Callable[..., None] | None = None, **kw) -> ProduceStats:
    return asyncio.run(produce_records(kafka, settings, records, progress, **kw))


def pipeline_lag_sync(kafka: Kafka, settings: StreamSettings, generation: int) -> list[LagRow]:
    return asyncio.run(pipeline_lag(kafka, settings, generation))


def consumer_lag_sync(kafka: Kafka, group: str, topics: Iterable[str] | None = None,
                      settings: StreamSettings | None = None) -> list[LagRow]:
    return asyncio.run(consumer_lag(kafka, group, topics, settings))


def group_members_sync(kafka: Kafka, group: str) -> int:
    return asyncio.run(group_members(kafka, group))


def existing_topics_sync(kafka: Kafka, names: list[str]) -> list[str]:
    return asyncio.run(existing_topics(kafka, names))
