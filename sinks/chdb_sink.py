"""The embedded ledger: chDB (ClickHouse in-process) at ``<data-dir>/ledger``.

Inserts go through Arrow (``INSERT INTO t (…) SELECT … FROM Python(arrow_table)``); query
results come back as JSONCompact with the column types in its ``meta``, decimals quoted, and
DateTime as epoch seconds, so money is converted from its exact decimal string, never through
float, and times become aware UTC datetimes whatever the process's time zone.

chDB allows one data path per process and one process per data path (it flocks
``<path>/status``). A second tuike process on the same ``--data-dir`` gets :class:`LedgerInUse`
naming the pid that holds it.
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import orjson
import pyarrow as pa

from sinks.errors import LedgerError, LedgerInUse, QueryError
from sinks.reader import QueryResult, decimal_converter, decimal_scale, epoch_to_utc, iso_date, unwrap_type
from sinks.readonly import read_only_sql, read_settings
from sinks.schema import check_database_name, hours_refresh, schema_statements
from sinks.writer import Batch, TableColumns, batch_columns

_SESSION_SETTINGS = (
    "SET output_format_json_quote_decimals = 1",
    "SET output_format_json_quote_64bit_integers = 1",
    "SET date_time_output_format = 'unix_timestamp'",
    # FINAL collapses rows within a partition only: a row and its copies share the partition (its
    # time is part of it; background merges never cross partitions either). Without this, chDB's
    # FINAL merges the whole table whatever the time filter (2 s instead of 30 ms on a month of a
    # 10M-row ledger). ClickHouse 18.16 has no such setting and merges per partition anyway.
    "SET do_not_merge_across_partitions_select_final = 1",
)
_ARROW_TS = pa.timestamp("s", tz="UTC")
_ARROW_TYPE = {"s": pa.string(), "dt": _ARROW_TS, "u8": pa.uint8(), "u32": pa.uint32(),
               "d2": pa.decimal128(18, 2), "d6": pa.decimal128(18, 6)}
_WIDE_INT = re.compile(r"^U?Int(64|128|256)$")


def _arrow(tc: TableColumns) -> pa.Table:
    arrays = []
    for kind, values in zip(tc.kinds, tc.columns):
        # Decimals arrive quantized to the column's scale, which is pyarrow's fast path.
        arrays.append(pa.array(values, _ARROW_TYPE[kind]))
    return pa.Table.from_arrays(arrays, names=tc.names)


def _converter(type_name: str) -> Callable[[Any], Any] | None:
    t = unwrap_type(type_name)
    scale = decimal_scale(t)
    if scale is not None:
        return decimal_converter(scale)
    if t.startswith("DateTime"):
        return epoch_to_utc
    if t in ("Date", "Date32"):
        return iso_date
    if _WIDE_INT.match(t):
        return lambda v: None if v is None else int(v)
    return None


def _lock_holder(path: Path) -> str | None:
    """The pid holding chDB's lock on ``path``, or None when it is free (or held by us)."""
    status = path / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 4096).decode(errors="replace")
            m = re.search(r"PID:\s*(\d+)", text)
            pid = m.group(1) if m else "?"
            return None if pid == str(os.getpid()) else pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class ChdbLedger:
    """The ledger in an embedded chDB database at ``data_dir/"ledger"``."""

    def __init__(self, data_dir: Path, database: str = "tuike") -> None:
        from chdb import session as chdb_session

        self.path = Path(data_dir) / "ledger"
        self.database = check_database_name(database)
        self.path.mkdir(parents=True, exist_ok=True)
        holder = _lock_holder(self.path)
        if holder:
            raise LedgerInUse(self._in_use(holder))
        try:
            self._session = chdb_session.Session(str(self.path))
        except Exception as exc:  # chDB says "Error initializing EmbeddedServer" and nothing more
            msg = str(exc)
            holder = _lock_holder(self.path)
            if holder:
                raise LedgerInUse(self._in_use(holder)) from None
            m = re.search(r"already initialized with path '([^']*)'", msg)
            if m:
                raise LedgerInUse(
                    f"this process already has the chDB ledger at {m.group(1)} open; chDB allows "
                    f"one data directory per process, so close that ledger before opening {self.path}"
                ) from None
            raise LedgerError(f"cannot open the chDB ledger at {self.path}: {msg}") from None
        try:
            for stmt in schema_statements(self.database, lambda sql: self.query(sql).rows):
                self._session.query(stmt)
            self._session.query(f"USE {self.database}")
            for stmt in _SESSION_SETTINGS:
                self._session.query(stmt)
        except Exception:
            self._session.close()
            raise

    @property
    def identity(self) -> str:
        """Which ledger this is, as the state remembers it (the chDB ledger lives in the data dir)."""
        return f"chdb:{self.database}"

    def _in_use(self, pid: str) -> str:
        return (
            f"the ledger at {self.path} is in use by another tuike process (pid {pid}); "
            "stop it or use --data-dir"
        )

    def write(self, batch: Batch) -> None:
        self._live()
        for tc in batch_columns(batch):
            # chDB's Python() table function finds the table by variable name in the calling
            # frame, so the name is unusual and the query runs in this frame.
            _tuike_arrow_batch = _arrow(tc)  # noqa: F841
            cols = ", ".join(tc.names)
            sql = (f"INSERT INTO {self.database}.{tc.table} ({cols}) "
                   f"SELECT {cols} FROM Python(_tuike_arrow_batch)")
            try:
                self._session.query(sql)
            except Exception as exc:
                raise QueryError(f"insert into {tc.table} failed: {str(exc).strip()}") from None
        for sql in hours_refresh(self.database, batch):
            try:
                self._session.query(sql)
            except Exception as exc:
                raise QueryError(f"recomputing ledger_hours failed: {str(exc).strip()}") from None

    def read(self, sql: str, settings: Mapping[str, int] | None = None) -> QueryResult:
        """SQL a person wrote, run so that it can only read: checked by ``read_only_sql``, then
        with ``readonly = 1`` in a SETTINGS clause of its own line (after the caller's
        ``settings``), so it covers this query alone and the pipeline sharing the session still
        writes."""
        clause = ", ".join(f"{name} = {value}" for name, value in read_settings(settings).items())
        return self.query(f"{read_only_sql(sql)}\nSETTINGS {clause}")

    def query(self, sql: str) -> QueryResult:
        res = self._run(sql, "JSONCompact")
        raw = res.bytes()
        if not raw.strip():
            return QueryResult([], [], [])
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        data = doc.get("data", []) if isinstance(doc, dict) else None
        if not isinstance(data, list) or any(not isinstance(row, list) for row in data[:1]):
            raise QueryError("the result is not in the format tuike reads: leave out the FORMAT clause "
                             "(tuike query chooses the output with --format)")
        meta = doc.get("meta", [])
        names = [m["name"] for m in meta]
        types = [m["type"] for m in meta]
        if not data:
            return QueryResult(names, types, [])
        columns = list(zip(*data))
        for i, t in enumerate(types):
            conv = _converter(t)
            if conv is not None:
                columns[i] = tuple(map(conv, columns[i]))
        return QueryResult(names, types, list(zip(*columns)))

    def _live(self) -> Any:
        if getattr(self, "_session", None) is None:
            raise LedgerError(f"the chDB ledger at {self.path} is closed")
        return self._session

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        session = self._live()
        try:
            return session.query(sql, fmt)
        except Exception as exc:
            raise QueryError(str(exc).strip()) from None

    def close(self) -> None:
        session, self._session = getattr(self, "_session", None), None
        if session is not None:
            session.close()

    def __enter__(self) -> "ChdbLedger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
