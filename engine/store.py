"""The state-store interface the processors run against.

A store holds JSON-able values (dicts, lists, str, int) under (table, key). That is all a
processor needs, and it maps one-to-one onto a Faust ``Table`` per table name, so the
streaming topology keeps the same state as the embedded pipeline. Money in state is kept as
decimal strings, never floats.
"""
from __future__ import annotations

from typing import Any, Protocol

TABLES = ("promoters", "watchers", "customers", "orders", "tallies", "risk", "propagation")


class Store(Protocol):
    def get(self, table: str, key: str) -> Any | None: ...

    def put(self, table: str, key: str, value: Any) -> None: ...


class MemoryStore:
    """A dict-backed store for unit tests and property tests."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {t: {} for t in TABLES}

    def get(self, table: str, key: str) -> Any | None:
        return self.tables[table].get(key)

    def put(self, table: str, key: str, value: Any) -> None:
        self.tables[table][key] = value
