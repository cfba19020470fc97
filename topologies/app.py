"""The Faust app: the engine's processors as agents on Kafka, state in RocksDB tables.

Six stateful agents, one per key space, each at concurrency 1 (faust-streaming #606):

| agent | consumes | processors (tables) | key |
|---|---|---|---|
| promoters | ``tuike.promoters``, ``gN.to-promoters`` | promoters, watchers | promoter_id |
| customers | ``tuike.binds``, ``tuike.clicks``, ``gN.to-customers`` | customers | customer_id |
| orders | ``tuike.orders``, ``gN.to-orders`` | orders | order_id |
| tallies | ``gN.to-tallies`` | tallies | beneficiary_id |
| risk | ``gN.to-risk`` | risk | device, IP, prefix, promoter (engine/risk.py) |
| propagation | ``gN.to-propagation`` | propagation | click_id (engine/propagation.py) |

An unexpected error stops the worker (``CrashingSupervisor``) rather than one agent silently:
restarted, it resumes from the last commit. Plus the ClickHouse sink (:mod:`topologies.sink`, a consumer of its own) on ``gN.ledger`` and ``tuike.deadletter``.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import TP
from mode import CrashingSupervisor

from engine.config import Config
from engine.dataflow import CUSTOMERS, ORDERS, PROMOTERS, PROPAGATION, RISK, TALLIES, WATCHERS, Context, Message, Output
from schemas.dead_letter import DeadLetter
from engine.runner import route, step
from engine.tallies import tally_messages
from schemas.facts import facts_of
from sinks import Ledger
from schemas.records import decode_record, parse_record

from topologies.codec import decode_messages, encode_dead_letter, encode_messages, encode_sink
from topologies.journal import Entry, Journal, Send, State, encode
from topologies.offsets import COMMIT_SECONDS, OffsetBook, disable_faust_commits
from topologies.partitioning import partition_of
from topologies.settings import STAGES as STAGE_NAMES
from topologies.settings import StreamSettings
from topologies.sink import LedgerSink, SinkStats

log = logging.getLogger("tuike.worker")
disable_faust_commits()  # offsets are tuike's: topologies/offsets.py


STAGE_OF = {PROMOTERS: "promoters", WATCHERS: "promoters", CUSTOMERS: "customers", ORDERS: "orders",
            TALLIES: "tallies", RISK: "risk", PROPAGATION: "propagation"}
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # stage: (its processors, the input topics of contract §1.3 it consumes)
    "promoters": ((PROMOTERS, WATCHERS), ("promoters",)),
    "customers": ((CUSTOMERS,), ("binds", "clicks")),
    "orders": ((ORDERS,), ("orders",)),
    "tallies": ((TALLIES,), ()),  # fed by the orders stage only
    "risk": ((RISK,), ()),  # fraud evidence by device, IP, prefix, promoter (engine/risk.py)
    "propagation": ((PROPAGATION,), ()),  # share cascades by click (engine/propagation.py)
}
MIRROR = "promoter-facts"  # the GlobalTable every worker reads promoter facts from
assert tuple(STAGES) == STAGE_NAMES, "topologies/settings.py names the stages for the topics and lag"
CHUNK = 1000  # routed messages or sink rows per Kafka record (records stay well under 1 MB)
SEQ_EPOCH = 2 ** 48  # tallies' seq = epoch × this + the batch's input ends (offsets stay far below it)


class BatchStore:
    """The engine's store over Faust tables for one batch: reads through, collects the writes.

    Values are orjson bytes, read from the table's RocksDB partition directly (``Table.get``
    adds Faust's per-access machinery, which costs 4× a bare agent's rate, ``stack.md``). The
    writes are not made here: :meth:`states` hands them to the batch's journal entry, and
    :meth:`Topology.apply` writes them, locally and to each table's changelog.
    """

    def __init__(self, tables: dict[str, faust.Table]):
        self.tables = tables
        self.values: dict[tuple[str, str], Any] = {}
        self.dirty: dict[int, dict[tuple[str, str], None]] = defaultdict(dict)  # partition -> keys, in order
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
        self.dirty[self.partition][(table, key)] = None

    def states(self, partition: int) -> list[State]:
        """The new value of every key written in ``partition``; a promoter's also for the mirror."""
        out: list[State] = []
        for name, key in self.dirty.get(partition, ()):
            data = orjson.dumps(self.values[(name, key)])
            out.append((name, key, data))
            if name == PROMOTERS:
                out.append((MIRROR, key, data))
        return out


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
    redone: int = 0  # journal entries applied again after taking a partition over


@dataclass
class PartitionWork:
    """What a batch produced in one partition, before it becomes a journal entry."""
    out: Output = field(default_factory=Output)
    remote: dict[tuple[str, int], list[Message]] = field(default_factory=lambda: defaultdict(list))
    facts: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    dead: list[tuple[DeadLetter, str]] = field(default_factory=list)


