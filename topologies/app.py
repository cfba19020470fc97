"""The Faust app: the engine's processors as one agent on Kafka, state in RocksDB tables.

One stateful agent, ``engine`` (``topologies/settings.py``: ``STAGES``), at concurrency 1
(faust-streaming #606), consumes the four input topics and ``gN.to-engine`` and holds every
processor; each processor keeps its own table, keyed as engine/dataflow.py says:

| processor (table) | key |
|---|---|
| promoters, watchers | promoter_id |
| customers | customer_id |
| orders | order_id |
| tallies | beneficiary_id |
| risk | device, IP, prefix, promoter (engine/risk.py) |
| propagation | click_id (engine/propagation.py) |

An unexpected error stops the worker (``CrashingSupervisor``) rather than one agent silently:
restarted, it resumes from the last commit. Plus the ClickHouse sink (:mod:`topologies.sink`, a
consumer of its own) on ``gN.ledger`` and ``tuike.deadletter``. Every topic has the same
partition count, so Faust gives partition *p* of all of them to one worker (co-partitioning)
and a key meets its state there. Promoter facts are mirrored into a GlobalTable that every
worker reads; it may lag, which the engine tolerates by design (rechecks carry the facts they
announce).

The agent takes a batch of records (``stream.take_events``): its :class:`~topologies.stage.Stage`
computes the batch's journal entries, and the :class:`~topologies.kafka_checkpoint.KafkaCheckpoint`
makes them durable — journal, then state, changelog and sends, then offsets.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from mode import CrashingSupervisor

from engine.config import Config, ConfigError, Problem
from engine.dataflow import Context
from sinks import Ledger
from topologies import metrics
from topologies.faust_internals import PromoterView, partition_db
from topologies.journal import Journal
from topologies.kafka_access import KafkaAccess, worker_client_id
from topologies.kafka_checkpoint import KafkaCheckpoint
from topologies.offsets import COMMIT_SECONDS, OffsetBook
from topologies.protection import check_generation, protection_for
from topologies.settings import STAGE_OF, STAGES, StreamSettings
from topologies.sink import LedgerSink, SinkStats
from topologies.stage import MIRROR, BatchResult, Stage

log = logging.getLogger("tuike.worker")


class Topology:
    """The Faust app of one generation, built from the configuration."""

    def __init__(self, config: Config, settings: StreamSettings, *, kafka: KafkaAccess, data_dir: Path,
                 generation: int = 0, ledger: Ledger | None = None, name: str = ""):
        """``name``: the worker's, in its Kafka client ids, so that the consumer groups (and ``tuike lag``)
        say which worker owns a partition."""
        client_id = worker_client_id(name) if name else None
        self.settings = settings
        self.generation = generation
        n = settings.partitions
        self.app = faust.App(
            settings.app_id(generation),
            **kafka.faust(),  # broker and broker_credentials
            **({"broker_client_id": client_id} if client_id else {}),
            datadir=str(data_dir),
            store="rocksdb://",
            topic_partitions=n,
            topic_replication_factor=settings.replication_factor or 1,  # Faust's own topics (its assignor's leader topic)
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
        ctx = Context(config, PromoterView(self.promoter_facts, n))
        self.offsets = OffsetBook(self.app, settings.app_id(generation), kafka)
        self.checkpoint = KafkaCheckpoint(self.app, {**self.tables, MIRROR: self.promoter_facts}, self.offsets,
                                          Journal(kafka))

        @self.app.on_partitions_revoked.connect
        async def forget_revoked(sender: Any, revoked: set, **kwargs: Any) -> None:
            await self.offsets.forget(revoked)

        @self.app.timer(COMMIT_SECONDS)
        async def commit_durable() -> None:
            await self.offsets.flush()

        self.sink_topic = settings.ledger_topic(generation)
        self.stats: dict[str, BatchResult] = defaultdict(BatchResult)
        self.protection = protection_for(config.raw, ledger) if ledger is not None else None
        if self.protection is None and "privacy" in config.raw:
            raise ConfigError([Problem("privacy", "a worker with privacy on needs the ledger (--clickhouse): "
                                                  "the data keys live there")])
        if ledger is not None:
            check_generation(ledger, generation, self.protection)
        self.stages = {name: Stage(name, settings, generation, ctx, self._read, self.protection) for name in STAGES}
        for name, stage in self.stages.items():
            channel = self.app.topic(*stage.topics, partitions=n, **raw)
            self.app.agent(channel, name=name, concurrency=1, supervisor_strategy=CrashingSupervisor)(self._agent(stage))
        self.ledger_thread = ThreadPoolExecutor(1, thread_name_prefix="ledger")  # one connection, one thread
        self.sink: LedgerSink | None = None
        if ledger is not None:
            self.sink = LedgerSink(ledger, kafka=kafka, group=settings.sink_group(generation),
                                   topics=[self.sink_topic, settings.deadletter], sink_topic=self.sink_topic,
                                   generation=generation, records_per_insert=max(1, settings.sink_batch // 100),
                                   wait_ms=settings.sink_ms, thread=self.ledger_thread, protection=self.protection,
                                   client_id=client_id)
            self.app.task(self._run_sink)
        self.sink_stats = self.sink.stats if self.sink else SinkStats()

    def topics(self) -> list[str]:
        """Every topic this generation reads or writes, besides Faust's changelogs."""
        return [*self.settings.inputs, self.settings.deadletter, self.sink_topic,
                *(self.settings.routed_topic(self.generation, s) for s in STAGES)]

    def journals(self) -> list[str]:
        return [stage.journal_topic for stage in self.stages.values()]

    def _read(self, table: str, key: str, partition: int) -> bytes | None:
        return partition_db(self.tables[table], partition).get(key.encode())

    def _agent(self, stage: Stage):
        settings, checkpoint, expected = self.settings, self.checkpoint, self.offsets.expected
        totals = self.stats[stage.name]

        def ends(partition: int) -> dict[str, int]:
            return {topic: expected[TP(topic, partition)] for topic in stage.topics}

        async def process(stream):
            async for events in stream.take_events(settings.batch, within=settings.batch_ms / 1000):
                started = time.monotonic()
                redone = await checkpoint.take_over(stage, {e.message.partition for e in events})
                if redone:
                    metrics.JOURNAL_REAPPLIES.labels(stage.name).inc(redone)
                    totals.redone += redone
                admitted, offsets = await self.offsets.admit(events)
                entries, result = stage.run(admitted, ends)
                if self.protection is not None:  # the data keys before anything they sealed is durable
                    await asyncio.get_running_loop().run_in_executor(self.ledger_thread, self.protection.flush)
                await checkpoint.commit(stage, entries, offsets)
                totals.records += result.records
                totals.entries += result.entries
                totals.dead_letters += result.dead_letters
                metrics.batch_done(stage.name, started, result)

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
