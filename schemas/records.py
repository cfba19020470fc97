"""Reading event files (contract §1): JSON Lines (``.jsonl``, ``.jsonl.gz``, ``-`` for stdin) and Parquet.

Every non-blank line or row becomes one :class:`Record`, including the ones that cannot be
decoded: a bad line is not dropped silently but carried with its position and the reason,
so the pipeline can send it to the dead letters and go on. Decoding is orjson's, unchanged:
``199.00`` arrives as a float, and event validation refuses it by name rather than guessing
at cents here.

Measured read rate (2-core machine shared with other jobs, Python 3.11, orjson 3.13, pyarrow 26;
``python -m schemas.records FILE`` reads a file fully and prints the rate): 1M order.paid events of
about 330 bytes with 2 items each: .jsonl 450k-500k lines/s, .jsonl.gz 280k-380k lines/s,
Parquet 205k-225k rows/s. (Validating them with ``parse_record`` then runs at about 115k/s.)
"""
from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, get_args

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.events import EVENT_MODELS, Event, InvalidEvent, Item, RefundItem, SettledLine, validate_event

BOM = b"\xef\xbb\xbf"
SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
PARQUET_BATCH_ROWS = 8192


@dataclass(frozen=True, slots=True)
class Record:
    """One line or row of an event file, decoded or not."""

    source: str  # file base name, or "stdin"
    position: int | str  # 1-based line number (JSONL), row number (Parquet), "partition:offset" (Kafka)
    raw: str  # the line without its newline (invalid UTF-8 replaced); Parquet: the row as compact JSON
    obj: dict | None  # the decoded JSON object; None when it could not be decoded
    error: str | None  # why it could not be decoded, e.g. "bad JSON at column 17: …"


class EventFileError(ValueError):
    """The file as a whole cannot be read (missing, unknown kind, damaged): a bad-input error."""


