"""Ledger rows on the terminal: an aligned table for people, CSV and JSON for programs (``--format``)."""
from __future__ import annotations

import argparse
import csv
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Sequence

from tuike.cli.common import EXIT_OK, OperationalError, UsageError, _read_ledger


def _print_query(args: argparse.Namespace, sql: str) -> int:
    """Run SQL on the ledger (embedded, or --clickhouse) through its read-only door
    (sinks/readonly.py) and print it in --format. Refused SQL is bad input (2) and never opens
    the ledger."""
    from sinks import LedgerError, QueryError, ReadOnlyRefused, read_only_sql

    try:
        read_only_sql(sql)
    except ReadOnlyRefused as exc:
        raise UsageError(f"tuike query runs {exc}") from None
    ledger = _read_ledger(args)
    try:
        result = ledger.read(sql)
    except QueryError as exc:  # the SQL is the user's input: the database's own message
        raise UsageError(f"SQL error: {_first_lines(str(exc))}") from None
    except LedgerError as exc:
        raise OperationalError(str(exc).strip()) from None
    finally:
        ledger.close()
    write = {"table": _write_table, "csv": _write_csv, "json": _write_json}[args.format]
    write(list(result.columns), list(result.types or []), result.rows, sys.stdout)
    return EXIT_OK


def _first_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[:n]) if lines else text


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _write_table(columns: list[str], types: list[str], rows: Sequence[Sequence[Any]], out) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    right = [bool(rows) and all(_numeric(row[i]) or row[i] is None for row in rows) for i in range(len(columns))]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(widths[i]) if right[i] else v.ljust(widths[i]) for i, v in enumerate(values)).rstrip()

    out.write(line(list(columns)) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write(line(r) + "\n")
    out.write(f"({len(rows):,} row{'s' if len(rows) != 1 else ''})\n")


def _write_csv(columns: list[str], types: list[str], rows: Sequence[Sequence[Any]], out) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else (v.isoformat() if isinstance(v, (datetime, date)) else _cell(v)) for v in row])


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)  # money stays a decimal string, as in the events
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    raise TypeError(f"cannot encode {type(v).__name__} as JSON")


def _write_json(columns: list[str], types: list[str], rows: Sequence[Sequence[Any]], out) -> None:
    """A JSON array of objects, one per line; Decimal as string, time as RFC 3339."""
    import orjson

    opt = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
    out.write("[")
    for i, row in enumerate(rows):
        obj = dict(zip(columns, row))
        out.write(("\n" if i == 0 else ",\n") + orjson.dumps(obj, default=_json_default, option=opt).decode())
    out.write("\n]\n" if rows else "]\n")
