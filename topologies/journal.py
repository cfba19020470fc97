"""The batch journal: what a batch changes in one partition, written to Kafka before any of it.

Without it, at-least-once has a hole that idempotent receivers cannot close. A batch sends its
outputs and writes its state; a worker killed in between leaves the sends delivered and the
state not written, and the partition's next owner redoes the batch from the old state. The
redo need not take the same path: the input topics of a stage interleave differently on
another fetch, and a customer's attribution reads another worker's promoter replica. Two
paths give rows with the same ids and other amounts (a step revised once on one path, never
on the other), and the ledger ends up with a mix of both: wrong money.

So every batch of a stage, per partition, first writes one journal entry — the new value of
every key it touched and every record it will send, plus where its input ends — to
``gN.journal-<stage>`` (partition = the partition processed) and waits for Kafka's ack. Only
then are the states written and the records sent (:meth:`Journal.apply`). Whoever takes the
partition next reads the journal's last complete entry first: when its input end is past the
group's committed offsets, the entry is applied again (idempotent: the same values, the same
records with the same ids) and the input is skipped to its end. A batch is thus either never
visible or visible exactly as it was computed; a key has one history.

An entry larger than ``PART_BYTES`` is split into parts sent in order to the same partition;
an entry is complete when all its parts are there (a crash mid-journal leaves an incomplete
entry, which was never applied, and the batch is computed again).
"""
from __future__ import annotations

import asyncio
import struct
import uuid
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from topologies.kafka_access import KafkaAccess, started

PART_BYTES = 4 * 1024 * 1024
READ_SECONDS = 60.0
# A journal partition needs its last entry only: keep a few segments, whatever their age.
TOPIC_CONFIGS = {"max.message.bytes": str(16 * 1024 * 1024), "segment.bytes": str(32 * 1024 * 1024),
                 "retention.bytes": str(96 * 1024 * 1024), "retention.ms": "-1"}

State = tuple[str, str, bytes]  # (table name, key, value)
Send = tuple[str, int | None, bytes | None, bytes]  # (topic, partition, key, value)


@dataclass
class Entry:
    """What one batch changes in one partition."""
    ends: dict[str, int]  # input topic -> the next offset to process after this batch
    states: list[State] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    # Raised by a barrier (``tuike replay --from``): input offsets then go back, and whatever is
    # numbered by offsets (the tallies' seq) must still grow, so it is numbered (epoch, offsets).
    epoch: int = 0


MAGIC = b"TJ2"  # a part: MAGIC, the header's length (4 bytes, big-endian), the header (JSON), the bytes
_LEN = struct.Struct(">I")


def encode(entry: Entry, batch_id: str | None = None) -> list[bytes]:
    """The entry as journal records: parts of at most about ``PART_BYTES`` each.

    A part is a small JSON header (names, keys, lengths) followed by the values' bytes as they
    are: a state value or a routed chunk is JSON already, and embedding it as a JSON string
    escaped every quote in it (a 50,000-event run journaled 287 MB for 238 MB of values)."""
    batch_id = batch_id or uuid.uuid4().hex
    parts: list[tuple[list, list]] = [([], [])]
    size = 0
    for item, which, n in ([(s, 0, len(s[2])) for s in entry.states] + [(s, 1, len(s[3])) for s in entry.sends]):
        if size + n > PART_BYTES and (parts[-1][0] or parts[-1][1]):
            parts.append(([], []))
            size = 0
        parts[-1][which].append(item)
        size += n
    out = []
    for i, (states, sends) in enumerate(parts):
        blobs: list[bytes] = []
        for _t, _k, v in states:
            blobs.append(v)
        for _t, _p, k, v in sends:
            if k is not None:
                blobs.append(k)
            blobs.append(v)
        header = orjson.dumps({
            "id": batch_id, "i": i, "n": len(parts), "ends": entry.ends, "ep": entry.epoch,
            "s": [[t, k, len(v)] for t, k, v in states],
            "o": [[t, p, len(k) if k is not None else -1, len(v)] for t, p, k, v in sends],
        })
        out.append(b"".join((MAGIC, _LEN.pack(len(header)), header, *blobs)))
    return out


