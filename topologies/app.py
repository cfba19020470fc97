"""The Faust app: the engine's processors as agents on Kafka, state in RocksDB tables.

Three stateful agents, one per key space, each at concurrency 1 (faust-streaming #606):

| agent | consumes | processors (tables) | key |
|---|---|---|---|
| promoters | ``tuike.promoters``, ``gN.to-promoters`` | promoters, watchers | promoter_id |
| customers | ``tuike.binds``, ``tuike.clicks``, ``gN.to-customers`` | customers | customer_id |
| orders | ``tuike.orders``, ``gN.to-orders`` | orders | order_id |

An unexpected error stops the worker (``CrashingSupervisor``) rather than one agent silently:
restarted, it resumes from the last commit. Plus the ClickHouse sink (:mod:`topologies.sink`) on ``gN.ledger`` and ``tuike.deadletter``.
Every topic has the same partition count, so Faust gives partition *p* of all of them to one
worker (co-partitioning) and a key meets its state there.

Each agent takes a batch of records (``stream.take_events``) and runs the engine's
:func:`~engine.runner.step` on them. Every message a step produces is sent to the partition
that owns its key, packed with the batch's other messages for that partition into one record
(:mod:`topologies.codec`) — even when that is the partition being processed (a promoter's
change reaching its own watchers): a step's effects are then its key's state plus sends that
are acked before any state is written, so a crash between two keys' writes cannot lose the
effect one key's step had on another (a redo finds the first key done and produces nothing).
Promoter facts are mirrored into a GlobalTable that every worker reads; it may lag, which the
engine tolerates by design (rechecks carry the facts they announce).

At-least-once, in this order per batch, so a crash anywhere repeats work but never loses it:
1. run the batch against a write-back cache of the tables (nothing written yet);
2. send the routed messages, ledger rows, facts and dead letters, and wait for Kafka's acks;
3. write each touched key once to its table (one changelog record per key, not per event);
4. commit the batch's offsets — tuike's own book (:mod:`topologies.offsets`), not Faust's, whose
   acks around rebalances commit records it skipped.
A crash before 3 replays the batch from the old state: the same messages and rows again, with
the same ids, which every receiver and the sink count once. A crash after 3 but before the
commit redelivers records the state already holds: the engine calls them duplicates.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import TP
from mode import CrashingSupervisor

from engine.config import Config
from engine.dataflow import CUSTOMERS, ORDERS, PROMOTERS, WATCHERS, Context, Message, Output
from engine.dead_letter import DeadLetter
from engine.runner import route, step
from schemas.facts import facts_of
from sinks.base import Ledger
from tuike.inputs import decode_record, parse_record

from .codec import decode_messages, encode_dead_letter, encode_messages, encode_sink
from .offsets import COMMIT_SECONDS, OffsetBook, disable_faust_commits
from .partitioning import partition_of
from .settings import StreamSettings
from .sink import SinkStats, batch_of, write_until_done

log = logging.getLogger("tuike.worker")
disable_faust_commits()  # offsets are tuike's: topologies/offsets.py


STAGE_OF = {PROMOTERS: "promoters", WATCHERS: "promoters", CUSTOMERS: "customers", ORDERS: "orders"}
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # stage: (its processors, the input topics of contract §1.3 it consumes)
    "promoters": ((PROMOTERS, WATCHERS), ("promoters",)),
    "customers": ((CUSTOMERS,), ("binds", "clicks")),
    "orders": ((ORDERS,), ("orders",)),
}
CHUNK = 1000  # routed messages or sink rows per Kafka record (records stay well under 1 MB)


class BatchStore:
    """The engine's store over Faust tables for one batch: reads through, writes back at the end.

    Values are orjson bytes. Reads and writes go to the table's RocksDB partition and its
    changelog directly, the way ``Table.__setitem__`` would, minus Faust's per-write machinery
    (codec, FutureMessage, producer buffer): that machinery costs 4× a bare agent's rate
    (``stack.md``), and a batch writes thousands of keys. The changelog records go out with
    the batch's other sends; once Kafka acked them the partition's persisted offset is moved,
    as Faust does, so a restart replays only newer changelog records.
    """

    def __init__(self, topology: "Topology", tables: dict[str, faust.Table], mirror: faust.GlobalTable | None):
        self.topology = topology
        self.tables = tables
        self.mirror = mirror
        self.values: dict[tuple[str, str], Any] = {}
        self.dirty: dict[tuple[str, str], int] = {}  # -> the partition that holds the key
        self.partition = 0

    def get(self, table: str, key: str) -> Any | None:
        k = (table, key)
        try:
            return self.values[k]
        except KeyError:
            raw = self.tables[table].data._db_for_partition(self.partition).get(key.encode())
            value = self.values[k] = orjson.loads(raw) if raw is not None else None
            return value

    def put(self, table: str, key: str, value: Any) -> None:
        self.values[(table, key)] = value
        self.dirty[(table, key)] = self.partition

    async def write(self) -> list[tuple[faust.Table, asyncio.Future]]:
        """Write every touched key once, locally and to its changelog; the sends' futures."""
        sends = []
        for (name, key), partition in self.dirty.items():
            data = orjson.dumps(self.values[(name, key)])
            for table in (self.tables[name], self.mirror if name == PROMOTERS else None):
                if table is not None:
                    k = key.encode()
                    table.data._db_for_partition(partition).put(k, data)
                    sends.append((table, await self.topology.send(table.changelog_topic_name, k, data, partition)))
        self.dirty.clear()
        return sends

    @staticmethod
    def persisted(sends: list[tuple[faust.Table, asyncio.Future]]) -> None:
        """Record the acked changelog offsets in each partition's database."""
        last: dict[tuple[faust.Table, int], int] = {}
        for table, future in sends:
            meta = future.result()
            key = (table, meta.partition)
            last[key] = max(last.get(key, -1), meta.offset)
        for (table, partition), offset in last.items():
            table.data.set_persisted_offset(TP(table.changelog_topic_name, partition), offset)


