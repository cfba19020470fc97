"""The ledger writer interface, shared by the embedded chDB ledger and the ClickHouse server one.

A :class:`Ledger` takes a :class:`Batch` (ledger rows, fact rows, dead letters) and writes one
batched insert per table. Writing the same batch again changes nothing an analyst can see: the
tables are ReplacingMergeTree tables keyed by deterministic ids and read through FINAL views
(``schemas/ddl.sql``), so the sink itself can be at-least-once.

This module also holds what both sinks need: the DDL statements, the column layout of each
table, turning a batch into typed columns (exact money, epoch-second timestamps), and turning
query results back into Python values (Decimal, aware UTC datetimes).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from importlib import resources
from operator import attrgetter, itemgetter
from typing import Any, Callable, Protocol, runtime_checkable

from schemas.dead_letter import DeadLetter
from schemas.ledger_entry import LedgerEntry
from schemas.analytics import HOUR_COLUMNS, HOURS_FROM_LEDGER, STANDING_COLUMNS, STANDINGS_FROM_LEDGER


SETTLEMENT_GENERATION = 4294967295  # settlement rows: shown in every generation (schemas/ddl.sql)


@dataclass
class Batch:
    entries: list[LedgerEntry] = field(default_factory=list)
    facts: dict[str, list[dict]] = field(default_factory=dict)  # table -> rows as produced by facts_of
    dead_letters: list[DeadLetter] = field(default_factory=list)  # received_at = when the sink writes them
    generation: int = 0  # the ledger generation the entries belong to (topologies/generation.py)

    def __len__(self) -> int:
        return len(self.entries) + sum(len(r) for r in self.facts.values()) + len(self.dead_letters)


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]  # ClickHouse type names, e.g. "Decimal(38, 2)", "DateTime('UTC')"
    rows: list[tuple]


@runtime_checkable
class Ledger(Protocol):
    identity: str  # which ledger this is ("chdb:tuike", "clickhouse://host:9000/tuike"), kept with the state

    def write(self, batch: Batch) -> None:
        """One batched insert per table; empty tables are skipped. Safe to repeat."""

    def query(self, sql: str) -> QueryResult:
        """Run SQL with the ledger's database as the default one. Decimal columns come back as
        Decimal, DateTime as timezone-aware UTC datetime, Date as date."""

    def close(self) -> None: ...


class LedgerError(RuntimeError):
    """A ledger problem with a message meant for the person running tuike."""


class LedgerInUse(LedgerError):
    """The embedded ledger's directory is locked by another process."""


class LedgerUnavailable(LedgerError):
    """The ClickHouse server cannot be reached."""


class QueryError(LedgerError):
    """The database refused a query (syntax, unknown table, …); the message is the database's."""


# ---------------------------------------------------------------------------------------------
# Schema: table layouts (kept equal to schemas/ddl.sql; tests/test_sinks.py checks it)

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
        ("item_count", "u32"), ("paid_amount", "d2"),
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
        ("campaign", "s"), ("parent_click_id", "s"),
    ),
    "bindings": (
        ("event_id", "s"), ("ts", "dt"), ("customer_id", "s"), ("promoter_id", "s"), ("via", "s"),
        ("click_id", "s"),
    ),
    "promoters": (
        ("event_id", "s"), ("type", "s"), ("ts", "dt"), ("promoter_id", "s"), ("parent_id", "s"),
        ("device_id", "s"), ("ip", "s"), ("reason", "s"),
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
        ("payout_account", "s"),
    ),
}
# The table each kind of row is inserted into (the analysts' names are FINAL views over these).
BASE_TABLE: dict[str, str] = {
    "commission_ledger": "ledger_entries",
    "dead_letters": "dead_letters_raw",
    **{t: f"{t}_raw" for t in FACT_TABLES},
}
KIND_TYPE = {"s": "String", "dt": "DateTime('UTC')", "u8": "UInt8", "u32": "UInt32",
             "d2": "Decimal(18, 2)", "d6": "Decimal(18, 6)"}

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def check_database_name(name: str) -> str:
    if not _DB_NAME.match(name or ""):
        raise LedgerError(
            f"database name {name!r} is not valid: use letters, digits and _ (e.g. tuike)"
        )
    return name