class Stage:
    """One agent's work: a batch of records in, one journal entry per partition out."""

    def __init__(self, name: str, topology: "Topology"):
        self.name = name
        self.t = topology
        self.processors, inputs = STAGES[name]
        self.routed_topic = topology.routed_topic(name)
        self.topics = sorted(topology.settings.topic(n) for n in inputs) + [self.routed_topic]
        self.journal_topic = topology.settings.internal(topology.generation, f"journal-{name}")
        self.tables = {p: topology.tables[p] for p in self.processors}
        self.epochs: dict[int, int] = {}  # partition -> the journal epoch its entries carry

    async def take_over(self, partitions: set[int]) -> int:
        """Before the first batch of a partition this worker was just given: the group's committed
        offsets, and the journal's last entry applied again when the input it covers was not
        committed (its batch may have been cut short). Returns the entries applied again."""
        t = self.t
        redone = 0
        for p in sorted(partitions):
            tps = [TP(topic, p) for topic in self.topics]
            if all(tp in t.offsets.expected for tp in tps):
                continue
            committed = await t.offsets.start(tps)
            entry = await t.journal.tail(self.journal_topic, p)
            self.epochs[p] = entry.epoch if entry else 0
            if entry is None or all(entry.ends.get(tp.topic, 0) <= committed[tp] for tp in tps):
                continue
            log.warning("%s partition %d: the last batch journaled (input up to %s) was not committed (%s); "
                        "applying it again", self.name, p, entry.ends, {tp.topic: o for tp, o in committed.items()})
            await t.apply({p: entry})
            await t.offsets.advance({TP(topic, p): offset for topic, offset in entry.ends.items()})
            redone += 1
        return redone

    async def apply(self, events: list) -> BatchResult:
        t = self.t
        n = t.settings.partitions
        store = BatchStore(self.tables)
        work: dict[int, PartitionWork] = defaultdict(PartitionWork)
        for event in events:
            message = event.message
            part = store.partition = message.partition
            w = work[part]
            for msg in self._messages(message, w.facts, w.dead):
                if msg.processor in self.processors and partition_of(msg.key, n) == part:
                    produced = step(msg, store, t.ctx, w.out)
                else:  # a click keyed by click_id belongs to its customer's partition
                    produced = [msg]
                for m in produced:
                    w.remote[(t.routed_topic(STAGE_OF[m.processor]), partition_of(m.key, n))].append(m)
        result = BatchResult(records=len(events))
        entries: dict[int, Entry] = {}
        for part, w in work.items():
            ends = {tp.topic: t.offsets.expected[tp] for tp in (TP(topic, part) for topic in self.topics)}
            epoch = self.epochs.get(part, 0)
            if ORDERS in self.processors and w.out.entries:
                # the tallies of this batch's beneficiaries; seq grows with every batch of the partition
                # (offsets only grow within an epoch; a rewind starts a higher epoch)
                seq = epoch * SEQ_EPOCH + sum(ends.values())
                for m in tally_messages(w.out.entries, w.out.entries[0].event_id, str(part), seq):
                    w.remote[(t.routed_topic("tallies"), partition_of(m.key, n))].append(m)
            for table, row in w.out.facts:  # rows the engine derived (fraud_scores)
                w.facts[table].append(row)
            entry = Entry(ends, store.states(part), self._sends(part, w), epoch)
            if entry.states or entry.sends:
                entries[part] = entry
            result.entries += len(w.out.entries)
            result.dead_letters += len(w.dead) + len(w.out.dead_letters)
        if entries:
            await t.journal_write(self.journal_topic, entries)
            await t.apply(entries)
        return result

    def _sends(self, part: int, w: PartitionWork) -> list[Send]:
        """Routed messages (packed per partition), ledger and fact rows, dead letters."""
        t = self.t
        sends: list[Send] = []
        for (topic, dest), msgs in w.remote.items():
            sends.extend((topic, dest, None, encode_messages(msgs[i:i + CHUNK])) for i in range(0, len(msgs), CHUNK))
        entries = w.out.entries
        fact_rows = [(table, row) for table, rows in w.facts.items() for row in rows]
        for i in range(0, max(len(entries), len(fact_rows)), CHUNK):
            chunk_facts: dict[str, list[dict]] = defaultdict(list)
            for table, row in fact_rows[i:i + CHUNK]:
                chunk_facts[table].append(row)
            sends.append((t.sink_topic, part, None, encode_sink(entries[i:i + CHUNK], chunk_facts)))
        for d, key in w.dead + [(d, d.key) for d in w.out.dead_letters]:
            sends.append((t.settings.deadletter, None, key.encode() if key else None, encode_dead_letter(d)))
        return sends

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
            producer_max_request_size=16_777_216,  # journal parts (topologies/journal.py)
            stream_buffer_maxsize=8192,
            broker_session_timeout=10.0,  # a killed worker's partitions move after 10 s, not 60
            broker_heartbeat_interval=3.0,
        )
        raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        table_options = dict(default=None, partitions=n, options={"driver": "rocksdict"},
                             key_type=bytes, value_type=bytes)  # bytes: the "raw" codec, no Faust JSON per access
        self.tables = {p: self.app.Table(p, **table_options) for p in STAGE_OF}
        self.promoter_facts = self.app.GlobalTable(MIRROR, **table_options)
        self.ctx = Context(config, PromoterView(self.promoter_facts, n))
        self.offsets = OffsetBook(self.app, settings.app_id(generation), broker)
        self.journal = Journal(broker)

        @self.app.on_partitions_revoked.connect
        async def forget_revoked(sender: Any, revoked: set, **kwargs: Any) -> None:
            await self.offsets.forget(revoked)

        @self.app.timer(COMMIT_SECONDS)
        async def commit_durable() -> None:
            await self.offsets.flush()

        self.sink_topic = settings.ledger_topic(generation)
        self.stats: dict[str, BatchResult] = defaultdict(BatchResult)
        self.stages = {name: Stage(name, self) for name in STAGES}
        for name, stage in self.stages.items():
            channel = self.app.topic(*stage.topics, partitions=n, **raw)
            self.app.agent(channel, name=name, concurrency=1, supervisor_strategy=CrashingSupervisor)(self._agent(stage))
        self.ledger_thread = ThreadPoolExecutor(1, thread_name_prefix="ledger")  # one connection, one thread
        self.sink: LedgerSink | None = None
        if ledger is not None:
            self.sink = LedgerSink(ledger, broker=broker, group=settings.sink_group(generation),
                                   topics=[self.sink_topic, settings.deadletter], sink_topic=self.sink_topic,
                                   generation=generation, records_per_insert=max(1, settings.sink_batch // 100),
                                   wait_ms=settings.sink_ms, thread=self.ledger_thread)
            self.app.task(self._run_sink)
        self.sink_stats = self.sink.stats if self.sink else SinkStats()

    def topics(self) -> list[str]:
        """Every topic this generation reads or writes, besides Faust's changelogs."""
        return [*self.settings.inputs, self.settings.deadletter, self.sink_topic,
                *(self.routed_topic(s) for s in STAGES)]

    def journals(self) -> list[str]:
        return [stage.journal_topic for stage in self.stages.values()]

    def table(self, name: str) -> faust.Table:
        return self.promoter_facts if name == MIRROR else self.tables[name]

    def routed_topic(self, stage: str) -> str:
        return self.settings.routed_topic(self.generation, stage)

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None):
        """Hand a record to the producer; returns the future of its ack."""
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def journal_write(self, topic: str, entries: dict[int, Entry]) -> None:
        """Journal a batch (one entry per partition) and wait until Kafka has it all."""
        futures = [await self.send(topic, None, part, p) for p, entry in entries.items() for part in encode(entry)]
        await asyncio.gather(*futures)

    async def apply(self, entries: dict[int, Entry]) -> None:
        """Make journaled entries happen: each key written to its table (RocksDB and changelog),
        each record sent; returns once Kafka acked all, with the tables' persisted offsets moved."""
        changelog: list[tuple[faust.Table, asyncio.Future]] = []
        sends = []
        for p, entry in entries.items():
            for name, key, data in entry.states:
                table = self.table(name)
                k = key.encode()
                table.data._db_for_partition(p).put(k, data)
                changelog.append((table, await self.send(table.changelog_topic_name, k, data, p)))
            for topic, partition, key, value in entry.sends:
                sends.append(await self.send(topic, key, value, partition))
        await asyncio.gather(*sends, *(f for _, f in changelog))
        last: dict[tuple[faust.Table, int], int] = {}
        for table, future in changelog:
            meta = future.result()
            last[(table, meta.partition)] = max(last.get((table, meta.partition), -1), meta.offset)
        for (table, partition), offset in last.items():
            table.data.set_persisted_offset(TP(table.changelog_topic_name, partition), offset)

    def _agent(self, stage: Stage):
        settings = self.settings
        totals = self.stats[stage.name]

        async def process(stream):
            async for events in stream.take_events(settings.batch, within=settings.batch_ms / 1000):
                totals.redone += await stage.take_over({e.message.partition for e in events})
                admitted, offsets = await self.offsets.admit(events)
                result = await stage.apply(admitted)
                await self.offsets.commit(offsets)
                totals.records += result.records
                totals.entries += result.entries
                totals.dead_letters += result.dead_letters

        process.__name__ = stage.name
        return process

    async def _run_sink(self) -> None:
        """The sink for the life of the worker; a failure it cannot wait out stops the worker."""
        assert self.sink is not None
        try:
            await self.sink.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the ClickHouse sink stopped")
            await self.app.crash(exc)
