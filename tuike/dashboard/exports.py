"""Dashboard exports: one shop's rows, personal data pseudonymised unless raw is asked for.

The table is written by :func:`tuike.backoffice.export.export_table` (Parquet, the ledger's own
types) into a temporary file, then read back a record batch at a time and rewritten in the format
asked for, keeping the shop's rows only and replacing its personal columns:

- a row is the shop's when its ``shop_id`` is, or its ``order_id`` is one of the shop's orders
  (``orders_raw.shop_id``); rows of no order (``order_id`` '') and tables tied to no order (clicks,
  binds, promoters, settlements, …) only when the scope admits rows of no shop (one shop configured);
  with several shops such a table is refused rather than given to every shop;
- :data:`PERSONAL` columns become keyed pseudonyms (:class:`engine.pseudonyms.Pseudonyms`, the
  ``privacy.pseudonym_key``; values already protected on the way in are kept as they are): the same person has the same pseudonym in every export, so analysts can
  still join and count. Without a key they are dropped. :data:`DROPPED` columns are always dropped
  when pseudonymising: ``payout_account`` (no pseudonym is defined for it), ``sealed`` (the
  person's encrypted values) and ``raw`` (dead-letter bodies: free text with names and addresses).
  Promoter ids stay: they are who the money is for.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.pseudonyms import Pseudonyms, is_pseudonym
from schemas.analytics import quote

PERSONAL = ("customer_id", "visitor_id", "device_id", "ip", "user_agent", "payout_account")
DROPPED = ("sealed", "raw")


class ExportRefused(ValueError):
    """An export this token may not have; the message says why (403)."""


@dataclass(frozen=True)
class ExportScope:
    shops: tuple[str, ...]  # orders_raw.shop_id values that are the token's shop
    unowned: bool  # rows tied to no order or shop are visible
    pseudonyms: Pseudonyms | None  # None: personal columns are dropped
    raw: bool = False  # personal columns as stored (asked for explicitly, and audited)

    def removed(self, names: list[str]) -> list[str]:
        """The columns left out of the export (the rest are kept, personal ones pseudonymised)."""
        if self.raw:
            return []
        gone = DROPPED if self.pseudonyms else DROPPED + PERSONAL
        return [n for n in names if n in gone]


def shop_orders(ledger: Any, scope: ExportScope) -> pa.Array:
    sql = f"SELECT DISTINCT order_id FROM orders_raw WHERE shop_id IN ({', '.join(quote(s) for s in scope.shops)})"
    return pa.array([r[0] for r in ledger.query(sql).rows], pa.string())


def rewrite(ledger: Any, source: str, fmt: str, scope: ExportScope) -> tuple[str, list[str]]:
    """The export at ``source`` (Parquet) as the shop may see it, in ``fmt``: a new temporary file
    and the columns removed. :class:`ExportRefused` for a table with no shop to tell."""
    reader = pq.ParquetFile(source)
    names = reader.schema_arrow.names
    if "shop_id" not in names and "order_id" not in names and not scope.unowned:
        raise ExportRefused("this table is tied to no shop (it has no order_id or shop_id), and several shops "
                            "are configured: only a single-shop tuike exports it from the dashboard")
    orders = shop_orders(ledger, scope) if "order_id" in names and "shop_id" not in names else None
    removed = scope.removed(names)
    schema = pa.schema([f for f in reader.schema_arrow if f.name not in removed])
    fd, path = tempfile.mkstemp(prefix="tuike-export-", suffix=f".{fmt}")
    try:
        with os.fdopen(fd, "wb") as out:
            writer = pq.ParquetWriter(out, schema, compression="zstd") if fmt == "parquet" else pacsv.CSVWriter(out, schema)
            with writer:
                for batch in reader.iter_batches():
                    table = _shop_table(batch, scope, orders, schema)
                    if table.num_rows:
                        writer.write_table(table)
    except BaseException:
        os.unlink(path)
        raise
    return path, removed


def _shop_table(batch: pa.RecordBatch, scope: ExportScope, orders: pa.Array | None, schema: pa.Schema) -> pa.Table:
    table = pa.Table.from_batches([batch])
    if "shop_id" in table.column_names:
        table = table.filter(pc.is_in(table["shop_id"], pa.array(scope.shops, pa.string())))
    elif orders is not None:
        keep = pc.is_in(table["order_id"], orders)
        if scope.unowned:
            keep = pc.or_(keep, pc.equal(table["order_id"], ""))
        table = table.filter(keep)
    columns = []
    for field in schema:
        column = table[field.name]
        if not scope.raw and scope.pseudonyms is not None and field.name in PERSONAL:
            column = _pseudonymised(scope.pseudonyms, field.name, column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _pseudonymised(ps: Pseudonyms, name: str, column: pa.ChunkedArray) -> pa.Array:
    """Each non-empty value replaced by its pseudonym ('' stays '': the field was absent)."""
    seen: dict[str, str] = {}

    def one(v: str | None) -> str | None:
        if v and is_pseudonym(v):  # protected on the way in (topologies/protection.py): as the ledger has it
            return v
        if v and v not in seen:
            seen[v] = ps.of(name, v)
        return seen[v] if v else v

    return pa.array([one(v) for v in column.to_pylist()], pa.string())
