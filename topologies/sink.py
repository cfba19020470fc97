"""The ClickHouse sink of the topology: ledger rows, facts and dead letters into the server.

Consumes ``gN.ledger`` (chunks of ledger and fact rows the stages sent) and ``tuike.deadletter``
and writes them in batches bounded by size (``kafka.sink_batch`` rows) and time
(``kafka.sink_ms``), one columnar insert per table. The records of a batch are acked only after
the insert succeeded, so a crash re-inserts rather than loses; repeated rows collapse on their
deterministic ids (ReplacingMergeTree + FINAL views). While ClickHouse is down the sink retries
with backoff (up to 10 s between tries) and does not ack: rows wait in Kafka, none is dropped.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass

from engine.dead_letter import DeadLetter
from sinks.base import Batch, Ledger, LedgerError

from .codec import decode_dead_letter, decode_sink

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
        try:
            await loop.run_in_executor(thread, ledger.write, batch)
            stats.inserts += 1
            stats.rows += len(batch)
            return
        except LedgerError as exc:
            stats.retries += 1
            log.warning("ledger write failed (%s); retrying in %.1fs — the rows wait in Kafka", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
