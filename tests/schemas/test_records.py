"""Event files (contract §1): JSONL, JSONL.gz, Parquet, stdin; bad lines are kept with a reason."""
from __future__ import annotations

import gzip
import io
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.events import EVENT_MODELS, Item, OrderPaid, OrderRefunded, RefundItem
from schemas import records as inputs
from schemas.records import EventFileError, Record, event_arrow_schema, parse_record, read_records, write_parquet

DATA = Path(__file__).parent.parent / "data"
VALID = DATA / "valid_events.jsonl"
MIXED = DATA / "mixed.jsonl"


def _valid_dicts() -> list[dict]:
    return [orjson.loads(line) for line in VALID.read_bytes().splitlines() if line.strip()]


def test_jsonl_records_carry_source_position_raw_and_object() -> None:
    recs = list(read_records(VALID))
    lines = VALID.read_text("utf-8").splitlines()
    assert [r.position for r in recs] == list(range(1, len(lines) + 1))
    assert {r.source for r in recs} == {"valid_events.jsonl"}
    assert [r.raw for r in recs] == lines
    assert [r.obj for r in recs] == _valid_dicts()
    assert all(r.error is None for r in recs)


def test_read_records_accepts_str_paths() -> None:
    assert len(list(read_records(str(VALID)))) == len(_valid_dicts())


def test_every_valid_fixture_parses_to_its_type() -> None:
    for rec in read_records(VALID):
        event = parse_record(rec)
        assert not isinstance(event, str), event
        assert isinstance(event, EVENT_MODELS[rec.obj["type"]])


def test_blank_lines_skipped_positions_are_file_line_numbers() -> None:
    recs = {r.position: r for r in read_records(MIXED)}
    assert sorted(recs) == [1, 4, 5, 6, 7, 8]  # 2 is empty, 3 only spaces
    assert recs[1].raw.endswith("}")  # CRLF stripped
    assert recs[1].obj["event_id"] == "e-1" and recs[8].obj["event_id"] == "e-4"  # last line without newline


def test_bad_utf8_is_named_and_raw_keeps_replacement_characters() -> None:
    rec = {r.position: r for r in read_records(MIXED)}[4]
    line = MIXED.read_bytes().split(b"\n")[3]
    assert rec.obj is None
    column = line.index(b"\xff") + 1
    assert column == 93
    assert rec.error == "line is not valid UTF-8 (byte 0xff at byte 93)"
    assert rec.raw.endswith('"bad \ufffd\ufffd"}')
    assert parse_record(rec) == rec.error


def test_bad_json_names_the_column() -> None:
    rec = {r.position: r for r in read_records(MIXED)}[5]
    assert rec.obj is None
    assert rec.error == "bad JSON at column 41: unexpected character, expected a JSON value"
    assert rec.raw == '{"type": "order.completed", "event_id": oops}'


def test_json_that_is_not_an_object() -> None:
    rec = {r.position: r for r in read_records(MIXED)}[6]
    assert (rec.obj, rec.error, rec.raw) == (None, "line is a JSON array, not an object", "[1, 2]")
    assert parse_record(rec) == "line is a JSON array, not an object"


def test_float_money_is_not_converted_and_validation_names_it() -> None:
    rec = {r.position: r for r in read_records(MIXED)}[7]
    assert rec.obj["amount"] == 199.0 and isinstance(rec.obj["amount"], float)
    assert parse_record(rec) == (
        'order.refunded: amount: money must be a decimal string such as "199.00", got float 199.0'
    )


def test_utf8_bom_at_file_start_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.read_bytes())
    assert [r.obj for r in read_records(path)] == _valid_dicts()


def test_jsonl_gz_reads_like_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl.gz"
    path.write_bytes(gzip.compress(MIXED.read_bytes()))
    plain = [(r.position, r.raw, r.obj, r.error) for r in read_records(MIXED)]
    zipped = list(read_records(path))
    assert [(r.position, r.raw, r.obj, r.error) for r in zipped] == plain
    assert zipped[0].source == "mixed.jsonl.gz"


