"""What writing the ledger needs: the :class:`Batch` a sink writes, the column layout of each
table, and turning a batch into typed columns (exact money, epoch-second timestamps), one
:class:`TableColumns` per insert.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from operator import attrgetter, itemgetter
from typing import Any

from schemas.dead_letter import DeadLetter
from schemas.ledger_entry import LedgerEntry
from sinks.errors import LedgerError


@dataclass
class Batch:
    entries: list[LedgerEntry] = field(default_factory=list)
    facts: dict[str, list[dict]] = field(default_factory=dict)  # table -> rows as produced by facts_of
    dead_letters: list[DeadLetter] = field(default_factory=list)  # received_at = when the sink writes them
    generation: int = 0  # the ledger generation the entries belong to (topologies/generation.py)

    def __len__(self) -> int:
        return len(self.entries) + sum(len(r) for r in self.facts.values()) + len(self.dead_letters)


# ---------------------------------------------------------------------------------------------
# Table layouts (kept equal to schemas/ddl.sql; tests/sinks/test_sinks.py checks it)

# Column kinds: "s" String, "dt" DateTime('UTC'), "u8" UInt8, "u32" UInt32,
# "d2" Decimal(18, 2), "d6" Decimal(18, 6).
LEDGER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("entry_id", "s"), ("event_id", "s"), ("ts", "dt"), ("order_id", "s"), ("item_sku", "s"),
    ("customer_id", "s"), ("beneficiary_id", "s"), ("level", "u8"), ("kind", "s"),
    ("amount", "d2"), ("rate", "d6"), ("rule_id", "s"), ("currency", "s"), ("status_after", "s"),
)
DEAD_LETTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("dead_letter_id", "s"), ("source", "s"), ("position", "s"), ("key", "s"), ("raw", "s"),
    ("reason", "s"), ("received_at", "dt"),
)
FACT_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "orders": (
        ("event_id", "s"), ("order_id", "s"), ("ts", "dt"), ("customer_id", "s"), ("currency", "s"),
        ("shop_id", "s"), ("promoter_id", "s"), ("click_id", "s"), ("device_id", "s"), ("ip", "s"),
        ("item_count", "u32"), ("paid_amount", "d2"), ("sealed", "s"),
    ),
    "order_items": (
        ("order_id", "s"), ("sku", "s"), ("category", "s"), ("price", "d2"), ("qty", "u32"),
        ("paid_amount", "d2"), ("ts", "dt"),
    ),
    "order_events": (
        ("event_id", "s"), ("type", "s"), ("order_id", "s"), ("ts", "dt"), ("refund_id", "s"),
        ("amount", "d2"), ("detail", "s"),
    ),
    "clicks": (
        ("event_id", "s"), ("click_id", "s"), ("ts", "dt"), ("promoter_id", "s"), ("visitor_id", "s"),
        ("customer_id", "s"), ("device_id", "s"), ("ip", "s"), ("user_agent", "s"), ("sku", "s"),
        ("campaign", "s"), ("parent_click_id", "s"), ("sealed", "s"),
    ),
    "bindings": (
        ("event_id", "s"), ("ts", "dt"), ("customer_id", "s"), ("promoter_id", "s"), ("via", "s"),
        ("click_id", "s"),
    ),
    "promoters": (
        ("event_id", "s"), ("type", "s"), ("ts", "dt"), ("promoter_id", "s"), ("parent_id", "s"),
        ("device_id", "s"), ("ip", "s"), ("reason", "s"), ("sealed", "s"),
    ),
    "cascade_nodes": (
        ("click_id", "s"), ("root_id", "s"), ("parent_click_id", "s"), ("depth", "u32"), ("ts", "dt"),
        ("promoter_id", "s"), ("campaign", "s"), ("sku", "s"),
    ),
    "cascade_stats": (
        ("root_id", "s"), ("version", "u32"), ("reach", "u32"), ("depth", "u32"), ("breadth", "u32"),
        ("conversions", "u32"), ("gmv", "d2"), ("first_ts", "dt"), ("last_ts", "dt"), ("promoter_id", "s"),
        ("campaign", "s"),
    ),
    "cascade_forecasts": (
        ("root_id", "s"), ("window_hours", "d6"), ("made_at", "dt"), ("size_now", "u32"), ("early_size", "u32"),
        ("trained_on", "u32"), ("size", "d6"), ("low", "d6"), ("high", "d6"), ("k_factor", "d6"), ("k_low", "d6"),
        ("k_high", "d6"), ("method", "s"),
    ),
    "order_standings": (
        ("generation", "u32"), ("order_id", "s"), ("ts", "dt"), ("version", "u32"), ("customer_id", "s"),
        ("click_id", "s"), ("paid_amount", "d2"), ("promoter1", "s"), ("promoter2", "s"), ("promoter3", "s"),
        ("commission", "d2"), ("commission1", "d2"), ("commission2", "d2"), ("commission3", "d2"),
    ),
    "fraud_scores": (
        ("score_id", "s"), ("order_id", "s"), ("ts", "dt"), ("customer_id", "s"), ("promoter_id", "s"),
        ("score", "d6"), ("reasons", "s"), ("features", "s"), ("held", "u8"),
    ),
    "settlements": (
        ("period", "s"), ("payee", "s"), ("payer", "s"), ("balance", "d2"), ("gmv", "d2"), ("tier", "s"),
        ("bonus_rate", "d6"), ("bonus", "d2"), ("income", "d2"), ("taxable", "d2"), ("rate", "d6"), ("quick_deduction", "d2"),
        ("tax", "d2"), ("net", "d2"), ("carried", "d2"), ("status", "s"), ("method", "s"), ("table_version", "s"),
        ("statement_sha256", "s"), ("settled_at", "dt"),
    ),
    "settled_lines": (
        ("period", "s"), ("order_id", "s"), ("sku", "s"), ("beneficiary_id", "s"), ("level", "u8"), ("amount", "d2"),
    ),
    "alerts": (
        ("alert_id", "s"), ("period", "s"), ("kind", "s"), ("subject", "s"), ("detail", "s"), ("amount", "d2"),
        ("ts", "dt"),
    ),
    "agreements": (
        ("event_id", "s"), ("ts", "dt"), ("promoter_id", "s"), ("agreement_version", "s"), ("text_sha256", "s"),
        ("payout_account", "s"), ("sealed", "s"),
    ),
}
# Written like the facts, but not facts: the data keys of the vault (sinks/vault.py).
VAULT_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "person_keys": (("owner", "s"), ("key_id", "s"), ("wrapped", "s"), ("master_id", "s"), ("version", "u32")),
}
# The table each kind of row is inserted into (the analysts' names are FINAL views over these).
BASE_TABLE: dict[str, str] = {
    "commission_ledger": "ledger_entries",
    "dead_letters": "dead_letters_raw",
    **{t: f"{t}_raw" for t in FACT_TABLES},
    **{t: t for t in VAULT_TABLES},
}
KIND_TYPE = {"s": "String", "dt": "DateTime('UTC')", "u8": "UInt8", "u32": "UInt32",
             "d2": "Decimal(18, 2)", "d6": "Decimal(18, 6)"}


# ---------------------------------------------------------------------------------------------
# Batch -> typed columns

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
_LIMIT = {"d2": Decimal(10) ** 16, "d6": Decimal(10) ** 12}  # Decimal(18, S) holds < 10^(18-S)


def _decimal(v: Any, column: str) -> Decimal:
    if isinstance(v, Decimal):
        return v
    if isinstance(v, (int, str)) and not isinstance(v, bool):
        try:
            return Decimal(v)
        except InvalidOperation:
            pass
    raise LedgerError(f"{column}: {v!r} is not a decimal amount (money is Decimal, never float)")


def _money(values: list, column: str) -> list[Decimal]:
    """Money must already be exact to the cent: a sink never rounds money. The result is
    quantized to 2 decimals (one exponent for all, which pyarrow converts fastest)."""
    limit = _LIMIT["d2"]
    try:
        out = [v.quantize(CENT) for v in values]
        ok = all(q == v and -limit < q < limit for q, v in zip(out, values))
    except (AttributeError, TypeError, InvalidOperation):
        ok = False
    if ok and all(type(v) is Decimal for v in values):
        return out
    out = []  # the slow path, to name the bad value
    for v in values:
        d = _decimal(v, column)
        try:
            q = d.quantize(CENT)
        except InvalidOperation:
            q = None
        if q is None or q != d or abs(q) >= limit:
            raise LedgerError(f"{column}: {v!r} does not fit Decimal(18, 2) exactly")
        out.append(q)
    return out


def _rates(values: list, column: str) -> list[Decimal]:
    """Rates are stored to 6 decimals (Decimal(18, 6)), rounded half-up like all money rules."""
    limit = _LIMIT["d6"]
    seen: dict[Decimal, Decimal] = {}  # a batch has few distinct rates
    out = []
    for v in values:
        q = seen.get(v) if type(v) is Decimal else None
        if q is None:
            try:
                q = _decimal(v, column).quantize(MICRO, rounding=ROUND_HALF_UP)
            except InvalidOperation:
                q = None
            if q is None or abs(q) >= limit:
                raise LedgerError(f"{column}: {v!r} does not fit Decimal(18, 6)")
            if type(v) is Decimal:
                seen[v] = q
        out.append(q)
    return out


def _epoch_seconds(values: list, column: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, datetime):
            if v.tzinfo is None:
                raise LedgerError(f"{column}: naive datetime {v!r}; facts carry aware UTC datetimes")
            out.append(int(v.timestamp()))
        elif isinstance(v, int):
            out.append(v)
        else:
            raise LedgerError(f"{column}: {v!r} is not a datetime")
    return out


def _typed(kind: str, values: list, column: str) -> list:
    if kind == "s":
        return ["" if v is None else v for v in values]
    if kind == "dt":
        return _epoch_seconds(values, column)
    if kind == "d2":
        return _money(values, column)
    if kind == "d6":
        return _rates(values, column)
    return values  # u8 / u32: ints


@dataclass
class TableColumns:
    """One insert: the base table, its column names and kinds, and the typed column values.

    DateTime columns hold epoch seconds (int), Decimal columns exact Decimals at their scale."""

    table: str
    names: list[str]
    kinds: list[str]
    columns: list[list]

    @property
    def rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0


def ledger_columns(entries: list[LedgerEntry], generation: int = 0) -> TableColumns:
    cols: list[list] = []
    for name, kind in LEDGER_COLUMNS:
        if name == "ts":
            cols.append([t // 1000 for t in map(attrgetter("ts_ms"), entries)])
        else:
            cols.append(_typed(kind, list(map(attrgetter(name), entries)), name))
    cols.append([generation] * len(entries))
    return TableColumns("ledger_entries", [n for n, _ in LEDGER_COLUMNS] + ["generation"],
                        [k for _, k in LEDGER_COLUMNS] + ["u32"], cols)


def dead_letter_columns(dead: list[DeadLetter], received_at: int | None = None) -> TableColumns:
    now = int(time.time()) if received_at is None else received_at
    cols: list[list] = []
    for name, kind in DEAD_LETTER_COLUMNS:
        if name == "received_at":
            cols.append([now] * len(dead))
        else:
            cols.append(_typed(kind, list(map(attrgetter(name), dead)), name))
    return TableColumns("dead_letters_raw", [n for n, _ in DEAD_LETTER_COLUMNS],
                        [k for _, k in DEAD_LETTER_COLUMNS], cols)


def fact_columns(table: str, rows: list[dict], generation: int = 0) -> TableColumns:
    """A fact table's insert; a ``generation`` column (rows the engine derives per ledger
    generation) is the batch's, like the ledger rows'."""
    layout = FACT_TABLES.get(table) or VAULT_TABLES.get(table)
    if layout is None:
        raise LedgerError(f"unknown fact table {table!r} (known: {', '.join(FACT_TABLES)})")
    cols: list[list] = []
    for name, kind in layout:
        if name == "generation":
            cols.append([generation] * len(rows))
            continue
        try:
            values = list(map(itemgetter(name), rows))
        except KeyError:
            raise LedgerError(f"{table}: a row has no column {name!r}") from None
        cols.append(_typed(kind, values, f"{table}.{name}"))
    return TableColumns(BASE_TABLE[table], [n for n, _ in layout], [k for _, k in layout], cols)


def batch_columns(batch: Batch) -> list[TableColumns]:
    """Every non-empty insert of a batch, ledger first, dead letters last."""
    out = []
    if batch.entries:
        out.append(ledger_columns(batch.entries, batch.generation))
    for table, rows in batch.facts.items():
        if rows:
            out.append(fact_columns(table, rows, batch.generation))
    if batch.dead_letters:
        out.append(dead_letter_columns(batch.dead_letters))
    return out
