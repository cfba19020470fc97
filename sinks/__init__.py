"""Ledger sinks: where ledger rows, facts and dead letters are written and queried.

:func:`open_ledger` picks the ClickHouse server when a URL is given (``--clickhouse`` /
``TUIKE_CLICKHOUSE``), else the embedded chDB ledger under the data directory.
"""
from __future__ import annotations

from pathlib import Path

from sinks.base import (
    Batch,
    Ledger,
    LedgerError,
    LedgerInUse,
    LedgerUnavailable,
    QueryError,
    QueryResult,
)

__all__ = [
    "Batch", "Ledger", "LedgerError", "LedgerInUse", "LedgerUnavailable", "QueryError",
    "QueryResult", "open_ledger",
]


def open_ledger(clickhouse_url: str | None, data_dir: Path) -> Ledger:
    """The server ledger at ``clickhouse_url`` if set, else the chDB ledger in ``data_dir/ledger``.

    Raises :class:`LedgerError` (a subclass) with a message for the user when it cannot open."""
    if clickhouse_url:
        from sinks.server_sink import ServerLedger  # imported lazily: each backend loads only its driver

        return ServerLedger(clickhouse_url)
    from sinks.chdb_sink import ChdbLedger

    return ChdbLedger(Path(data_dir))
