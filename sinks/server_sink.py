"""The ledger in a ClickHouse server (contract §5: ``--clickhouse clickhouse://host:9000/tuike``).

Native protocol through clickhouse-driver, lz4-compressed, columnar inserts. The database and
its tables are created if missing. The server may be as old as 18.16 (Debian 12's), so only the
common subset of ``schemas/ddl.sql`` is used.

Connection failures are retried with backoff; so are inserts that fail on the network, which is
safe because every table collapses repeated rows on its deterministic key. A TLS certificate that
does not verify is not retried: it will not verify on the next attempt either.

The URL's options: ``secure=1`` (or ``clickhouses://``) for TLS, ``ca_certs=PATH`` (the CA that
signed the server's certificate), ``verify=0`` (no verification, on by default),
``server_hostname=NAME`` (the name the certificate carries, when connecting by another), and the
password: ``password_file=PATH`` or ``password=env:NAME|file:PATH``, else the environment's
``TUIKE_CLICKHOUSE_PASSWORD``. A password written into the URL itself still works, but the
command line refuses it (``ps`` shows every process's arguments): :func:`has_inline_password`.

``cluster=NAME`` writes and reads a cluster of the server's ``remote_servers`` (e.g.
``clickhouse://127.0.0.1:9101/tuike?cluster=tuike``, deploy/clickhouse-cluster.sh): the schema is
created ``ON CLUSTER`` as replicated shards under Distributed tables (schemas/cluster_ddl.py);
inserts into the Distributed tables are synchronous (``insert_distributed_sync``: a write that
returned is on its shard), IN/JOIN subqueries over them run ``GLOBAL`` (``distributed_product_mode``),
reads go to the replica the writes went to (:data:`CLUSTER_SETTINGS`), and a mutation goes to the
local tables ``ON CLUSTER`` and is waited for on every node.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from schemas.cluster_ddl import local_mutation
from schemas.secrets import SecretError, is_reference, resolve_secret
from sinks.errors import LedgerError, LedgerUnavailable, QueryError
from sinks.reader import QueryResult, decimal_converter, decimal_scale, to_utc, unwrap_type
from sinks.readonly import read_only_sql, read_settings
from sinks.schema import check_database_name, hours_refresh, schema_statements
from sinks.writer import Batch, batch_columns

T = TypeVar("T")

DEFAULT_PORT = 9000
DEFAULT_DATABASE = "tuike"
PASSWORD_ENV = "TUIKE_CLICKHOUSE_PASSWORD"
URL_OPTIONS = ("secure", "ca_certs", "verify", "server_hostname", "password_file", "password", "cluster")
# What a connection to a cluster needs (module docstring). Reads see the writes before them: each
# shard's first live replica takes both (in_order), and one more than 2 s behind (back after a stop)
# is read only when no replica is fresher.
CLUSTER_SETTINGS = {"insert_distributed_sync": 1, "distributed_product_mode": "global", "load_balancing": "in_order",
                    "max_replica_delay_for_distributed_queries": 2}
MUTATION_WAIT_S = 120.0
_FLAGS = {"1": True, "true": True, "0": False, "false": False}
# Failures worth retrying: the server is not there (yet), or the connection broke.
_TRANSIENT = (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, ConnectionError, OSError)


@dataclass(frozen=True)
class ServerURL:
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    secure: bool = False
    ca_certs: str | None = None
    verify: bool = True
    server_hostname: str | None = None
    cluster: str | None = None

    @property
    def display(self) -> str:
        """The URL without its password, for messages."""
        auth = f"{self.user}@" if self.user != "default" else ""
        scheme = "clickhouses" if self.secure else "clickhouse"
        cluster = f"?cluster={self.cluster}" if self.cluster else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.database}{cluster}"


def parse_url(url: str, env: Mapping[str, str] | None = None) -> ServerURL:
    """``clickhouse://[user@]host[:port][/database][?option=value&…]`` (``clickhouses://`` for
    TLS; the options are in the module's docstring). ``env`` (default: the process's) holds
    ``TUIKE_CLICKHOUSE_PASSWORD`` and the variables ``password=env:NAME`` names."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("clickhouse", "clickhouses") or not parts.hostname:
        raise LedgerError(
            f"--clickhouse {_safe(url)} is not a ClickHouse URL: write clickhouse://HOST:PORT/DATABASE, "
            "e.g. clickhouse://127.0.0.1:9000/tuike"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise LedgerError(f"--clickhouse {_safe(url)}: the port is not a number") from None
    database = unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    if "/" in database:
        raise LedgerError(f"--clickhouse {_safe(url)}: the path must be one database name")
    options = _options(url, parts.query)
    secure = parts.scheme == "clickhouses" or _flag(url, options, "secure", False)
    verify = _flag(url, options, "verify", True)
    tls_only = [name for name in ("ca_certs", "verify", "server_hostname") if name in options]
    if tls_only and not secure:
        raise LedgerError(f"--clickhouse {_safe(url)}: {', '.join(tls_only)} applies to TLS only: write clickhouses:// "
                          "or add secure=1 (a ClickHouse server's TLS port is 9440 by default)")
    cluster = options.get("cluster")
    if cluster is not None and not _is_name(cluster):
        raise LedgerError(f"--clickhouse {_safe(url)}: cluster={cluster} is not a cluster name: name one of the "
                          "server's remote_servers (SELECT DISTINCT cluster FROM system.clusters), e.g. cluster=tuike")
    ca_certs = options.get("ca_certs")
    if ca_certs is not None and not Path(ca_certs).expanduser().is_file():
        raise LedgerError(f"--clickhouse {_safe(url)}: ca_certs={ca_certs} is not a file; name the PEM file of the "
                          "CA that signed the server's certificate")
    return ServerURL(
        host=parts.hostname,
        port=port,
        database=check_database_name(database),
        user=unquote(parts.username) if parts.username else "default",
        password=_password(url, parts.password, options, os.environ if env is None else env),
        secure=secure,
        ca_certs=str(Path(ca_certs).expanduser()) if ca_certs else None,
        verify=verify,
        server_hostname=options.get("server_hostname") or None,
        cluster=cluster,
    )


def _is_name(text: str) -> bool:
    """Whether ``text`` is a plain identifier (the rule of database names)."""
    try:
        check_database_name(text)
    except LedgerError:
        return False
    return True


def has_inline_password(url: str) -> bool:
    """Whether the URL itself holds a password (``user:pw@`` or ``password=pw``) rather than
    naming where it is kept."""
    parts = urlsplit(url.strip())
    if parts.password:
        return True
    written = [v for v in parse_qs(parts.query, keep_blank_values=True).get("password", []) if v]
    return any(not is_reference(v) for v in written)


def _safe(url: str) -> str:
    """The URL for a message: its password, if any, replaced by ***."""
    parts = urlsplit(url.strip())
    if parts.password:
        url = url.replace(f":{parts.password}@", ":***@", 1)
    query = parse_qs(parts.query, keep_blank_values=True)
    for value in query.get("password", []):
        if value and not is_reference(value):
            url = url.replace(f"password={value}", "password=***")
    return repr(url)


def _options(url: str, query: str) -> dict[str, str]:
    found = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(found) - set(URL_OPTIONS))
    if unknown:
        raise LedgerError(f"--clickhouse {_safe(url)}: unknown option {', '.join(unknown)} "
                          f"(the options are {', '.join(URL_OPTIONS)})")
    twice = sorted(name for name, values in found.items() if len(values) > 1)
    if twice:
        raise LedgerError(f"--clickhouse {_safe(url)}: {', '.join(twice)} given more than once")
    return {name: values[0] for name, values in found.items()}


