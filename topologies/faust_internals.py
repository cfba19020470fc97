"""Every place tuike reaches past Faust's public API, in one module.

- **Table partitions.** Values are read and written in a table's RocksDB partition directly
  (``Table.get`` adds Faust's per-access machinery, which costs 4× a bare agent's rate,
  ``../shared/notes/stack.md``), and the changelog offset a partition has persisted is moved by
  hand after tuike's own changelog sends.
- **The producer.** Changelog records, routed chunks and sink chunks go to the aiokafka producer
  under Faust's as whole record batches (:func:`kafka_producer`): ``send`` per record cost
  23 µs, a record appended to a batch 3 µs (measured on the local broker).
- **The consumer.** Commits and seeks go through Faust's consumer thread (aiokafka is not
  thread-safe); :func:`install_patches` switches off Faust's own commits and fixes its seek to the
  committed offsets (:mod:`topologies.offsets` says why). ``tuike worker`` installs them at start.
"""
from __future__ import annotations

from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from topologies.partitioning import partition_of


def partition_db(table: faust.Table, partition: int) -> Any:
    """The RocksDB database of one partition of a table (a GlobalTable's too)."""
    return table.data._db_for_partition(partition)


def kafka_producer(app: faust.App) -> Any:
    """The ``AIOKafkaProducer`` under Faust's producer (started with the app)."""
    return app.producer._ensure_producer()


def set_persisted_offset(table: faust.Table, partition: int, offset: int) -> None:
    """Tell the table its changelog is applied up to ``offset`` (recovery starts after it)."""
    table.data.set_persisted_offset(TP(table.changelog_topic_name, partition), offset)


async def commit(app: faust.App, offsets: dict[TP, int]) -> bool:
    """Commit through the group member Faust runs; False when the group would not take it."""
    return await app.consumer._commit(offsets)


async def seek(app: faust.App, tp: TP, offset: int) -> None:
    """Seek in the consumer's own thread, and tell Faust's drain loop the records from ``offset``
    on are wanted again. Unlike Faust's ``seek_wait`` it does not wait for the position, which was
    seen to hang."""
    thread = app.consumer._thread

    async def seek_there() -> None:
        thread._ensure_consumer().seek(tp, offset)
        if offset > 0:
            thread.consumer._read_offset[tp] = offset
        else:
            thread.consumer._read_offset.pop(tp, None)

    await thread.call_thread(seek_there)


class PromoterView:
    """Promoter facts as this worker's GlobalTable replica shows them, decoded once per version.

    Reads the RocksDB partition the promoter's key lives in directly: ``GlobalTable.get``
    probes every partition's database for each read, and attribution reads several promoters."""

    def __init__(self, table: faust.GlobalTable, partitions: int):
        self.table = table
        self.partitions = partitions
        self.cache: dict[str, tuple[bytes, dict]] = {}

    def __call__(self, promoter_id: str) -> dict | None:
        raw = partition_db(self.table, partition_of(promoter_id, self.partitions)).get(promoter_id.encode())
        if raw is None:
            return None
        hit = self.cache.get(promoter_id)
        if hit is not None and hit[0] == raw:
            return hit[1]
        if len(self.cache) > 200_000:
            self.cache.clear()
        facts = orjson.loads(raw)
        self.cache[promoter_id] = (raw, facts)
        return facts


def install_patches() -> None:
    """Make Faust compute and forget its commits (the workers commit through
    :class:`~topologies.offsets.OffsetBook`), and make its seek to the committed offsets honour a
    committed offset of 0 and place partitions with no commit (:func:`seek_to_committed`)."""
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(Consumer._commit_offsets, "tuike_disabled", False):
        return

    async def _commit_offsets(self, offsets, start_new_transaction=True):  # type: ignore[no-untyped-def]
        return False

    async def _seek_to_committed(self):  # type: ignore[no-untyped-def]
        return await self.call_thread(seek_to_committed, self._ensure_consumer())

    _commit_offsets.tuike_disabled = True  # type: ignore[attr-defined]
    Consumer._commit_offsets = _commit_offsets  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]


async def seek_to_committed(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int | None]:
    """Put every assigned input partition at its committed offset, or at the log start where the
    group has committed none. Faust calls this after every rebalance and recovery.

    aiokafka's ``seek_to_committed`` seeks only to a committed offset above 0 and leaves the
    others where the consumer was. Records Faust fetched but had not handed to an agent when a
    rebalance began are dropped (its drain marks them read while the flow is suspended), so
    "where the consumer was" may be past records nobody processed: after ``tuike replay --from``
    rewound a partition to 0, and (CI) after a rebalance during a burst into partitions with no
    commit yet — with no newer record to show the gap, those partitions never delivered again
    and their lag stayed. Changelog partitions are Faust's recovery's own business: left alone."""
    committed = await consumer.seek_to_committed()
    unplaced = []
    for tp, offset in committed.items():
        if offset == 0:
            consumer.seek(tp, 0)
        elif offset is None and not tp.topic.endswith("-changelog"):
            unplaced.append(tp)
    if unplaced:
        await consumer.seek_to_beginning(*unplaced)
    return committed
