"""The batch journal (topologies/journal.py): an entry is read back whole, or not at all.

The pure part (parts, completeness) without Kafka; the tail of a real journal partition on the
real broker, including a crash mid-journal (an incomplete last entry), on the Kafka one."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from topologies import journal
from topologies.journal import Entry, Journal, encode, last_complete


def _entry(n_states: int, size: int, tag: str = "a") -> Entry:
    return Entry(ends={"t.orders": 100, "t.g0.to-engine": 7},
                 states=[("orders", f"O{i}", f'{{"v":"{tag}{"x" * size}"}}'.encode()) for i in range(n_states)],
                 sends=[("t.g0.ledger", 2, None, b'{"e":[]}'), ("t.deadletter", None, "O1".encode(), b'{"r":"bad"}')])


def test_an_entry_round_trips_in_one_part():
    e = _entry(3, 10)
    parts = encode(e, "b1")
    assert len(parts) == 1
    assert last_complete(parts) == e


def test_a_large_entry_is_split_and_needs_every_part(monkeypatch):
    monkeypatch.setattr(journal, "PART_BYTES", 1000)
    e = _entry(12, 300)
    parts = encode(e, "b1")
    assert len(parts) >= 4
    assert last_complete(parts) == e
    assert last_complete(parts[:-1]) is None  # a crash before the last part: never applied
    older = encode(_entry(1, 5, "old"), "b0")
    assert last_complete(older + parts[:-1]) == _entry(1, 5, "old")  # the complete one before it


@asynccontextmanager
async def journal_topic(broker: str, topic: str):
    """A journal topic of 2 partitions on the real broker, a producer and a reader."""
    from aiokafka import AIOKafkaProducer

    from topologies.admin import ensure_topics

    await ensure_topics(broker, [(topic, 2, False, journal.TOPIC_CONFIGS)])
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    reader = Journal(broker)
    try:
        yield producer, reader
    finally:
        await producer.stop()
        await reader.close()


@pytest.mark.kafka
def test_the_tail_of_a_journal_partition_is_its_last_complete_entry(kafka_broker, kafka_settings, monkeypatch):
    monkeypatch.setattr(journal, "PART_BYTES", 2000)
    topic = kafka_settings.internal(0, "journal-engine")
    first, second, third = _entry(3, 50, "first"), _entry(20, 400, "second"), _entry(20, 400, "third")

    async def run():
        async with journal_topic(kafka_broker, topic) as (producer, reader):
            empty = await reader.tail(topic, 0)
            for part in encode(first, "b1") + encode(second, "b2"):
                await producer.send_and_wait(topic, part, partition=1)
            whole = await reader.tail(topic, 1)
            cut = encode(third, "b3")
            assert len(cut) > 2
            for part in cut[:2]:  # the worker dies mid-journal
                await producer.send_and_wait(topic, part, partition=1)
            after_crash = await reader.tail(topic, 1)
            return empty, whole, after_crash

    empty, whole, after_crash = asyncio.run(run())
    assert empty is None
    assert whole == second
    assert after_crash == second


@pytest.mark.kafka
def test_a_barrier_ends_a_journal_with_the_next_epoch(kafka_broker, kafka_settings):
    topic = kafka_settings.internal(0, "journal-engine2")
    applied = Entry(ends={"t.binds": 40}, states=[("customers", "c1", b'{"v":1}')], epoch=2)

    async def run():
        async with journal_topic(kafka_broker, topic) as (producer, reader):
            for part in encode(applied, "b1") * 2:  # the entry written twice (a producer retry)
                await producer.send_and_wait(topic, part, partition=0)
            before = await reader.tail(topic, 0)
            assert await reader.write_barriers([(topic, 0), (topic, 1)]) == 2
            return before, await reader.tail(topic, 0), await reader.tail(topic, 1)

    before, after, empty_before = asyncio.run(run())
    assert before == applied
    assert after == Entry(ends={}, epoch=3)  # nothing to re-apply, numbering above epoch 2
    assert empty_before == Entry(ends={}, epoch=1)
