"""The embedded pipeline's state store: RocksDB (rocksdict) under a write-back cache.

Processors read and write through the cache; :meth:`RocksStore.flush` writes every key
touched since the last flush once, in one atomic WriteBatch (as Kafka Streams' record cache
does). The pipeline flushes state only after the ledger rows of the same batch are durable in
the sink, so a crash between the two re-emits rows with the same ids, which the sink counts once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

SEP = b"\x00"


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


class RocksStore:
    def __init__(self, path: Path, *, cache_limit: int = 50_000):
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self.db = Rdict(str(path), _options())
        except Exception as exc:  # rocksdict raises a bare Exception for a held lock
            if "lock" in str(exc).lower():
                raise StateInUse(f"the state at {path} is in use by another tuike process; stop it or use another --data-dir") from None
            raise
        self.cache: dict[tuple[str, str], Any] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.cache_limit = cache_limit

    @staticmethod
    def _key(table: str, key: str) -> bytes:
        return table.encode() + SEP + key.encode()

    def get(self, table: str, key: str) -> Any | None:
        k = (table, key)
        try:
            return self.cache[k]
        except KeyError:
            pass
        raw = self.db.get(self._key(table, key))
        value = orjson.loads(raw) if raw is not None else None
        self.cache[k] = value
        return value

    def put(self, table: str, key: str, value: Any) -> None:
        k = (table, key)
        self.cache[k] = value
        self.dirty.add(k)

    def put_now(self, table: str, key: str, value: Any) -> None:
        """Write one key durably at once, outside the batch that :meth:`flush` writes (a marker
        that must be on disk before the ledger is written, while the batch's state is not)."""
        self.db.put(self._key(table, key), orjson.dumps(value))
        self.cache[(table, key)] = value
        self.dirty.discard((table, key))

    def flush(self) -> None:
        """Write every touched key once, atomically; empty the cache when it grows too big.

        (Measured on 600k events: emptying it beats keeping the batch's hot keys, 8.0k vs 6.6k
        events/s; RocksDB's block cache serves the re-reads.)"""
        if self.dirty:
            batch = WriteBatch(raw_mode=True)
            for table, key in self.dirty:
                batch.put(self._key(table, key), orjson.dumps(self.cache[(table, key)]))
            self.db.write(batch)
            self.dirty.clear()
        if len(self.cache) > self.cache_limit:
            self.cache.clear()

    def discard(self) -> None:
        """Forget every change since the last flush (they never reached the ledger)."""
        self.cache.clear()
        self.dirty.clear()

    def close(self, *, flush: bool = True) -> None:
        """Close, writing what is cached unless ``flush`` is False (an aborted batch is dropped)."""
        if flush:
            self.flush()
        self.db.close()