def test_truncated_gzip_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(VALID.read_bytes() * 50)[:-40])
    with pytest.raises(EventFileError, match="cut.jsonl.gz: cannot read the file"):
        list(read_records(path))


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(b"\n" + VALID.read_bytes()))))
    recs = list(read_records("-"))
    assert {r.source for r in recs} == {"stdin"}
    assert recs[0].position == 2
    assert [r.obj for r in recs] == _valid_dicts()



def test_gzip_on_stdin_is_read_as_gzip(monkeypatch: pytest.MonkeyPatch) -> None:
    packed = gzip.compress(VALID.read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(packed))))
    recs = list(read_records("-"))
    assert recs and all(r.error is None for r in recs)

def test_missing_file_and_unknown_extension_fail_before_reading(tmp_path: Path) -> None:
    with pytest.raises(EventFileError, match="no such event file"):
        read_records(tmp_path / "absent.jsonl")
    (tmp_path / "events.csv").write_text("a,b\n")
    with pytest.raises(EventFileError, match=r"events.csv: unknown event file type; expected one of \.jsonl, \.jsonl\.gz, \.parquet"):
        read_records(tmp_path / "events.csv")
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(EventFileError, match="fake.parquet: not a readable Parquet file"):
        read_records(tmp_path / "fake.parquet")


def test_event_file_error_is_a_value_error() -> None:
    assert issubclass(EventFileError, ValueError)


# --- Parquet -----------------------------------------------------------------------------


def test_parquet_round_trip_items_as_list_of_structs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "PARQUET_BATCH_ROWS", 4)  # several batches, and batches across row groups
    events = _valid_dicts() * 3
    path = tmp_path / "events.parquet"
    assert write_parquet(events, path, batch_rows=5) == len(events)
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-len(events) // 5)  # batches of 5 rows
    items_type = pq.read_schema(path).field("items").type
    assert pa.types.is_list(items_type) and pa.types.is_struct(items_type.value_type)

    recs = list(read_records(path))
    assert [r.position for r in recs] == list(range(1, len(events) + 1))
    assert [r.obj for r in recs] == events  # nulls of other types' columns dropped, money still strings
    assert all(r.source == "events.parquet" and r.error is None for r in recs)
    assert [orjson.loads(r.raw) for r in recs] == events  # compact JSON, keys in column order
    assert all(r.raw == orjson.dumps(r.obj).decode() for r in recs)
    assert all(not isinstance(parse_record(r), str) for r in recs)


def test_parquet_keeps_floats_and_turns_exact_types_into_strings(tmp_path: Path) -> None:
    """A foreign Parquet file: decimal128 money keeps its cents, float money is refused by name,
    a timestamp column keeps its offset and a naive one is refused."""
    schema = pa.schema([
        ("type", pa.string()), ("event_id", pa.string()), ("ts", pa.timestamp("ms", tz="UTC")),
        ("order_id", pa.string()), ("refund_id", pa.string()), ("amount", pa.decimal128(12, 2)),
        ("items", pa.list_(pa.struct([("sku", pa.string()), ("amount", pa.float64())]))),
    ])
    ts = datetime(2026, 11, 15, 2, 0, tzinfo=timezone.utc)
    rows = [
        {"type": "order.refunded", "event_id": "e1", "ts": ts, "order_id": "O1", "refund_id": "R1", "amount": Decimal("10.50")},
        {"type": "order.refunded", "event_id": "e2", "ts": ts, "order_id": "O1", "refund_id": "R2", "items": [{"sku": "A", "amount": 3.5}]},
    ]
    path = tmp_path / "foreign.parquet"
    write_parquet(rows, path, schema=schema)
    first, second = read_records(path)
    assert first.obj == {"type": "order.refunded", "event_id": "e1", "ts": "2026-11-15T02:00:00+00:00",
                         "order_id": "O1", "refund_id": "R1", "amount": "10.50"}
    assert isinstance(parse_record(first), OrderRefunded)
    assert second.obj["items"] == [{"sku": "A", "amount": 3.5}]
    assert parse_record(second) == (
        'order.refunded: items[0].amount: money must be a decimal string such as "199.00", got float 3.5'
    )

    naive = tmp_path / "naive.parquet"
    pq.write_table(pa.table({"type": ["order.completed"], "event_id": ["e"], "order_id": ["O"],
                             "ts": pa.array([datetime(2026, 11, 15, 10)], pa.timestamp("s"))}), naive)
    (rec,) = read_records(naive)
    assert "ts: timestamp has no UTC offset: '2026-11-15T10:00:00'" in parse_record(rec)


