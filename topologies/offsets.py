"""The workers' consumer offsets, kept by tuike rather than by Faust.

faust-streaming's own offset bookkeeping loses records around rebalances: records fetched
before a rebalance are skipped *and acked*, and the commit made on revocation moves the group
past them (faust-streaming #216, #221, #312; measured here: a second worker joining lost ~1%
to 20% of a backlog). The workers therefore disable Faust's commits and keep their own book:

- ``expected[tp]`` is the next offset this worker must process in a partition: the group's
  committed offset (or the log start) when the partition is first seen after an assignment.
- A batch is admitted record by record: an offset below ``expected`` was already processed
  and committed (a redelivery: skipped); the offset ``expected`` is processed and advances it;
  an offset above it means Faust skipped records — the rest of that partition in the batch is
  held back and the consumer is sent back to ``expected`` to fetch them again.
- Once the batch is durable (outputs, then state, both acked by Kafka), ``expected`` of every
  partition it advanced may be committed; commits go through Faust's consumer (the group
  member) at most every ``COMMIT_SECONDS`` (a timer flushes the rest, and so does a
  revocation), so a small batch does not pay a round trip to the group coordinator.

So a committed offset always means "processed and durable", whatever Faust does with acks.
(The calls into Faust's consumer, and the patches that switch its commits off, are in
:mod:`topologies.faust_internals`.)
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP

from topologies.faust_internals import commit, seek
from topologies.kafka_access import KafkaAccess, started

log = logging.getLogger("tuike.offsets")
COMMIT_SECONDS = 0.5
SEEK_TIMEOUT = 10.0


class OffsetBook:
    """Per partition: the next offset to process; commits what is durable."""

    def __init__(self, app: Any, group: str, kafka: KafkaAccess):
        self.app = app
        self.group = group
        self.kafka = kafka
        self.expected: dict[TP, int] = {}
        self.refetching: dict[TP, tuple[int, float]] = {}  # partitions sent back: where to, when
        self.pending: dict[TP, int] = {}  # durable, not yet committed
        self.last_commit = 0.0
        self._admin: Any = None
        self._reader: AIOKafkaConsumer | None = None
        self._lookup = asyncio.Lock()  # one admin client, shared by the agents

    async def forget(self, tps: set[TP]) -> None:
        """Partitions revoked: commit what is durable, then ask the group again next time
        (another worker may advance them meanwhile)."""
        for tp in tps:
            self.refetching.pop(tp, None)
        await self.flush()
        for tp in tps:
            self.expected.pop(tp, None)

    async def admit(self, events: list) -> tuple[list, dict[TP, int]]:
        """The events of a batch to process, in order (redeliveries and records after a gap are
        left out), and the offsets to commit once they are durable."""
        await self.start({e.message.tp for e in events})
        admitted, gaps = [], {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            if tp in gaps:
                continue
            want = self.expected[tp]
            if offset < want:
                continue  # processed and committed before
            if offset > want:
                gaps[tp] = want
                continue
            self.expected[tp] = offset + 1
            self.refetching.pop(tp, None)
            admitted.append(event)
        for tp, want in gaps.items():
            await self._refetch(tp, want)
        return admitted, {e.message.tp: self.expected[e.message.tp] for e in admitted}

    async def start(self, tps: set[TP] | list[TP]) -> dict[TP, int]:
        """The next offset to process of each partition; the group's committed one for a
        partition not seen since it was assigned."""
        unknown = set(tps) - self.expected.keys()
        if unknown:
            async with self._lookup:
                found = await self._starting_offsets(unknown)
            for tp, offset in found.items():
                self.expected.setdefault(tp, offset)
        return {tp: self.expected[tp] for tp in tps}

    async def advance(self, ends: dict[TP, int]) -> None:
        """Work up to ``ends`` is durable (a journal entry applied again): skip to there and commit."""
        moved = {tp: offset for tp, offset in ends.items() if offset > self.expected.get(tp, -1)}
        self.expected.update(moved)
        await self.commit(moved)

    async def commit(self, offsets: dict[TP, int]) -> None:
        """Offsets of a durable batch: committed now, or with the next flush."""
        self.pending.update(offsets)
        if time.monotonic() - self.last_commit >= COMMIT_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        """Commit what is durable; re-seek partitions whose refetch has not arrived."""
        now = time.monotonic()
        for tp, (want, since) in list(self.refetching.items()):
            if now - since >= COMMIT_SECONDS and tp in self.expected:
                await self._refetch(tp, want)
        offsets, self.pending = self.pending, {}
        self.last_commit = time.monotonic()
        if not offsets:
            return
        try:
            done = await commit(self.app, offsets)
        except Exception as exc:  # a rebalance under way
            log.warning("commit of %d partitions failed (%s); trying again", len(offsets), exc)
            done = False
        if not done:  # keep what is still ours for the next flush; a revoked partition is the next owner's
            self.pending = {**{tp: o for tp, o in offsets.items() if tp in self.expected}, **self.pending}

    async def _refetch(self, tp: TP, want: int) -> None:
        """Send the consumer back to ``want``. Records fetched before the seek may still be
        drained after it, and Faust then drops the refetched ones as already read; so every
        batch that still shows the gap, and :meth:`flush` while nothing arrives, seeks again."""
        self.refetching[tp] = (want, time.monotonic())
        log.info("records %s from offset %d were skipped by the consumer; fetching them again", tp, want)
        try:
            await asyncio.wait_for(seek(self.app, tp, want), SEEK_TIMEOUT)
        except Exception as exc:  # revoked meanwhile, or busy: flush() tries again while it is missing
            log.warning("could not seek %s back to %d (%r); trying again", tp, want, exc)

    async def _starting_offsets(self, tps: set[TP]) -> dict[TP, int]:
        """The group's committed offset per partition, or the log start where it has none."""
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            self._admin = await started(AIOKafkaAdminClient(**self.kafka.client()), self.kafka)
        wanted = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        for attempt in range(20):  # the coordinator may not be known yet right after start
            try:
                committed = await self._admin.list_consumer_group_offsets(self.group, partitions=wanted)
                break
            except KafkaError as exc:
                if attempt == 19:
                    raise
                log.info("committed offsets of %s not available yet (%s); retrying", self.group, exc)
                await asyncio.sleep(0.25)
        # never before the log start: records retention deleted can never arrive, and waiting for
        # them would stall the partition (the consumer resets to the start, the gap stays). Asked of
        # a consumer of our own on this loop: Faust's consumer thread may be inside a rebalance that
        # waits for the very batch asking (a deadlock seen with Faust's earliest_offsets)
        if self._reader is None:
            self._reader = await started(AIOKafkaConsumer(**self.kafka.client(enable_auto_commit=False, group_id=None)),
                                         self.kafka)
        begins = await self._reader.beginning_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        earliest = {tp: begins[TopicPartition(tp.topic, tp.partition)] for tp in tps}
        out: dict[TP, int] = {}
        for tp in tps:
            meta = committed.get(TopicPartition(tp.topic, tp.partition))
            done = meta.offset if meta is not None and meta.offset >= 0 else -1
            if 0 <= done < earliest[tp]:
                log.warning("%s: committed offset %d is before the log start %d (retention): starting there",
                            tp, done, earliest[tp])
            out[tp] = max(done, earliest[tp])
        return out