def upgrade_statements(database: str, query: Callable[[str], list[tuple]]) -> list[str]:
    """ALTERs that bring a ledger created by an older tuike up to ``schemas/ddl.sql`` (run before
    it: the views read the new columns). ``query`` runs SQL and returns rows.

    - ``ledger_entries.generation`` (streaming replays): older ledgers hold generation 0 only;
    - the ``commission_ledger`` view before it showed settlement rows (:data:`SETTLEMENT_GENERATION`)
      in every generation: dropped, so the DDL creates it again (a view holds no data)."""
    db = check_database_name(database)
    columns = {r[0] for r in query(f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'ledger_entries'")}
    out = []
    if columns and "generation" not in columns:
        out.append(f"ALTER TABLE {database}.ledger_entries ADD COLUMN generation UInt32")
    view = query(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' AND name = 'commission_ledger'")
    if view and str(SETTLEMENT_GENERATION) not in view[0][0]:
        out.append(f"DROP TABLE IF EXISTS {database}.commission_ledger")
    return out


def schema_statements(database: str, query: Callable[[str], list[tuple]]) -> list[str]:
    """Everything that brings a database to ``schemas/ddl.sql``: the upgrades, the DDL, and for a
    ledger written before ``order_standings`` and ``ledger_hours`` existed, filling them from it
    (so the dashboards see the orders already paid). A fill is recorded in ``schema_upgrades``
    once it has run; one that failed half-way runs again (its rows collapse with the first's)."""
    db = check_database_name(database)
    tables = {r[0] for r in query(f"SELECT name FROM system.tables WHERE database = '{db}'")}
    done = ({r[0] for r in query(f"SELECT name FROM {db}.schema_upgrades")} if "schema_upgrades" in tables
            else set())
    out = upgrade_statements(database, query) + ddl_statements(database)
    for name, fill in (("order_standings", standings_backfill(db)), ("ledger_hours", _hours_insert(db, "1"))):
        if name not in done:
            if "ledger_entries" in tables:  # an older ledger (a new one is filled as it is written)
                out.append(fill)
            out.append(f"INSERT INTO {db}.schema_upgrades SELECT '{name}', now()")
    return out


HOUR_S = 3600
HOURS_PER_REFRESH = 200  # hours recomputed by one statement


def hours_refresh(database: str, batch: Batch) -> list[str]:
    """The statements that recompute ``ledger_hours`` for the hours a batch's ledger rows fall in
    (run after the batch is written: each reads the ledger, the batch's rows included)."""
    generation = batch.generation
    hours = sorted({(generation, e.ts_ms // 1000 // HOUR_S * HOUR_S) for e in batch.entries})
    db = check_database_name(database)
    out = []
    for i in range(0, len(hours), HOURS_PER_REFRESH):
        where = " OR ".join(f"(generation = {g} AND ts >= toDateTime({h}) AND ts < toDateTime({h + HOUR_S}))"
                            for g, h in hours[i:i + HOURS_PER_REFRESH])
        out.append(_hours_insert(db, where))
    return out


def _hours_insert(db: str, where: str) -> str:
    return (f"INSERT INTO {db}.ledger_hours_raw ({', '.join(HOUR_COLUMNS)}) "
            + HOURS_FROM_LEDGER.replace("{db}", db).replace("{where}", where))


def standings_backfill(database: str) -> str:
    """Fill ``order_standings`` from the ledger (rows of version 0, which the engine's replace)."""
    db = check_database_name(database)
    return (f"INSERT INTO {db}.order_standings_raw ({', '.join(STANDING_COLUMNS)}) "
            + STANDINGS_FROM_LEDGER.replace("{db}", db))


def ddl_statements(database: str) -> list[str]:
    """The statements of schemas/ddl.sql for one database, comments removed, in order."""
    text = resources.files("schemas").joinpath("ddl.sql").read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    text = text.replace("{db}", check_database_name(database))
    return [s.strip().rstrip(";").strip() for s in text.split(";\n") if s.strip().rstrip(";").strip()]


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
    layout = FACT_TABLES.get(table)
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


# ---------------------------------------------------------------------------------------------
# Query values -> Python

_DECIMAL_SCALE = re.compile(r"^Decimal(?:\(\s*\d+\s*,\s*(\d+)\s*\)|(?:32|64|128|256)\(\s*(\d+)\s*\))$")


def unwrap_type(type_name: str) -> str:
    """Nullable(X) / LowCardinality(X) -> X."""
    t = type_name.strip()
    while True:
        for wrapper in ("Nullable(", "LowCardinality("):
            if t.startswith(wrapper) and t.endswith(")"):
                t = t[len(wrapper):-1].strip()
                break
        else:
            return t


def decimal_scale(type_name: str) -> int | None:
    m = _DECIMAL_SCALE.match(unwrap_type(type_name))
    if not m:
        return None
    return int(m.group(1) or m.group(2))


def to_utc(value: datetime, naive_zone: Any = timezone.utc) -> datetime:
    """Aware UTC datetime; a naive one is read in ``naive_zone`` (the server's time zone)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=naive_zone)
    return value.astimezone(timezone.utc)


def decimal_converter(scale: int) -> Callable[[Any], Any]:
    quantum = Decimal(1).scaleb(-scale)

    def conv(v: Any) -> Any:
        if v is None:
            return None
        return Decimal(v if isinstance(v, (str, Decimal, int)) else str(v)).quantize(quantum)

    return conv


def epoch_to_utc(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        v = Decimal(v) if "." in v else int(v)
    if isinstance(v, Decimal):
        whole = int(v)
        micros = int(((v - whole) * 1_000_000).to_integral_value())
        return datetime.fromtimestamp(whole, timezone.utc) + timedelta(microseconds=micros)
    return datetime.fromtimestamp(v, timezone.utc)


def iso_date(v: Any) -> Any:
    return None if v is None else (v if isinstance(v, date) else date.fromisoformat(v))
