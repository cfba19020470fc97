"""One streaming stage's work: a batch of Kafka records in, one journal entry per partition out.

No I/O: the records are admitted (:func:`schemas.routes.admit`; routed topics carry engine
messages) and protected (:mod:`topologies.protection`: the new data keys wait in memory for the
app to write them before the batch), run through the engine's :func:`~engine.runner.step` against a
:class:`~topologies.state_cache.StateCache` over the stage's tables, and what the batch changes
in each partition — the new value of every key it touched and every record it will send — is
returned as a :class:`~topologies.journal.Entry`. The :class:`~topologies.kafka_checkpoint.
KafkaCheckpoint` makes the entries durable.

A message a step produces for a key of the partition being processed is stepped in the same
batch, as the embedded runner would; one for another partition is packed with the batch's other
messages for that partition into one record (:mod:`topologies.codec`). That is safe because a
partition's batch becomes durable as one journal entry (:mod:`topologies.journal`): every key it
touched and every record it sends are applied together, or applied again together by the next
owner, so a crash between two keys' writes cannot lose the effect one key's step had on another.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.dataflow import ORDERS, PROMOTERS, Context, Message, Output
from engine.runner import first_messages, step
from engine.tallies import tally_messages
from schemas.dead_letter import DeadLetter
from schemas.facts import facts_of
from schemas.routes import admit
from topologies.codec import decode_messages, encode_dead_letter, encode_messages, encode_sink, input_record
from topologies.journal import Entry, Send, State
from topologies.partitioning import partition_of
from topologies.protection import Protection
from topologies.settings import STAGE_OF, STAGES, StreamSettings
from topologies.state_cache import Read, StateCache

MIRROR = "promoter-facts"  # the GlobalTable every worker reads promoter facts from
CHUNK = 1000  # routed messages or sink rows per Kafka record (records stay well under 1 MB)
SEQ_EPOCH = 2 ** 48  # tallies' seq = epoch × this + the batch's input ends (offsets stay far below it)


@dataclass
class BatchResult:
    records: int = 0
    entries: int = 0
    dead_letters: int = 0
    redone: int = 0  # journal entries applied again after taking a partition over
    # this batch's alone, for the metrics (topologies/metrics.py): records in and messages out per topic, holds
    received: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    holds: int = 0


@dataclass
class PartitionWork:
    """What a batch produced in one partition, before it becomes a journal entry."""
    out: Output = field(default_factory=Output)
    remote: dict[tuple[str, int], list[Message]] = field(default_factory=lambda: defaultdict(list))
    facts: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    dead: list[DeadLetter] = field(default_factory=list)


class Stage:
    """One agent's processors, the topics it consumes, and its journal."""

    def __init__(self, name: str, settings: StreamSettings, generation: int, ctx: Context, read: Read,
                 protection: Protection | None = None):
        self.name = name
        self.protection = protection  # pseudonyms and sealing with keys in memory; the app flushes the keys
        self.settings = settings
        self.generation = generation
        self.ctx = ctx
        self.read = read  # a key's stored state: (table, key, partition) -> bytes
        self.processors, inputs = STAGES[name]
        self.routed_topic = settings.routed_topic(generation, name)
        self.topics = sorted(settings.topic(n) for n in inputs) + [self.routed_topic]
        self.journal_topic = settings.journal_topic(generation, name)
        self.sink_topic = settings.ledger_topic(generation)
        self.epochs: dict[int, int] = {}  # partition -> the journal epoch its entries carry

    def run(self, events: list, ends: Callable[[int], dict[str, int]]) -> tuple[dict[int, Entry], BatchResult]:
        """The journal entry of every partition the batch changed; ``ends(p)`` is where the
        batch's input ends in partition ``p`` (per topic)."""
        cache = StateCache(self.read)
        work: dict[int, PartitionWork] = defaultdict(PartitionWork)
        result = BatchResult(records=len(events))
        received = result.received
        for event in events:
            message = event.message
            received[message.topic] = received.get(message.topic, 0) + 1
            part = cache.partition = message.partition
            w = work[part]
            self._drain(deque(self._messages(message, w)), part, cache, w)
        entries: dict[int, Entry] = {}
        for part, w in work.items():
            input_ends = ends(part)
            epoch = self.epochs.get(part, 0)
            if ORDERS in self.processors and w.out.entries:
                # the tallies of this batch's beneficiaries; seq grows with every batch of the partition
                # (offsets only grow within an epoch; a rewind starts a higher epoch)
                seq = epoch * SEQ_EPOCH + sum(input_ends.values())
                cache.partition = part
                self._drain(deque(tally_messages(w.out.entries, w.out.entries[0].event_id, str(part), seq)),
                            part, cache, w)
            for table, row in w.out.facts:  # rows the engine derived (fraud_scores)
                w.facts[table].append(row)
                if table == "fraud_scores" and row.get("held") == 1:
                    result.holds += 1
            entry = Entry(input_ends, self._states(cache, part), self._sends(part, w, result.sent), epoch)
            if entry.states or entry.sends:
                entries[part] = entry
            result.entries += len(w.out.entries)
            result.dead_letters += len(w.dead) + len(w.out.dead_letters)
        return entries, result

    def _drain(self, queue: deque[Message], part: int, cache: StateCache, w: PartitionWork) -> None:
        """Step every message for a key of ``part`` here, and what those steps produce, in order;
        a message for another partition (or another stage) waits in ``w.remote`` to be sent."""
        n = self.settings.partitions
        while queue:
            msg = queue.popleft()
            dest = partition_of(msg.key, n)
            if msg.processor in self.processors and dest == part:
                queue.extend(step(msg, cache, self.ctx, w.out))
            else:
                w.remote[(self._routed(msg.processor), dest)].append(msg)

    def _routed(self, processor: str) -> str:
        return self.settings.routed_topic(self.generation, STAGE_OF[processor])

    @staticmethod
    def _states(cache: StateCache, part: int) -> list[State]:
        """The new value of every key written in ``part``; a promoter's also for the mirror."""
        out: list[State] = []
        for change in cache.changes(part):
            out.append(change)
            if change[0] == PROMOTERS:
                out.append((MIRROR, change[1], change[2]))
        return out

    def _sends(self, part: int, w: PartitionWork, sent: dict[str, int]) -> list[Send]:
        """Routed messages (packed per partition), ledger and fact rows, dead letters; ``sent``
        counts the messages per topic."""
        sends: list[Send] = []
        for (topic, dest), msgs in w.remote.items():
            sends.extend((topic, dest, None, encode_messages(msgs[i:i + CHUNK])) for i in range(0, len(msgs), CHUNK))
            sent[topic] = sent.get(topic, 0) + len(msgs)
        entries = w.out.entries
        fact_rows = [(table, row) for table, rows in w.facts.items() for row in rows]
        if entries or fact_rows:
            sent[self.sink_topic] = sent.get(self.sink_topic, 0) + len(entries) + len(fact_rows)
        dead = w.dead + w.out.dead_letters
        if dead:
            sent[self.settings.deadletter] = sent.get(self.settings.deadletter, 0) + len(dead)
        for i in range(0, max(len(entries), len(fact_rows)), CHUNK):
            chunk_facts: dict[str, list[dict]] = defaultdict(list)
            for table, row in fact_rows[i:i + CHUNK]:
                chunk_facts[table].append(row)
            sends.append((self.sink_topic, part, None, encode_sink(entries[i:i + CHUNK], chunk_facts)))
        protection = self.protection
        for d in dead:
            if protection is not None:
                d = protection.seal_dead_letter(d)
            sends.append((self.settings.deadletter, None, d.key.encode() if d.key else None, encode_dead_letter(d)))
        return sends

    def _messages(self, message: Any, w: PartitionWork) -> list[Message]:
        """The engine messages a record carries; a record that is not valid becomes a dead letter."""
        key = message.key.decode("utf-8", "replace") if message.key else ""
        if message.topic == self.routed_topic:
            try:
                return decode_messages(message.value)
            except Exception as exc:  # written by workers only; still never crash on one record
                raw = message.value.decode("utf-8", "replace") if message.value else ""
                w.dead.append(DeadLetter.of(message.topic, f"{message.partition}:{message.offset}", raw,
                                            f"internal message not readable: {exc}", key))
                return []
        admitted = admit(input_record(message.topic, message.partition, message.offset, message.value,
                                      message.headers), key)
        if type(admitted) is DeadLetter:
            w.dead.append(admitted)
            return []
        event, sealed = admitted.event, ""  # type: ignore[union-attr]
        if self.protection is not None:
            event, sealed = self.protection.protect(event)
        for table, row in facts_of(event, sealed):
            w.facts[table].append(row)
        return first_messages(event)
