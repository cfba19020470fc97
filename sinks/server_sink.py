"""The ledger in a ClickHouse server (contract §5: ``--clickhouse clickhouse://host:9000/tuike``).

Native protocol through clickhouse-driver, lz4-compressed, columnar inserts. The database and
its tables are created if missing. The server may be as old as 18.16 (Debian 12's), so only the
common subset of ``schemas/ddl.sql`` is used.

Connection failures are retried with backoff; so are inserts that fail on the network, which is
safe because every table collapses repeated rows on its deterministic key.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from sinks.errors import LedgerError, LedgerUnavailable, QueryError
from sinks.reader import QueryResult, decimal_converter, decimal_scale, to_utc, unwrap_type
from sinks.schema import check_database_name, hours_refresh, schema_statements
from sinks.writer import Batch, batch_columns

T = TypeVar("T")

DEFAULT_PORT = 9000
DEFAULT_DATABASE = "tuike"
# Failures worth retrying: the server is not there (yet), or the connection broke.
_TRANSIENT = (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, ConnectionError, OSError)


@dataclass(frozen=True)
class ServerURL:
    host: str
    port: int
    database: str
    user: str
    password: str
    secure: bool = False

    @property
    def display(self) -> str:
        """The URL without its password, for messages."""
        auth = f"{self.user}@" if self.user != "default" else ""
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.database}"


def parse_url(url: str) -> ServerURL:
    """``clickhouse://[user[:password]@]host[:port][/database]`` (``clickhouses://`` for TLS)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("clickhouse", "clickhouses") or not parts.hostname:
        raise LedgerError(
            f"--clickhouse {url!r} is not a ClickHouse URL: write clickhouse://HOST:PORT/DATABASE, "
            "e.g. clickhouse://127.0.0.1:9000/tuike"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise LedgerError(f"--clickhouse {url!r}: the port is not a number") from None
    database = unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    if "/" in database:
        raise LedgerError(f"--clickhouse {url!r}: the path must be one database name")
    query = parse_qs(parts.query)
    secure = parts.scheme == "clickhouses" or query.get("secure", ["0"])[0] in ("1", "true")
    return ServerURL(
        host=parts.hostname,
        port=port,
        database=check_database_name(database),
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        secure=secure,
    )


class ServerLedger:
    """The ledger in database ``url.database`` of a ClickHouse server."""

    @property
    def identity(self) -> str:
        """Which ledger this is, as the state remembers it."""
        return f"clickhouse://{self.url.host}:{self.url.port}/{self.database}"

    def __init__(self, url: str, *, retries: int = 4, backoff: float = 0.5,
                 connect_timeout: float = 5, send_receive_timeout: float = 300) -> None:
        self.url = parse_url(url)
        self.database = self.url.database
        self._retries = retries
        self._backoff = backoff
        self._timeouts = dict(connect_timeout=connect_timeout, send_receive_timeout=send_receive_timeout)
        # The database may not exist yet, and a connection to a missing database is refused:
        # create it (and the tables) from the default database first.
        bootstrap = self._client("default")
        try:
            self._retrying(lambda: bootstrap.execute("SELECT 1"), connecting=True)
            for stmt in schema_statements(self.database, lambda sql: self._retrying(lambda: bootstrap.execute(sql))):
                self._retrying(lambda s=stmt: bootstrap.execute(s))
        finally:
            bootstrap.disconnect()
        self._conn = self._client(self.database)
        self._server_tz = self._retrying(lambda: self._conn.execute("SELECT timezone()"), connecting=True)[0][0]
        self._naive_zone = _zone(self._server_tz)

    def _client(self, database: str) -> Client:
        u = self.url
        return Client(
            host=u.host, port=u.port, user=u.user, password=u.password, database=database,
            secure=u.secure, compression=_compression(), client_name="tuike", **self._timeouts,
        )

    def _retrying(self, fn: Callable[[], T], *, connecting: bool = False) -> T:
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                return fn()
            except ch_errors.ServerException as exc:
                if connecting:
                    raise LedgerUnavailable(
                        f"the ClickHouse server at {self.url.display} refused the connection: "
                        f"{_server_message(exc)}"
                    ) from None
                raise QueryError(_server_message(exc)) from None
            except _TRANSIENT as exc:
                if attempt == self._retries:
                    raise LedgerUnavailable(
                        f"cannot reach the ClickHouse server at {self.url.display} "
                        f"({type(exc).__name__}: {exc}) after {self._retries + 1} attempts; "
                        "start one with `make clickhouse-up`, or point --clickhouse / "
                        "TUIKE_CLICKHOUSE at a running server"
                        + ("" if connecting else " (the write can be repeated safely)")
                    ) from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def write(self, batch: Batch) -> None:
        client = self._live()
        for tc in batch_columns(batch):
            sql = f"INSERT INTO {tc.table} ({', '.join(tc.names)}) VALUES"
            # the driver converts the columns in place; each attempt gets fresh lists
            self._retrying(lambda: client.execute(sql, [list(c) for c in tc.columns], columnar=True))
        for sql in hours_refresh(self.database, batch):  # after the rows: it reads them
            self._retrying(lambda s=sql: client.execute(s))

    def query(self, sql: str) -> QueryResult:
        """SELECT / SHOW / DDL. (An INSERT with inline VALUES is not supported through the
        native driver on 18.16: it waits for a data block. Use :meth:`write`.)"""
        client = self._live()
        result = self._retrying(lambda: client.execute(sql, with_column_types=True))
        rows, meta = (result if isinstance(result, tuple) else (result, []))
        if not meta:  # DDL and other statements without a result set
            return QueryResult([], [], [])
        names = [m[0] for m in meta]
        types = [m[1] for m in meta]
        convs = [self._converter(t) for t in types]
        if any(convs) and rows:
            columns = list(zip(*rows))
            for i, conv in enumerate(convs):
                if conv is not None:
                    columns[i] = tuple(map(conv, columns[i]))
            rows = list(zip(*columns))
        return QueryResult(names, types, [tuple(r) for r in rows])

    def _converter(self, type_name: str) -> Callable[[Any], Any] | None:
        t = unwrap_type(type_name)
        scale = decimal_scale(t)
        if scale is not None:
            return decimal_converter(scale)  # the driver drops trailing zeros; keep the scale
        if t.startswith("DateTime"):
            zone = self._naive_zone
            return lambda v: None if v is None else (to_utc(v, zone) if isinstance(v, datetime) else v)
        return None

    def _live(self) -> Client:
        conn = getattr(self, "_conn", None)
        if conn is None:
            raise LedgerError("the ClickHouse ledger is closed")
        return conn

    def close(self) -> None:
        conn, self._conn = getattr(self, "_conn", None), None
        if conn is not None:
            conn.disconnect()

    def __enter__(self) -> "ServerLedger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _compression() -> str | bool:
    """lz4 when the driver can do it (it needs the lz4 and clickhouse-cityhash packages)."""
    try:
        import clickhouse_driver.compression.lz4  # noqa: F401  raises without clickhouse-cityhash
    except (ImportError, RuntimeError):
        return False
    return "lz4"


def _zone(name: str) -> Any:
    try:
        return ZoneInfo(name)
    except Exception:
        return timezone.utc


def _server_message(exc: ch_errors.ServerException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    first = text.splitlines()[0] if text else repr(exc)
    first = first.split(" Stack trace:")[0].rstrip(". ")
    return f"Code: {exc.code}. {first}"
