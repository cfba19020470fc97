"""Ledger sinks: where ledger rows, facts and dead letters are written and queried.

A :class:`Ledger` takes a :class:`Batch` (ledger rows, fact rows, dead letters) and writes one
batched insert per table. Writing the same batch again changes nothing an analyst can see: the
tables are ReplacingMergeTree tables keyed by deterministic ids and read through FINAL views
(``schemas/ddl.sql``), so the sink itself can be at-least-once. Both ledgers build on
:mod:`sinks.writer` (batch to typed columns), :mod:`sinks.reader` (query values to Python) and
:mod:`sinks.schema` (DDL, upgrades, derived tables).

:func:`open_ledger` picks the ClickHouse server when a URL is given (``--clickhouse`` /
``TUIKE_CLICKHOUSE``), else the embedded chDB ledger under the data directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol, runtime_checkable

from sinks.errors import LedgerError, LedgerInUse, LedgerUnavailable, QueryError, ReadOnlyRefused
from sinks.reader import QueryResult
from sinks.readonly import read_only_sql
from sinks.writer import Batch

__all__ = [
    "Batch", "Ledger", "LedgerError", "LedgerInUse", "LedgerUnavailable", "QueryError",
    "QueryResult", "ReadOnlyRefused", "open_ledger", "read_only_sql",
]


@runtime_checkable
class Ledger(Protocol):
    identity: str  # which ledger this is ("chdb:tuike", "clickhouse://host:9000/tuike"), kept with the state

    def write(self, batch: Batch) -> None:
        """One batched insert per table; empty tables are skipped. Safe to repeat."""

    def query(self, sql: str) -> QueryResult:
        """Run SQL with the ledger's database as the default one. Decimal columns come back as
        Decimal, DateTime as timezone-aware UTC datetime, Date as date. For tuike's own SQL."""

    def read(self, sql: str, settings: Mapping[str, int] | None = None) -> QueryResult:
        """Run SQL a person wrote, such that it can only read (``sinks/readonly.py``): one reading
        statement, no table function reaching outside the ledger, and the engine's
        ``readonly = 1``. ``settings`` (e.g. ``max_execution_time``) apply to this query.
        Raises :class:`ReadOnlyRefused` for SQL that could write."""

    def close(self) -> None: ...


def open_ledger(clickhouse_url: str | None, data_dir: Path) -> Ledger:
    """The server ledger at ``clickhouse_url`` if set, else the chDB ledger in ``data_dir/ledger``.

    Raises :class:`LedgerError` (a subclass) with a message for the user when it cannot open."""
    if clickhouse_url:
        from sinks.server_sink import ServerLedger  # imported lazily: each backend loads only its driver

        return ServerLedger(clickhouse_url)
    from sinks.chdb_sink import ChdbLedger

    return ChdbLedger(Path(data_dir))
