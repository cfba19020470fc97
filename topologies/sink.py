"""The ClickHouse sink of the topology: ledger rows, facts and dead letters into the server.

Consumes ``gN.ledger`` (chunks of ledger and fact rows the stages sent) and ``tuike.deadletter``
and writes them in batches bounded by size (``kafka.sink_batch`` rows) and time
(``kafka.sink_ms``), one columnar insert per table. The offsets of a batch are committed only
after the insert succeeded, so a crash re-inserts rather than loses; repeated rows collapse on
their deterministic ids (ReplacingMergeTree + FINAL views). While ClickHouse is down the sink
retries with backoff (up to 10 s between tries) and commits nothing: rows wait in Kafka.

The sink has a consumer of its own, in a group of its own (``gN.sink``), rather than being a
Faust agent: Faust's one fetcher hands records to every agent's buffer in turn and waits on a
full one, so while the input had a backlog a sink agent received nothing, and the ledger filled
only after the backlog had drained (``make bench-stream``: 0 ledger rows for the first 35 s of a
45 s drain). Its own fetcher keeps the ledger current whatever the stages' backlog.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.dead_letter import DeadLetter
from sinks import Batch, Ledger, LedgerError

from topologies import metrics
from topologies.codec import decode_dead_letter, decode_sink
from topologies.protection import Protection
from topologies.kafka_access import KafkaAccess, started

log = logging.getLogger("tuike.sink")
MAX_BACKOFF = 10.0


@dataclass
class SinkStats:
    inserts: int = 0
    rows: int = 0
    retries: int = 0


def batch_of(records: list[tuple[str, bytes | None, str]], sink_topic: str) -> Batch:
    """The rows of a list of (topic, value, position) records; a dead-letter record that is not
    ours (someone else wrote to the topic) is kept as a dead letter of its own."""
    batch = Batch()
    for topic, value, position in records:
        if topic == sink_topic:
            entries, facts = decode_sink(value or b"")
            batch.entries.extend(entries)
            for table, rows in facts.items():
                batch.facts.setdefault(table, []).extend(rows)
            continue
        try:
            batch.dead_letters.append(decode_dead_letter(value or b""))
        except Exception as exc:
            raw = (value or b"").decode("utf-8", "replace")
            batch.dead_letters.append(DeadLetter.of(topic, position, raw, f"not a tuike dead letter: {exc}"))
    return batch


async def write_until_done(ledger: Ledger, batch: Batch, stats: SinkStats, thread: Executor | None = None) -> None:
    """Insert ``batch``; while the ledger refuses, wait and try again (never drop, never skip)."""
    loop = asyncio.get_running_loop()
    delay = 0.5
    while True:
        started = time.monotonic()
        try:
            await loop.run_in_executor(thread, ledger.write, batch)
            stats.inserts += 1
            stats.rows += len(batch)
            written(batch, time.monotonic() - started)
            return
        except LedgerError as exc:
            stats.retries += 1
            metrics.LEDGER_FAILURES.inc()
            log.warning("ledger write failed (%s); retrying in %.1fs — the rows wait in Kafka", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)


def written(batch: Batch, seconds: float) -> None:
    """The metrics of an insert that succeeded: its time, its rows per kind, its dead letters by reason."""
    metrics.LEDGER_WRITE.observe(seconds)
    for kind, n in (("entries", len(batch.entries)), ("facts", sum(len(r) for r in batch.facts.values())),
                    ("dead_letters", len(batch.dead_letters))):
        if n:
            metrics.LEDGER_ROWS.labels(kind).inc(n)
    if batch.dead_letters:
        metrics.count_dead_letters(d.reason for d in batch.dead_letters)


class LedgerSink:
    """Takes batches from the sink topics and writes them until they are in, then commits."""

    def __init__(self, ledger: Ledger, *, kafka: KafkaAccess, group: str, topics: list[str], sink_topic: str,
                 generation: int, records_per_insert: int, wait_ms: int, thread: Executor,
                 protection: Protection | None = None, client_id: str | None = None):
        self.ledger = ledger
        self.client_id = client_id  # the worker's (tuike lag names the owner of each partition)
        self.protection = protection  # seals dead letters others wrote raw (the gateway, tuike produce)
        self.kafka = kafka
        self.group = group
        self.topics = topics
        self.sink_topic = sink_topic
        self.generation = generation
        self.records_per_insert = records_per_insert
        self.wait_ms = wait_ms
        self.thread = thread
        self.stats = SinkStats()

    async def run(self) -> None:
        consumer = await started(AIOKafkaConsumer(*self.topics, **self.kafka.client(
            group_id=self.group, enable_auto_commit=False, **({"client_id": self.client_id} if self.client_id else {}),
            auto_offset_reset="earliest", session_timeout_ms=10_000, heartbeat_interval_ms=3_000,
            max_poll_interval_ms=3_600_000,  # an outage may keep a batch unwritten for long: stay in the group
            max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)), self.kafka)
        try:
            while True:
                records, ends = await self._take(consumer)
                if not records:
                    continue
                batch = batch_of(records, self.sink_topic)
                batch.generation = self.generation
                if self.protection is not None and batch.dead_letters:
                    batch.dead_letters = [self.protection.seal_dead_letter(d) for d in batch.dead_letters]
                    await asyncio.get_running_loop().run_in_executor(self.thread, self.protection.flush)
                if len(batch):
                    await write_until_done(self.ledger, batch, self.stats, self.thread)
                try:
                    await consumer.commit(ends)
                except KafkaError as exc:  # partitions moved meanwhile: their next owner writes them again
                    log.warning("sink commit of %d partitions refused (%s); the rows will be written again, "
                                "and collapse on their ids", len(ends), exc)
        finally:
            await consumer.stop()

    async def _take(self, consumer: AIOKafkaConsumer) -> tuple[list, dict[TopicPartition, int]]:
        """Records until ``records_per_insert`` or ``wait_ms`` after the first; the offsets after them."""
        loop = asyncio.get_running_loop()
        records: list[tuple[str, bytes | None, str]] = []
        ends: dict[TopicPartition, int] = {}
        deadline: float | None = None
        while len(records) < self.records_per_insert:
            if deadline is None:
                timeout = 1000
            else:
                timeout = int((deadline - loop.time()) * 1000)
                if timeout <= 0:
                    break
            got = await consumer.getmany(timeout_ms=timeout, max_records=self.records_per_insert - len(records))
            for tp, messages in got.items():
                records.extend((m.topic, m.value, f"{m.partition}:{m.offset}") for m in messages)
                ends[tp] = messages[-1].offset + 1
            if got and deadline is None:
                deadline = loop.time() + self.wait_ms / 1000
            elif not got and deadline is None:
                break  # idle: nothing came within a second
        return records, ends