class PromoterView:
    """Promoter facts as this worker's GlobalTable replica shows them, decoded once per version.

    Reads the RocksDB partition the promoter's key lives in directly: ``GlobalTable.get``
    probes every partition's database for each read, and attribution reads several promoters."""

    def __init__(self, table: faust.GlobalTable, partitions: int):
        self.table = table
        self.partitions = partitions
        self.cache: dict[str, tuple[bytes, dict]] = {}

    def __call__(self, promoter_id: str) -> dict | None:
        db = self.table.data._db_for_partition(partition_of(promoter_id, self.partitions))
        raw = db.get(promoter_id.encode())
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


@dataclass
class BatchResult:
    records: int = 0
    entries: int = 0
    dead_letters: int = 0


class Stage:
    """One agent's work: a batch of records in, sends and table writes out."""

    def __init__(self, name: str, topology: "Topology"):
        self.name = name
        self.t = topology
        self.processors, inputs = STAGES[name]
        self.input_topics = {topology.settings.topic(n) for n in inputs}
        self.routed_topic = topology.routed_topic(name)
        self.tables = {p: topology.tables[p] for p in self.processors}

    async def apply(self, events: list) -> BatchResult:
        t = self.t
        n = t.settings.partitions
        store = BatchStore(t, self.tables, t.promoter_facts if PROMOTERS in self.processors else None)
        out = Output()
        remote: dict[tuple[str, int], list[Message]] = defaultdict(list)
        facts: dict[str, list[dict]] = defaultdict(list)
        dead: list[tuple[DeadLetter, str]] = []
        result = BatchResult(records=len(events))
        for event in events:
            message = event.message
            part = store.partition = message.partition
            for msg in self._messages(message, facts, dead):
                if msg.processor in self.processors and partition_of(msg.key, n) == part:
                    produced = step(msg, store, t.ctx, out)
                else:  # a click keyed by click_id belongs to its customer's partition
                    produced = [msg]
                for m in produced:
                    remote[(t.routed_topic(STAGE_OF[m.processor]), partition_of(m.key, n))].append(m)
        for d in out.dead_letters:
            dead.append((d, d.key))
        sends = []
        for (topic, part), msgs in remote.items():
            for i in range(0, len(msgs), CHUNK):
                sends.append(await t.send(topic, None, encode_messages(msgs[i:i + CHUNK]), part))
        sends.extend(await self._sink(out.entries, facts))
        for d, key in dead:
            sends.append(await t.send(t.settings.deadletter, key.encode() if key else None, encode_dead_letter(d), None))
        if sends:
            await asyncio.gather(*sends)  # acks=all: durable before the state says it happened
        written = await store.write()
        if written:
            await asyncio.gather(*(f for _, f in written))
            store.persisted(written)
        result.entries, result.dead_letters = len(out.entries), len(dead)
        return result

    def _messages(self, message: Any, facts: dict[str, list[dict]], dead: list) -> list[Message]:
        """The engine messages a record carries; a record that is not valid becomes a dead letter."""
        position = f"{message.partition}:{message.offset}"
        key = message.key.decode("utf-8", "replace") if message.key else ""
        if message.topic == self.routed_topic:
            try:
                return decode_messages(message.value)
            except Exception as exc:  # written by workers only; still never crash on one record
                reason = f"internal message not readable: {exc}"
                raw = message.value.decode("utf-8", "replace") if message.value else ""
                dead.append((DeadLetter.of(message.topic, position, raw, reason, key), key))
                return []
        rec = decode_record(message.topic, position, message.value or b"")
        parsed = parse_record(rec) if rec is not None else "empty message: expected one JSON event"
        if isinstance(parsed, str):
            raw = rec.raw if rec is not None else ""
            dead.append((DeadLetter.of(message.topic, position, raw, parsed, key), key))
            return []
        for table, row in facts_of(parsed):
            facts[table].append(row)
        return route(parsed)

    async def _sink(self, entries: list, facts: dict[str, list[dict]]) -> list:
        """Ledger rows and fact rows, in chunks, to the sink topic (any partition)."""
        t = self.t
        sends = []
        fact_rows = [(table, row) for table, rows in facts.items() for row in rows]
        for i in range(0, max(len(entries), len(fact_rows)), CHUNK):
            chunk_facts: dict[str, list[dict]] = defaultdict(list)
            for table, row in fact_rows[i:i + CHUNK]:
                chunk_facts[table].append(row)
            data = encode_sink(entries[i:i + CHUNK], chunk_facts)
            sends.append(await t.send(t.sink_topic, None, data, t.next_sink_partition()))
        return sends


