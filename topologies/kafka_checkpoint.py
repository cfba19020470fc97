"""The streaming runner's durable order: where a batch becomes durable, read top to bottom.

At-least-once, in this order per batch (:meth:`KafkaCheckpoint.commit`), so a crash anywhere
repeats work but never loses it:

1. **journal** — the batch's entries (per partition: the new value of every key it touched,
   every record it will send, where its input ends) to ``gN.journal-<stage>``; wait for the acks;
2. **state, changelog and sends** — each key written to its table's RocksDB partition and
   changelog, each routed message, ledger row, fact row and dead letter sent; wait for the acks,
   then move the tables' persisted changelog offsets;
3. **offsets** — the batch's input offsets, into tuike's own book (:mod:`topologies.offsets`),
   committed to the group at most every ``COMMIT_SECONDS``.

A crash before 1 completes recomputes the batch; after 1, whoever takes the partition over
applies the journaled entry again before anything else (:meth:`KafkaCheckpoint.take_over`): the
same values and the same records with the same ids, which every receiver and the sink count
once. A crash after 2 but before 3 redelivers records the state already holds: the engine calls
them duplicates. (Why the journal: topologies/journal.py.)
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Iterator

import faust
from faust.types import TP

from topologies.faust_internals import kafka_producer, partition_db, set_persisted_offset
from topologies.journal import Entry, Journal, encode
from topologies.offsets import OffsetBook
from topologies.stage import Stage

log = logging.getLogger("tuike.worker")


class KafkaCheckpoint:
    def __init__(self, app: faust.App, tables: dict[str, faust.Table], offsets: OffsetBook, journal: Journal):
        self.app = app
        self.tables = tables  # every table a journal entry may name, the promoter mirror included
        self.offsets = offsets
        self.journal = journal

    async def commit(self, stage: Stage, entries: dict[int, Entry], offsets: dict[TP, int]) -> None:
        if entries:
            await self._journal(stage.journal_topic, entries)  # 1.
            await self._apply(entries)  # 2.
        await self.offsets.commit(offsets)  # 3.

    async def take_over(self, stage: Stage, partitions: set[int]) -> int:
        """Before the first batch of a partition this worker was just given: the group's committed
        offsets, and the journal's last entry applied again when the input it covers was not
        committed (its batch may have been cut short). Returns the entries applied again."""
        redone = 0
        for p in sorted(partitions):
            tps = [TP(topic, p) for topic in stage.topics]
            if all(tp in self.offsets.expected for tp in tps):
                continue
            committed = await self.offsets.start(tps)
            entry = await self.journal.tail(stage.journal_topic, p)
            stage.epochs[p] = entry.epoch if entry else 0
            if entry is None or all(entry.ends.get(tp.topic, 0) <= committed[tp] for tp in tps):
                continue
            log.warning("%s partition %d: the last batch journaled (input up to %s) was not committed (%s); "
                        "applying it again", stage.name, p, entry.ends, {tp.topic: o for tp, o in committed.items()})
            await self._apply({p: entry})  # 2. and 3. of the cut batch
            await self.offsets.advance({TP(topic, p): offset for topic, offset in entry.ends.items()})
            redone += 1
        return redone

    async def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        """Hand a record to the producer; returns the future of its ack."""
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def _journal(self, topic: str, entries: dict[int, Entry]) -> None:
        """Journal a batch (one entry per partition) and wait until Kafka has it all."""
        futures = [await self._send(topic, None, part, p) for p, entry in entries.items() for part in encode(entry)]
        await asyncio.gather(*futures)

    async def _apply(self, entries: dict[int, Entry]) -> None:
        """Make journaled entries happen: each key written to its table (RocksDB and changelog),
        each record sent; returns once Kafka acked all, with the tables' persisted offsets moved."""
        grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = defaultdict(list)
        loose = []
        changelogs: dict[str, faust.Table] = {}
        for p, entry in entries.items():
            for name, key, data in entry.states:
                table = self.tables[name]
                k = key.encode()
                partition_db(table, p).put(k, data)
                changelogs[table.changelog_topic_name] = table
                grouped[(table.changelog_topic_name, p)].append((k, data))
            for topic, partition, key, value in entry.sends:
                if partition is None:  # a dead letter, placed by its key by the producer's partitioner
                    loose.append(await self._send(topic, key, value, None))
                else:
                    grouped[(topic, partition)].append((key, value))
        last = await send_batches(kafka_producer(self.app), grouped)
        await asyncio.gather(*loose)
        for (topic, partition), offset in last.items():
            if topic in changelogs:
                set_persisted_offset(changelogs[topic], partition, offset)


async def send_batches(producer: Any, grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes]]]
                       ) -> dict[tuple[str, int], int]:
    """Send each (topic, partition)'s records in order as whole record batches, and wait for every
    ack; returns the offset of the last record in each."""
    pending: list[tuple[tuple[str, int], Any, int]] = []
    for (topic, partition), records in grouped.items():
        for batch in _packed(producer, records):
            pending.append(((topic, partition), await producer.send_batch(batch, topic, partition=partition),
                            batch.record_count()))
    acks = await asyncio.gather(*(future for _, future, _ in pending))
    last: dict[tuple[str, int], int] = {}
    for (tp, _, count), meta in zip(pending, acks):
        last[tp] = max(last.get(tp, -1), meta.offset + count - 1)
    return last


def _packed(producer: Any, records: list[tuple[bytes | None, bytes]]) -> Iterator[Any]:
    """The records in order, in as few record batches as the producer's batch size allows (a
    record larger than that goes alone)."""
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            yield batch
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    yield batch
