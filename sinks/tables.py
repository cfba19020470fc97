"""Whole tables out of a ledger and back in, as Arrow tables: what ``tuike backup`` and
``tuike restore`` move, on chDB and on a ClickHouse server alike.

A table is read with its ClickHouse column types (``DESCRIBE TABLE``) and turned into Arrow
types that keep every value exactly — money as ``decimal128`` of the column's scale, times as
UTC seconds — so a backup written from one back end restores into the other. Columns computed by
the table (``MATERIALIZED``, ``ALIAS``) are left out: they are computed again on insert.

Every base table of the database is a table to move (views hold no data and come from the DDL),
so tables created on first use (the dashboard audit) and tables a later tuike adds are covered
without a list to keep up to date.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from sinks.errors import LedgerError

_COMPUTED = ("MATERIALIZED", "ALIAS")
_INTS = {f"{s}Int{n}": getattr(pa, f"{s.lower()}int{n}")() for s in ("", "U") for n in (8, 16, 32, 64)}
_DECIMAL = re.compile(r"^Decimal(?:32|64|128)?\((\d+),\s*(\d+)\)$")
_WRAPPER = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")
_UTC_SECONDS = pa.timestamp("s", tz="UTC")


@dataclass(frozen=True)
class TableLayout:
    """One base table: its engine, the statement that created it, and the columns to move."""

    name: str
    engine: str
    create: str
    columns: tuple[tuple[str, str], ...]  # (name, ClickHouse type), computed columns left out


def arrow_type(ch_type: str) -> pa.DataType:
    """The Arrow type that holds a ClickHouse column's values exactly."""
    wrapped = _WRAPPER.match(ch_type)
    if wrapped:
        return arrow_type(wrapped.group(2))
    if ch_type in _INTS:
        return _INTS[ch_type]
    if ch_type.startswith(("String", "FixedString")):
        return pa.string()
    if ch_type.startswith("DateTime"):
        return _UTC_SECONDS
    if ch_type in ("Date", "Date32"):
        return pa.date32()
    if ch_type in ("Float32", "Float64"):
        return pa.float64()
    m = _DECIMAL.match(ch_type)
    if m:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    raise LedgerError(f"column type {ch_type} has no portable form in a backup: add it to sinks/tables.py")


def base_tables(ledger: Any) -> list[TableLayout]:
    """Every table of the ledger's database that holds data (views left out), by name."""
    rows = ledger.query("SELECT name, engine, create_table_query FROM system.tables "
                        "WHERE database = currentDatabase() ORDER BY name").rows
    out = []
    for name, engine, create in rows:
        if engine.endswith("View") or name.startswith(".inner"):
            continue
        described = ledger.query(f"DESCRIBE TABLE {name}").rows
        columns = tuple((r[0], r[1]) for r in described if (r[2] if len(r) > 2 else "") not in _COMPUTED)
        out.append(TableLayout(name, engine, create, columns))
    return out


def read_table(ledger: Any, layout: TableLayout) -> pa.Table:
    """Every row of a table (duplicates not yet merged away included: they collapse again in the
    restored table, the same way), as Arrow."""
    names = [n for n, _ in layout.columns]
    schema = pa.schema([(n, arrow_type(t)) for n, t in layout.columns])
    sql = f"SELECT {', '.join(_ident(n) for n in names)} FROM {layout.name}"
    fast = _chdb_arrow(ledger, sql)
    if fast is not None:
        return pa.Table.from_arrays([_cast(fast.column(i), schema.field(i).type) for i in range(len(names))],
                                    schema=schema)
    rows = ledger.query(sql).rows
    columns = list(zip(*rows)) if rows else [() for _ in names]
    return pa.Table.from_arrays([pa.array([_plain(v) for v in col], f.type) for col, f in zip(columns, schema)],
                                schema=schema)


def write_table(ledger: Any, table: str, data: pa.Table, chunk_rows: int = 100_000) -> None:
    """Insert an Arrow table read by :func:`read_table` into ``table`` of the ledger's database
    (Parquet keeps times in milliseconds: they are made seconds again)."""
    data = pa.Table.from_arrays(
        [c.cast(_UTC_SECONDS) if pa.types.is_timestamp(c.type) else c for c in data.columns], names=data.column_names)
    for start in range(0, data.num_rows, chunk_rows):
        _insert(ledger, table, data.slice(start, chunk_rows))


def _insert(ledger: Any, table: str, part: pa.Table) -> None:
    from sinks.chdb_sink import ChdbLedger

    cols = ", ".join(_ident(n) for n in part.column_names)
    if isinstance(ledger, ChdbLedger):
        # chDB's Python() table function finds the table by variable name in the calling frame
        _tuike_restore_part = part  # noqa: F841
        # optimize_on_insert would collapse copies inside the block: keep every row the backup holds
        ledger._run(f"INSERT INTO {ledger.database}.{table} ({cols}) SELECT {cols} FROM Python(_tuike_restore_part) "
                    "SETTINGS optimize_on_insert = 0")
        return
    client = ledger._live()  # the server: a columnar insert, as the ledger's own write does
    values = [_driver_values(part.column(i)) for i in range(part.num_columns)]
    ledger._retrying(lambda: client.execute(f"INSERT INTO {table} ({cols}) VALUES",
                                            [list(v) for v in values], columnar=True))


def truncate(ledger: Any, table: str) -> None:
    ledger.query(f"TRUNCATE TABLE {_ident(table)}")


def row_count(ledger: Any, table: str) -> int:
    return int(ledger.query(f"SELECT count() FROM {_ident(table)}").rows[0][0])


def _chdb_arrow(ledger: Any, sql: str) -> pa.Table | None:
    """chDB hands Arrow over directly (much faster than its JSON); None on the server."""
    from sinks.chdb_sink import ChdbLedger

    if not isinstance(ledger, ChdbLedger):
        return None
    return ledger._run(sql, "ArrowTable")


def _cast(column: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    if column.type == to:
        return column
    if pa.types.is_timestamp(to) and pa.types.is_integer(column.type):  # chDB: DateTime as epoch seconds
        return column.cast(pa.int64()).cast(to)
    return column.cast(to)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _driver_values(column: pa.ChunkedArray) -> list:
    """clickhouse-driver's values for a column: DateTime as epoch seconds, as the ledger writes them."""
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.int64()).to_pylist()
    return column.to_pylist()


def _ident(name: str) -> str:
    return f"`{name}`"
