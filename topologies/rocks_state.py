"""The embedded runner's state backend: one RocksDB database (rocksdict) for every table.

Keys are ``table \\0 key``; values are the :class:`~topologies.state_cache.StateCache`'s orjson
bytes. A checkpoint writes a batch's changes in one atomic WriteBatch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from topologies.state_cache import TABLES, Changes

SEP = b"\x00"
_TABLES = frozenset(TABLES)


class StateInUse(RuntimeError):
    pass


def _options() -> Options:
    """Point lookups of JSON values: a block cache and bloom filters keep a miss off the disk."""
    table = BlockBasedOptions()
    table.set_block_cache(Cache(256 * 1024 * 1024))
    table.set_bloom_filter(10, False)
    options = Options(raw_mode=True)
    options.set_block_based_table_factory(table)
    return options


def _key(table: str, key: str) -> bytes:
    assert table in _TABLES, f"{table!r} is not a state table ({', '.join(TABLES)})"
    return table.encode() + SEP + key.encode()


class RocksState:
    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self.db = Rdict(str(path), _options())
        except Exception as exc:  # rocksdict raises a bare Exception for a held lock
            if "lock" in str(exc).lower():
                raise StateInUse(f"the state at {path} is in use by another tuike process; stop it or use another --data-dir") from None
            raise

    def read(self, table: str, key: str, _partition: int = 0) -> bytes | None:
        return self.db.get(_key(table, key))

    def write(self, changes: Changes) -> None:
        """Every change at once (one WriteBatch: all or nothing)."""
        batch = WriteBatch(raw_mode=True)
        for table, key, value in changes:
            batch.put(_key(table, key), value)
        if len(batch):
            self.db.write(batch)

    def write_now(self, table: str, key: str, value: Any) -> None:
        """One key durably at once, outside a batch's changes (a mark that must be on disk before the
        ledger is written, while the batch's state is not yet)."""
        self.db.put(_key(table, key), orjson.dumps(value))

    def close(self) -> None:
        self.db.close()