def test_parquet_null_items_and_null_struct_fields(tmp_path: Path) -> None:
    """The fast column-wise items path and the generic one give the same JSON objects."""
    items_t = pa.list_(pa.struct([("sku", pa.string()), ("amount", pa.string())]))
    table = pa.table({
        "type": ["order.refunded"] * 4,
        "items": pa.array([[{"sku": "A", "amount": "1.00"}], None, [], [{"sku": "B", "amount": None}]], items_t),
    })
    path = tmp_path / "n.parquet"
    pq.write_table(table, path)
    objs = [r.obj for r in read_records(path)]
    assert objs == [
        {"type": "order.refunded", "items": [{"sku": "A", "amount": "1.00"}]},
        {"type": "order.refunded"},
        {"type": "order.refunded", "items": []},
        {"type": "order.refunded", "items": [{"sku": "B"}]},
    ]
    with_null_item = pa.table({"items": pa.array([[None, {"sku": "C", "amount": "2.00"}]], items_t)})
    pq.write_table(with_null_item, path)
    assert [r.obj for r in read_records(path)] == [{"items": [None, {"sku": "C", "amount": "2.00"}]}]


def test_parquet_sliced_batches_use_the_right_items(tmp_path: Path) -> None:
    """ListArray offsets of a slice do not start at 0."""
    items_t = pa.list_(pa.struct([("sku", pa.string())]))
    col = pa.array([[{"sku": str(i)}] * (i % 3) for i in range(10)], items_t).slice(3, 5)
    assert inputs._column_values(col) == [[{"sku": str(i)}] * (i % 3) for i in range(3, 8)]


def test_write_parquet_refuses_unknown_fields_and_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"record 2: field\(s\) \['colour'\] not in the Parquet schema"):
        write_parquet([{"type": "click"}, {"type": "click", "colour": "red"}], tmp_path / "x.parquet")
    with pytest.raises(ValueError, match=r"records 1\.\.1 do not fit the Parquet schema"):
        write_parquet([{"type": "order.refunded", "amount": 1.5}], tmp_path / "y.parquet")


def test_arrow_schema_covers_every_model_field() -> None:
    schema = event_arrow_schema()
    for model in EVENT_MODELS.values():
        assert set(model.model_fields) <= set(schema.names), model.__name__
    items = schema.field("items").type.value_type
    assert {items.field(i).name for i in range(items.num_fields)} == set(Item.model_fields) | set(RefundItem.model_fields)
    assert items.field("qty").type == pa.int64() and schema.field("ts").type == pa.string()
    assert schema.field("amount").type == pa.string()


def test_parsed_order_keeps_exact_money(tmp_path: Path) -> None:
    path = tmp_path / "o.parquet"
    write_parquet([e for e in _valid_dicts() if e["type"] == "order.paid"], path)
    (rec,) = read_records(path)
    order = parse_record(rec)
    assert isinstance(order, OrderPaid)
    assert [i.price for i in order.items] == [Decimal("199.00"), Decimal("9.9")]
    assert [i.qty for i in order.items] == [2, 1]


def test_record_is_frozen_with_slots() -> None:
    rec = Record("f", 1, "{}", {}, None)
    with pytest.raises(AttributeError):
        rec.position = 2  # type: ignore[misc]
    assert not hasattr(rec, "__dict__")


def test_jsonl_read_rate_guard(tmp_path: Path) -> None:
    """Regression guard only (measured ~450k lines/s, see schemas/records.py); loose for shared CI."""
    line = VALID.read_bytes().splitlines()[5] + b"\n"
    path = tmp_path / "many.jsonl"
    path.write_bytes(line * 100_000)
    start = time.perf_counter()
    count = sum(1 for _ in read_records(path))
    rate = count / (time.perf_counter() - start)
    assert count == 100_000
    assert rate > 100_000, f"{rate:,.0f} lines/s"