def _flag(url: str, options: dict[str, str], name: str, default: bool) -> bool:
    value = options.get(name)
    if value is None:
        return default
    if value.lower() not in _FLAGS:
        raise LedgerError(f"--clickhouse {_safe(url)}: {name}={value}: write {name}=1 or {name}=0")
    return _FLAGS[value.lower()]


def _password(url: str, inline: str | None, options: dict[str, str], env: Mapping[str, str]) -> str:
    """The password: the URL's own, its password_file or password=env:/file: reference, else
    TUIKE_CLICKHOUSE_PASSWORD, else none."""
    given = [name for name, present in (("a password before @", bool(inline)),
                                        ("password_file", "password_file" in options),
                                        ("password", "password" in options)) if present]
    if len(given) > 1:
        raise LedgerError(f"--clickhouse {_safe(url)}: {' and '.join(given)} both give the password; keep one")
    if inline:
        return unquote(inline)
    ref = f"file:{options['password_file']}" if "password_file" in options else options.get("password")
    if not ref:
        return env.get(PASSWORD_ENV, "")
    if ref.startswith("env:"):
        found = env.get(ref[4:])
        if not found:
            raise LedgerError(f"--clickhouse {_safe(url)}: the environment variable {ref[4:]} "
                              "(password=env:…) is not set")
        return found
    try:
        return resolve_secret(ref)
    except SecretError as exc:
        raise LedgerError(f"--clickhouse {_safe(url)}: the password: {exc}") from None


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
            if self.url.cluster:
                self._check_cluster(bootstrap)
            for stmt in schema_statements(self.database, lambda sql: self._retrying(lambda: bootstrap.execute(sql)),
                                          self.url.cluster):
                self._retrying(lambda s=stmt: bootstrap.execute(s))
        finally:
            bootstrap.disconnect()
        self._conn = self._client(self.database)
        self._server_tz = self._retrying(lambda: self._conn.execute("SELECT timezone()"), connecting=True)[0][0]
        self._naive_zone = _zone(self._server_tz)

    def _client(self, database: str) -> Client:
        u = self.url
        tls: dict[str, Any] = {}
        if u.secure:
            tls = dict(verify=u.verify, ca_certs=u.ca_certs, server_hostname=u.server_hostname)
        return Client(
            host=u.host, port=u.port, user=u.user, password=u.password, database=database,
            secure=u.secure, compression=_compression(), client_name="tuike", **tls, **self._timeouts,
            settings=dict(CLUSTER_SETTINGS) if u.cluster else {},
        )

    def _check_cluster(self, client: Client) -> None:
        """The server knows the URL's cluster (else every ON CLUSTER statement would fail obscurely)."""
        known = [r[0] for r in self._retrying(lambda: client.execute("SELECT DISTINCT cluster FROM system.clusters"))]
        if self.url.cluster not in known:
            raise LedgerError(f"the ClickHouse server at {self.url.display} has no cluster {self.url.cluster!r} "
                              f"in its remote_servers (it has: {', '.join(sorted(known)) or 'none'}); fix cluster= "
                              "in the URL or the server's config")

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
                # a certificate that did not verify, or a first handshake that failed (not a TLS
                # port), fails the same way next time; a TLS connection broken later is retried
                if "CERTIFICATE_VERIFY_FAILED" in str(exc) or (connecting and "[SSL" in str(exc)):
                    raise LedgerUnavailable(self._tls_failure(str(exc))) from None
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

    def _tls_failure(self, text: str) -> str:
        reason = text.split("] ", 1)[-1].split(" (_ssl.c")[0]
        where = f"the ClickHouse server at {self.url.display}"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return (f"the TLS certificate of {where} did not verify ({reason}): give the CA that signed it "
                    "with ca_certs=PATH (`make clickhouse-up` makes .deploy/clickhouse/tls/ca.crt), or "
                    "server_hostname=NAME when the certificate names the server differently")
        return (f"the TLS handshake with {where} failed ({reason}): is port {self.url.port} its TLS port "
                "(tcp_port_secure, 9440 by default)?")

    def write(self, batch: Batch) -> None:
        client = self._live()
        for tc in batch_columns(batch):
            sql = f"INSERT INTO {tc.table} ({', '.join(tc.names)}) VALUES"
            # the driver converts the columns in place; each attempt gets fresh lists
            self._retrying(lambda: client.execute(sql, [list(c) for c in tc.columns], columnar=True))
        for sql in hours_refresh(self.database, batch):  # after the rows: it reads them
            self._retrying(lambda s=sql: client.execute(s))

    def read(self, sql: str, settings: Mapping[str, int] | None = None) -> QueryResult:
        """SQL a person wrote, run so that it can only read: checked by ``read_only_sql``, then
        sent with ``readonly = 1`` among the query's settings (after the caller's ``settings``)."""
        return self.query(read_only_sql(sql), read_settings(settings))

    def query(self, sql: str, settings: Mapping[str, int] | None = None) -> QueryResult:
        """SELECT / SHOW / DDL. (An INSERT with inline VALUES is not supported through the
        native driver on 18.16: it waits for a data block. Use :meth:`write`.)"""
        client = self._live()
        mutation = local_mutation(sql, self.database, self.url.cluster) if self.url.cluster else None
        if mutation is not None:
            self._retrying(lambda: client.execute(mutation, settings=settings))
            self._wait_for_cluster_mutations(client)
            return QueryResult([], [], [])
        result = self._retrying(lambda: client.execute(sql, with_column_types=True, settings=settings))
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

    def _wait_for_cluster_mutations(self, client: Client) -> None:
        """Until no node of the cluster has an unfinished mutation of this database: ON CLUSTER
        returns once each node has queued it, and callers (sinks/vault.py: wait_for_mutations)
        look at the node they are connected to only. A stopped node is skipped; it applies the
        mutation from ZooKeeper when it is back."""
        nodes = self._retrying(lambda: client.execute(
            f"SELECT host_address, port FROM system.clusters WHERE cluster = '{self.url.cluster}'"))
        where = ",".join(f"{h}:{p}" for h, p in nodes)
        sql = (f"SELECT count() FROM remote('{where}', system, mutations) "
               f"WHERE database = '{self.database}' AND is_done = 0")
        deadline = time.monotonic() + MUTATION_WAIT_S
        while self._retrying(lambda: client.execute(sql, settings={"skip_unavailable_shards": 1}))[0][0]:
            if time.monotonic() > deadline:
                raise LedgerError(f"mutations of {self.database} did not finish on every node of cluster "
                                  f"{self.url.cluster} in {MUTATION_WAIT_S:.0f} s: see system.mutations on each")
            time.sleep(0.2)

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