def read_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Records of an event file, streamed. Raises :class:`EventFileError` at once for a missing
    file or an unknown extension (before the first record), or later for a damaged gzip/Parquet."""
    if str(path) == "-":
        stdin = sys.stdin.buffer
        if stdin.peek(2)[:2] == b"\x1f\x8b":  # `zcat` forgotten: gzip on stdin is read as gzip
            return _jsonl_records(gzip.GzipFile(fileobj=stdin), "stdin")
        return _jsonl_records(stdin, "stdin")
    p = Path(path)
    kind = _kind(p)
    if not p.is_file():
        raise EventFileError(f"{p}: no such event file")
    if kind == ".parquet":
        return _parquet_records(_open_parquet(p), p.name)
    opener = gzip.open if kind == ".jsonl.gz" else open
    return _jsonl_file(p, opener)


def parse_record(rec: Record) -> Event | str:
    """The typed event, or the reason it is rejected (the text that goes to the dead letters)."""
    if rec.obj is None:
        return rec.error or "not a JSON object"
    try:
        return validate_event(rec.obj)
    except InvalidEvent as exc:
        return str(exc)


def _kind(p: Path) -> str:
    """The file kind by its name; an unknown one is refused rather than guessed."""
    name = p.name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise EventFileError(f"{p}: unknown event file type; expected one of {', '.join(SUFFIXES)} (or - for stdin)")


# --- JSON Lines --------------------------------------------------------------------------


def _jsonl_file(p: Path, opener: Any) -> Iterator[Record]:
    """Lines of a plain or gzip file; a damaged gzip stream becomes an EventFileError."""
    with opener(p, "rb") as stream:
        reader = _jsonl_records(stream, p.name)
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                raise EventFileError(f"{p}: cannot read the file: {exc}") from None
            yield rec


def _jsonl_records(stream: IO[bytes], source: str) -> Iterator[Record]:
    """One record per non-blank line."""
    for position, line in enumerate(stream, 1):
        if position == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        body = line.rstrip(b"\r\n")
        rec = decode_record(source, position, body)
        if rec is not None:
            yield rec


def records_of(events: list[dict], source: str, at: str = "") -> list[Record]:
    """Events built in code (``order.settled`` by tuike settle, a webhook's events) as records of a
    source, numbered from 1 (within the request ``at``: ``<request>#1``)."""
    return [Record(source, f"{at}#{i}" if at else i, orjson.dumps(e).decode(), e, None) for i, e in enumerate(events, 1)]


def decode_record(source: str, position: int | str, body: bytes) -> Record | None:
    """One JSON object as a record (a Kafka message value, a line): the hot path is one orjson
    call; the slow path names the problem. None for a blank line."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if body.strip():
            return _bad_line(source, position, body, exc)
        return None
    if type(obj) is dict:
        return Record(source, position, body.decode("utf-8"), obj, None)  # orjson checked the UTF-8
    return Record(source, position, body.decode("utf-8"), None, f"line is a JSON {_json_kind(obj)}, not an object")


def _bad_line(source: str, position: int, body: bytes, exc: orjson.JSONDecodeError) -> Record:
    """Name the problem: invalid UTF-8 (with its byte column) before JSON syntax (with its column)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as ude:
        bad = body[ude.start]
        raw = body.decode("utf-8", errors="replace")
        return Record(source, position, raw, None, f"line is not valid UTF-8 (byte 0x{bad:02x} at byte {ude.start + 1})")
    return Record(source, position, text, None, f"bad JSON at column {exc.colno}: {exc.msg}")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


# --- Parquet -----------------------------------------------------------------------------


def _open_parquet(p: Path) -> pq.ParquetFile:
    """Open eagerly so a file that is not Parquet is reported before any record."""
    try:
        return pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as exc:
        raise EventFileError(f"{p}: not a readable Parquet file: {exc}") from None


def _parquet_records(pf: pq.ParquetFile, source: str) -> Iterator[Record]:
    """Rows in batches (streaming); each row becomes the JSON object a JSONL line would give."""
    position = 0
    batches = pf.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise EventFileError(f"{source}: cannot read Parquet after row {position}: {exc}") from None
        for obj in _batch_objects(batch):
            position += 1
            yield Record(source, position, orjson.dumps(obj, default=str).decode("utf-8"), obj, None)


def _batch_objects(batch: pa.RecordBatch) -> Iterator[dict]:
    """Column-wise conversion, 3x faster than ``to_pylist``: all-null columns (the fields of other
    event types) are skipped, and only non-plain columns (items, decimals…) are walked in Python."""
    names, columns = [], []
    for name, col in zip(batch.schema.names, batch.columns):
        if col.null_count == len(col):
            continue
        names.append(name)
        columns.append(_column_values(col))
    for row in zip(*columns):
        yield {k: v for k, v in zip(names, row) if v is not None}


def _column_values(col: pa.Array) -> list:
    """JSON values of one column; list<struct> (items) the fast way when it has no null items."""
    if _plain(col.type):
        return col.to_pylist()
    if pa.types.is_list(col.type) and pa.types.is_struct(col.type.value_type) \
            and col.type.value_type.num_fields and col.values.null_count == 0:
        return _list_of_structs(col)
    return [None if v is None else _json_value(v) for v in col.to_pylist()]


def _list_of_structs(col: pa.ListArray) -> list[list[dict] | None]:
    """Build the item dicts from the struct's child columns instead of per-item Python objects."""
    offsets = col.offsets.to_pylist()
    base = offsets[0]
    structs = col.values.slice(base, offsets[-1] - base)
    keys = [structs.type.field(i).name for i in range(structs.type.num_fields)]
    children = [_column_values(child) for child in structs.flatten()]
    items = [{k: v for k, v in zip(keys, vals) if v is not None} for vals in zip(*children)]
    valid = col.is_valid().to_pylist() if col.null_count else None
    return [
        items[offsets[i] - base:offsets[i + 1] - base] if valid is None or valid[i] else None
        for i in range(len(col))
    ]


def _plain(t: pa.DataType) -> bool:
    """Arrow types whose Python values are already JSON values."""
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) \
        or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _json_object(row: dict) -> dict:
    """Drop nulls (an absent optional field, as in JSON), recursively into list<struct> items."""
    return {k: _json_value(v) for k, v in row.items() if v is not None}


def _json_value(value: Any) -> Any:
    """Arrow values as JSON values. Exact types become strings (a decimal128 keeps its cents,
    a timestamp its offset: naive ones are then refused by validation); floats stay floats."""
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, dict):
        return _json_object(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _struct(*models: type) -> pa.DataType:
    """A list of structs holding the fields of ``models`` (ints int64, the rest strings)."""
    fields: dict[str, pa.DataType] = {}
    for model in models:
        for name, info in model.model_fields.items():
            whole = info.annotation is int or all(isinstance(a, int) for a in get_args(info.annotation) or ("",))
            fields.setdefault(name, pa.int64() if whole else pa.string())
    return pa.list_(pa.struct(fields))


def event_arrow_schema() -> pa.Schema:
    """One Parquet schema for every event type: the union of the models' fields, all strings
    (money and ts included, as in JSON), qty int64, items a list of structs that holds both
    order items {sku, category, price, qty} and refund items {sku, amount}, and the lines of
    ``order.settled`` {sku, beneficiary_id, level}."""
    lists = {"items": _struct(Item, RefundItem), "lines": _struct(SettledLine)}
    fields: dict[str, pa.DataType] = {}
    for model in EVENT_MODELS.values():
        for name in model.model_fields:
            fields.setdefault(name, lists.get(name, pa.string()))
    return pa.schema(list(fields.items()))


def write_parquet(
    records: Iterable[dict],
    path: str | os.PathLike[str],
    *,
    schema: pa.Schema | None = None,
    batch_rows: int = 65536,
) -> int:
    """Write event dicts (money as strings) to Parquet in row groups; return the row count.
    A key the schema lacks is refused rather than dropped: give ``schema`` for odd test files."""
    schema = schema or event_arrow_schema()
    known = set(schema.names)
    count = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        batch: list[dict] = []
        for rec in records:
            extra = rec.keys() - known
            if extra:
                raise ValueError(f"record {count + len(batch) + 1}: field(s) {sorted(extra)} not in the Parquet schema")
            batch.append(rec)
            if len(batch) >= batch_rows:
                count += _write_batch(writer, batch, schema, count)
                batch = []
        if batch:
            count += _write_batch(writer, batch, schema, count)
    return count


def _write_batch(writer: pq.ParquetWriter, batch: list[dict], schema: pa.Schema, done: int) -> int:
    try:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    except (pa.ArrowException, TypeError) as exc:
        raise ValueError(f"records {done + 1}..{done + len(batch)} do not fit the Parquet schema: {exc}") from None
    return len(batch)


def _main(argv: list[str]) -> int:
    """``python -m schemas.records FILE…``: count records and time the read (the figure in the docstring)."""
    import time

    for name in argv:
        start = time.perf_counter()
        total = bad = 0
        for rec in read_records(name):
            total += 1
            bad += rec.obj is None
        secs = time.perf_counter() - start
        print(f"{name}: {total} records ({bad} undecodable) in {secs:.2f}s = {total / secs:,.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
