"""Generations: how ``tuike replay`` rebuilds state without double counting.

A generation is one complete derivation of the ledger from the input topics: its own consumer
group, internal topics, changelogs and local state (all named ``tuike.gN…``), and its own
ledger rows (column ``generation``). ``tuike replay`` starts generation N+1 from the beginning
of the input topics; the analysts' views keep showing generation N until N+1 has caught up with
the input as it stood at the replay, then switch (table ``ledger_generations``). A rebuild may
meet the events in another interleaving and reach the same net money through other correction
rows (contract §4), so its rows never mix with the old generation's.

The current generation is the last record of the control topic (``tuike.control``, one
compacted partition): ``{"generation": N, "from": "earliest", "ends": {topic: {partition: offset}},
"created": RFC 3339}``. No record means generation 0.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from topologies.journal import Journal
from topologies.kafka_access import KafkaAccess, started
from topologies.settings import STAGES, StreamSettings

KEY = b"generation"


async def read_control(kafka: KafkaAccess, settings: StreamSettings) -> dict | None:
    """The last control record, or None."""
    from topologies.admin import _consumer

    consumer = await _consumer(kafka)
    try:
        if settings.control not in await consumer.topics():
            return None
        tp = TopicPartition(settings.control, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            return None
        consumer.seek(tp, end - 1)
        records = await consumer.getmany(tp, timeout_ms=10_000)
        values = [r.value for r in records.get(tp, []) if r.value]
        return orjson.loads(values[-1]) if values else None
    finally:
        await consumer.stop()


def current_generation(kafka: KafkaAccess, settings: StreamSettings) -> int:
    record = asyncio.run(read_control(kafka, settings))
    return int(record["generation"]) if record else 0


async def write_control(kafka: KafkaAccess, settings: StreamSettings, record: dict) -> None:
    producer = await started(AIOKafkaProducer(**kafka.client(acks="all", enable_idempotence=True)), kafka)
    try:
        await producer.send_and_wait(settings.control, orjson.dumps(record), key=KEY, partition=0)
    finally:
        await producer.stop()


def next_generation_record(current: dict | None, ends: dict[str, dict[int, int]]) -> dict:
    generation = (int(current["generation"]) + 1) if current else 1
    return {"generation": generation, "from": "earliest",
            "ends": {t: {str(p): o for p, o in parts.items()} for t, parts in ends.items()},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


class ReplayRefused(Exception):
    """A replay that would corrupt the ledger if done now; the message says what to do."""


@dataclass
class ReplayPlan:
    generation: int  # the generation the restarted workers will run
    group: str
    rebuild: bool  # True: a new generation from the beginning; False: the same state, rewound
    offsets: dict[str, dict[int, int]]  # input topic -> partition -> where the group starts


async def start_replay(kafka: KafkaAccess, settings: StreamSettings, start: str | None) -> ReplayPlan:
    """``tuike replay``: refuse while workers run; then either start generation N+1 from the
    beginning (``start`` None or "earliest") or rewind generation N's group to a time.

    Rewinding keeps the state, so every event the workers already hold comes back as a
    duplicate and changes nothing; events the workers never saw (or dead-lettered before a
    fix) are applied. Rebuilding derives everything again into a new generation."""
    from topologies.admin import _admin, _consumer, _describe_partitions, group_members

    current = await read_control(kafka, settings)
    generation = int(current["generation"]) if current else 0
    group = settings.app_id(generation)
    members = await group_members(kafka, group)
    if members:
        raise ReplayRefused(f"{members} worker(s) of group {group} are running: stop every `tuike worker` "
                            "first (a replay under running workers would mix two derivations)")
    admin = await _admin(kafka)
    try:
        parts = await _describe_partitions(admin, list(settings.inputs))
    finally:
        await admin.close()
    tps = [TopicPartition(t, p) for t in settings.inputs for p in parts.get(t, ())]
    if not tps:
        raise ReplayRefused(f"no input topics {', '.join(settings.inputs)} on {kafka}: nothing to replay")
    consumer = await _consumer(kafka)
    try:
        ends = await consumer.end_offsets(tps)
        if start in (None, "earliest"):
            begins = await consumer.beginning_offsets(tps)
            record = next_generation_record(current, _nest(ends))
            await write_control(kafka, settings, record)
            return ReplayPlan(record["generation"], settings.app_id(record["generation"]), True, _nest(begins))
        at = _epoch_ms(start)
        found = await consumer.offsets_for_times({tp: at for tp in tps})
        offsets = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
    finally:
        await consumer.stop()
    await _commit(kafka, group, offsets)
    # the journals' last entries cover input past the rewound offsets: end them with barriers, or the
    # restarted workers would re-apply them and skip the re-fed records (topologies/journal.py)
    journals = [settings.journal_topic(generation, s) for s in STAGES]
    admin = await _admin(kafka)
    try:
        journal_parts = await _describe_partitions(admin, journals)
    finally:
        await admin.close()
    journal = Journal(kafka)
    try:
        await journal.write_barriers([(t, p) for t in journals for p in journal_parts.get(t, ())])
    finally:
        await journal.close()
    return ReplayPlan(generation, group, False, _nest(offsets))


async def _commit(kafka: KafkaAccess, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Set ``group``'s committed offsets (the group has no members, so nobody overwrites them)."""
    consumer = await started(AIOKafkaConsumer(**kafka.client(group_id=group, enable_auto_commit=False)), kafka)
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def _nest(offsets: dict[TopicPartition, int]) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for tp, offset in offsets.items():
        out.setdefault(tp.topic, {})[tp.partition] = offset
    return out


def _epoch_ms(text: str) -> int:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayRefused(f"--from {text!r}: expected earliest or an RFC 3339 time such as "
                            "2026-11-01T00:00:00+08:00") from None
    if parsed.tzinfo is None:
        raise ReplayRefused(f"--from {text!r}: the time needs a UTC offset, e.g. 2026-11-01T00:00:00+08:00")
    return int(parsed.timestamp() * 1000)


async def caught_up(kafka: KafkaAccess, group: str, record: dict, internal: list[str],
                    sink: tuple[str, list[str]]) -> bool:
    """Whether ``group`` has consumed the input as it stood at the replay (``record["ends"]``)
    and drained its internal topics (routed messages), and the sink group ``sink`` (group,
    topics) has drained the ledger: then the ledger is complete and the analysts' views may
    switch to it."""
    from topologies.admin import consumer_lag

    want = {(t, int(p)): o for t, parts in record.get("ends", {}).items() for p, o in parts.items()}
    rows = await consumer_lag(kafka, group, [*sorted({t for t, _ in want}), *internal])
    for row in rows:
        if (row.topic, row.partition) in want:
            if (row.committed or 0) < want[(row.topic, row.partition)]:
                return False
        elif row.lag:
            return False
    return not any(row.lag for row in await consumer_lag(kafka, sink[0], sink[1]))