def _decode(raw: bytes) -> tuple[dict, list[State], list[Send]]:
    """A part's header, states and sends."""
    if not raw.startswith(MAGIC):
        raise ValueError(f"not a journal part of this version (starts {raw[:8]!r})")
    (n,) = _LEN.unpack_from(raw, len(MAGIC))
    at = len(MAGIC) + _LEN.size
    header = orjson.loads(raw[at:at + n])
    at += n
    states: list[State] = []
    for t, k, size in header["s"]:
        states.append((t, k, raw[at:at + size]))
        at += size
    sends: list[Send] = []
    for t, p, key_size, size in header["o"]:
        key = None
        if key_size >= 0:
            key = raw[at:at + key_size]
            at += key_size
        sends.append((t, p, key, raw[at:at + size]))
        at += size
    if at != len(raw):
        raise ValueError(f"journal part {header['id']}/{header['i']}: the header names {at} bytes, the part has {len(raw)}")
    return header, states, sends


def last_complete(records: list[bytes]) -> Entry | None:
    """The last entry all of whose parts are among ``records`` (in journal order)."""
    parts: dict[str, dict[int, tuple[dict, list[State], list[Send]]]] = {}
    done: list[str] = []
    for raw in records:
        part = _decode(raw)
        header = part[0]
        got = parts.setdefault(header["id"], {})
        got[header["i"]] = part
        if len(got) == header["n"]:
            done.append(header["id"])
    if not done:
        return None
    got = parts[done[-1]]
    first = got[0][0]
    entry = Entry(ends=first["ends"], epoch=first.get("ep", 0))
    for i in range(len(got)):
        entry.states.extend(got[i][1])
        entry.sends.extend(got[i][2])
    return entry


class JournalUnreadable(Exception):
    """A journal partition could not be read back in time."""


class Journal:
    """Reads journal partitions back (one consumer, outside the group, shared by the stages)."""

    def __init__(self, kafka: KafkaAccess | str):
        self.kafka = KafkaAccess.of(kafka)
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def tail(self, topic: str, partition: int) -> Entry | None:
        """The last complete entry of a journal partition, or None. A read that does not finish
        within ``READ_SECONDS`` raises :class:`JournalUnreadable` (the worker stops and says so,
        rather than every stage waiting on this reader without a word)."""
        try:
            return await asyncio.wait_for(self._tail(topic, partition), READ_SECONDS)
        except asyncio.TimeoutError:
            raise JournalUnreadable(f"journal {topic} partition {partition}: its last entry could not be read "
                                    f"within {READ_SECONDS:.0f} s; is the broker reachable?") from None

    async def _tail(self, topic: str, partition: int) -> Entry | None:
        async with self._lock:
            consumer = await self._start()
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            stop = (await consumer.end_offsets([tp]))[tp]
            window = 8
            while True:  # back from the end in growing windows: incomplete entries (a crash loop)
                start = max(begin, stop - window)  # and parts written twice (producer retries) are skipped
                if start >= stop:
                    return None
                entry = last_complete(await self._read(consumer, tp, start, stop))
                if entry is not None or start == begin:
                    return entry
                window *= 4

    @staticmethod
    async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, stop: int) -> list[bytes]:
        consumer.seek(tp, start)
        records: list[bytes] = []
        while await consumer.position(tp) < stop:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            records.extend(r.value for r in batch.get(tp, ()) if r.offset < stop)
        return records

    async def _start(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = await started(AIOKafkaConsumer(**self.kafka.client(
                enable_auto_commit=False, group_id=None, fetch_max_bytes=64 * 1024 * 1024,
                max_partition_fetch_bytes=32 * 1024 * 1024)), self.kafka)
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def write_barriers(self, partitions: list[tuple[str, int]]) -> int:
        """With the workers stopped (``tuike replay --from``): end each (journal topic, partition)
        with an empty entry of the next epoch, so a new owner re-applies nothing older and what
        it numbers starts above everything numbered before. Returns the partitions written."""
        from aiokafka import AIOKafkaProducer

        epochs = {}
        for topic, p in partitions:
            last = await self.tail(topic, p)
            epochs[(topic, p)] = (last.epoch if last else 0) + 1
        producer = await started(AIOKafkaProducer(**self.kafka.client(acks="all", enable_idempotence=True)), self.kafka)
        try:
            for (topic, p), epoch in epochs.items():
                for part in encode(Entry(ends={}, epoch=epoch)):
                    await producer.send_and_wait(topic, part, partition=p)
        finally:
            await producer.stop()
        return len(partitions)