class Topology:
    """The Faust app of one generation, built from the configuration."""

    def __init__(self, config: Config, settings: StreamSettings, *, broker: str, data_dir: Path,
                 generation: int = 0, ledger: Ledger | None = None):
        self.settings = settings
        self.generation = generation
        n = settings.partitions
        self.app = faust.App(
            settings.app_id(generation),
            broker=f"kafka://{broker}",
            datadir=str(data_dir),
            store="rocksdb://",
            topic_partitions=n,
            topic_replication_factor=1,
            table_standby_replicas=0,  # a survivor restores a dead worker's tables from the changelog
            web_enabled=False,
            autodiscover=False,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            producer_linger_ms=5,
            producer_max_batch_size=1_048_576,
            producer_max_request_size=4_194_304,
            stream_buffer_maxsize=8192,
            broker_session_timeout=10.0,  # a killed worker's partitions move after 10 s, not 60
            broker_heartbeat_interval=3.0,
        )
        raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        table_options = dict(default=None, partitions=n, options={"driver": "rocksdict"},
                             key_type=bytes, value_type=bytes)  # bytes: the "raw" codec, no Faust JSON per access
        self.tables = {p: self.app.Table(p, **table_options) for p in (PROMOTERS, WATCHERS, CUSTOMERS, ORDERS)}
        self.promoter_facts = self.app.GlobalTable("promoter-facts", **table_options)
        self.ctx = Context(config, PromoterView(self.promoter_facts, n))
        self.offsets = OffsetBook(self.app, settings.app_id(generation), broker)

        @self.app.on_partitions_revoked.connect
        async def forget_revoked(sender: Any, revoked: set, **kwargs: Any) -> None:
            await self.offsets.forget(revoked)

        @self.app.timer(COMMIT_SECONDS)
        async def commit_durable() -> None:
            await self.offsets.flush()

        self.sink_topic = settings.internal(generation, "ledger")
        self._sink_partition = 0
        self.stats: dict[str, BatchResult] = defaultdict(BatchResult)
        self.stages = {name: Stage(name, self) for name in STAGES}
        for name, stage in self.stages.items():
            topics = sorted(stage.input_topics) + [stage.routed_topic]
            channel = self.app.topic(*topics, partitions=n, **raw)
            self.app.agent(channel, name=name, concurrency=1, supervisor_strategy=CrashingSupervisor)(self._agent(stage))
        self.sink_stats = SinkStats()
        self.ledger_thread = ThreadPoolExecutor(1, thread_name_prefix="ledger")  # one connection, one thread
        if ledger is not None:
            channel = self.app.topic(self.sink_topic, settings.deadletter, partitions=n, **raw)
            self.app.agent(channel, name="sink", concurrency=1, supervisor_strategy=CrashingSupervisor)(
                self._sink_agent(ledger))

    def topics(self) -> list[str]:
        """Every topic this generation reads or writes, besides Faust's changelogs."""
        return [*self.settings.inputs, self.settings.deadletter, self.sink_topic,
                *(self.routed_topic(s) for s in STAGES)]

    def routed_topic(self, stage: str) -> str:
        return self.settings.internal(self.generation, f"to-{stage}")

    def next_sink_partition(self) -> int:
        self._sink_partition = (self._sink_partition + 1) % self.settings.partitions
        return self._sink_partition

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None):
        """Hand a record to the producer; returns the future of its ack."""
        return await self.app.producer.send(topic, key, value, partition, None, None)

    def _agent(self, stage: Stage):
        settings = self.settings
        totals = self.stats[stage.name]

        async def process(stream):
            async for events in stream.take_events(settings.batch, within=settings.batch_ms / 1000):
                admitted, offsets = await self.offsets.admit(events)
                result = await stage.apply(admitted)
                await self.offsets.commit(offsets)
                totals.records += result.records
                totals.entries += result.entries
                totals.dead_letters += result.dead_letters

        process.__name__ = stage.name
        return process

    def _sink_agent(self, ledger: Ledger):
        settings = self.settings
        records_per_insert = max(1, settings.sink_batch // 100)

        async def sink(stream):
            async for events in stream.take_events(records_per_insert, within=settings.sink_ms / 1000):
                admitted, offsets = await self.offsets.admit(events)
                records = [(e.message.topic, e.message.value, f"{e.message.partition}:{e.message.offset}")
                           for e in admitted]
                batch = batch_of(records, self.sink_topic)
                batch.generation = self.generation
                if len(batch):
                    await write_until_done(ledger, batch, self.sink_stats, self.ledger_thread)
                await self.offsets.commit(offsets)

        return sink
