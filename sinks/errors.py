"""The ledger errors: each carries a message meant for the person running tuike."""
from __future__ import annotations


class LedgerError(RuntimeError):
    """A ledger problem with a message meant for the person running tuike."""


class LedgerInUse(LedgerError):
    """The embedded ledger's directory is locked by another process."""


class LedgerUnavailable(LedgerError):
    """The ClickHouse server cannot be reached."""


class QueryError(LedgerError):
    """The database refused a query (syntax, unknown table, …); the message is the database's."""


class ReadOnlyRefused(QueryError):
    """SQL that could write, or reach outside the ledger, refused before it ran (sinks/readonly.py)."""
