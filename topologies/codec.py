"""What travels on tuike's internal topics, as bytes (orjson), and back.

- **Routed messages** (``gN.to-engine``): a chunk of
  engine :class:`~engine.dataflow.Message` s bound for one partition, in order. Packing a
  batch's messages per partition into one Kafka record keeps each key's order (one partition,
  one record, list order) and spares the per-record cost of Faust, which dominates its
  throughput (``../shared/notes/stack.md``). A message carrying an input event (a click re-keyed
  by customer) carries the event's JSON and is validated again on arrival.
- **Sink chunks** (``gN.ledger``): ledger rows and fact rows for the ClickHouse sink. Money is a
  decimal string, time epoch milliseconds (ledger) or seconds (facts); never a float.
- **Dead letters** (``tuike.deadletter``, contract §1.3): one record per rejected input, keyed by
  the original key, with the reason.
- **The origin of an input record** (headers ``tuike-source``, ``tuike-position``): the file and
  line (or request) ``tuike produce`` and the gateway published it from, so a worker that refuses
  it writes the dead letter ``tuike run`` would have written for that line.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from engine.dataflow import Message
from schemas.dead_letter import DeadLetter
from schemas.events import validate_event
from schemas.ledger_entry import LedgerEntry
from schemas.records import Record, decode_record

_LEDGER_FIELDS = LedgerEntry.__slots__


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return int(value.timestamp())
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def encode_messages(messages: list[Message]) -> bytes:
    rows = []
    for m in messages:
        body = orjson.loads(m.body.model_dump_json()) if m.kind == "event" else m.body
        rows.append([m.processor, m.key, m.kind, body, m.cause])
    return dumps(rows)


def decode_messages(data: bytes) -> list[Message]:
    out = []
    for processor, key, kind, body, cause in orjson.loads(data):
        out.append(Message(processor, key, kind, validate_event(body) if kind == "event" else body, cause))
    return out


def encode_sink(entries: list[LedgerEntry], facts: dict[str, list[dict]]) -> bytes:
    return dumps({"e": [[getattr(e, f) for f in _LEDGER_FIELDS] for e in entries], "f": facts})


def decode_sink(data: bytes) -> tuple[list[LedgerEntry], dict[str, list[dict]]]:
    obj = orjson.loads(data)
    entries = []
    for row in obj["e"]:
        fields = dict(zip(_LEDGER_FIELDS, row))
        fields["amount"] = Decimal(fields["amount"])
        fields["rate"] = Decimal(fields["rate"])
        entries.append(LedgerEntry(**fields))
    return entries, obj["f"]


def encode_dead_letter(d: DeadLetter) -> bytes:
    return dumps({f: getattr(d, f) for f in DeadLetter.__slots__})


def decode_dead_letter(data: bytes) -> DeadLetter:
    obj = orjson.loads(data)
    return DeadLetter(**{f: obj[f] for f in DeadLetter.__slots__})


SOURCE, POSITION = "tuike-source", "tuike-position"


def origin_headers(rec: Record) -> list[tuple[str, bytes]]:
    return [(SOURCE, rec.source.encode()), (POSITION, str(rec.position).encode())]


def input_record(topic: str, partition: int, offset: int, value: bytes | None, headers: Any) -> Record:
    """An input topic's message as the record it was published from (its origin headers), or, from
    another producer, as a record of the topic at ``partition:offset``."""
    origin = dict(headers or ())
    source, position = origin.get(SOURCE), origin.get(POSITION)
    if source is not None and position is not None:
        where = source.decode("utf-8", "replace"), position.decode("utf-8", "replace")
    else:
        where = topic, f"{partition}:{offset}"
    rec = decode_record(*where, value or b"")
    return rec if rec is not None else Record(*where, "", None, "empty message: expected one JSON event")
