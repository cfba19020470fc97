"""Bringing a database to ``schemas/ddl.sql`` and keeping its derived tables filled: the DDL
statements, the upgrades of a ledger created by an older tuike, the one-time fills of
``order_standings`` and ``ledger_hours`` from it, and the ``ledger_hours`` refresh after a write.
"""
from __future__ import annotations

import re
from importlib import resources
from typing import Callable

from schemas.analytics import (
    HOUR_COLUMNS,
    HOURS_FROM_LEDGER,
    SETTLEMENT_GENERATION,
    STANDING_COLUMNS,
    STANDINGS_FROM_LEDGER,
)
from schemas.cluster_ddl import cluster_statements
from sinks.errors import LedgerError
from sinks.writer import Batch


SEALED_FACTS = ("orders", "clicks", "promoters", "agreements")  # fact tables with a ``sealed`` column
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
    - ``sealed`` on the fact tables that hold personal data, and their views;
    - the ``commission_ledger`` view before it showed settlement rows (:data:`SETTLEMENT_GENERATION`)
      in every generation: dropped, so the DDL creates it again (a view holds no data)."""
    db = check_database_name(database)
    columns = {r[0] for r in query(f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'ledger_entries'")}
    out = []
    if columns and "generation" not in columns:
        out.append(f"ALTER TABLE {database}.ledger_entries ADD COLUMN generation UInt32")
    for table in SEALED_FACTS:  # personal data sealed per person (README: personal data)
        have = {r[0] for r in query(f"SELECT name FROM system.columns WHERE database = '{db}' AND table = '{table}_raw'")}
        if have and "sealed" not in have:
            out.append(f"ALTER TABLE {database}.{table}_raw ADD COLUMN sealed String DEFAULT ''")
            out.append(f"DROP TABLE IF EXISTS {database}.{table}")  # the view, created again with the column
    view = query(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' AND name = 'commission_ledger'")
    if view and str(SETTLEMENT_GENERATION) not in view[0][0]:
        out.append(f"DROP TABLE IF EXISTS {database}.commission_ledger")
    return out


def schema_statements(database: str, query: Callable[[str], list[tuple]], cluster: str | None = None) -> list[str]:
    """Everything that brings a database to ``schemas/ddl.sql``: the upgrades, the DDL, and for a
    ledger written before ``order_standings`` and ``ledger_hours`` existed, filling them from it
    (so the dashboards see the orders already paid). A fill is recorded in ``schema_upgrades``
    once it has run; one that failed half-way runs again (its rows collapse with the first's).
    On a ``cluster``, the same statements spread over its shards (schemas/cluster_ddl.py)."""
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
    return out if cluster is None else cluster_statements(out, cluster, tables)


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
