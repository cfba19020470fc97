"""The ledger's schema on a ClickHouse cluster, derived from the single-node ``schemas/ddl.sql``
(one source of truth) statement by statement.

Each ``ReplacingMergeTree`` table ``X`` becomes ``X_local``, a ``ReplicatedReplacingMergeTree`` on
every shard, and ``X`` a ``Distributed`` table over it, so every writer and every reader keeps
its table names. The sharding key is a hash of ``X``'s ORDER BY columns: those columns are
exactly what makes two rows versions of one row (ReplacingMergeTree collapses rows with equal
keys), so all versions of a row land on one shard, where ``FINAL`` can collapse them — ``FINAL``
collapses nothing across shards (ClickHouse issues #52052, #35352). Where the key also fixes the
partition (``toYYYYMM(ts)`` with ``ts`` in the key or determined by it), so does the shard.

``FINAL`` on a Distributed table is sent to each shard, which collapses its own rows (checked on
18.16 by tests/cluster/test_clickhouse_cluster.py), so the analysts' views (``SELECT … FROM X
FINAL``) stay as they are, over the Distributed tables. Every statement runs ``ON CLUSTER``.

Mutations (``ALTER TABLE X DELETE/UPDATE``) cannot run on a Distributed table: they go to
``X_local ON CLUSTER`` instead (:func:`local_mutation`).
"""
from __future__ import annotations

import re

LOCAL_SUFFIX = "_local"
ZOOKEEPER_PATH = "/clickhouse/tables/{shard}/%s/%s"  # {shard}, {replica}: each node's macros

_CREATE_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS (\w+)$")
_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<db>\w+)\.(?P<name>\w+) \((?P<columns>.*)\)\s*"
    r"ENGINE = ReplacingMergeTree\((?P<version>\w*)\)(?P<rest>.*)$", re.S)
_ORDER_BY = re.compile(r"ORDER BY\s+(?P<key>\([^)]*\)|\w+)\s*$", re.S)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (?P<db>\w+)\.(?P<name>\w+) AS\b", re.S)
_DROP = re.compile(r"^DROP TABLE IF EXISTS (?P<db>\w+)\.(?P<name>\w+)$")
_ADD_COLUMN = re.compile(r"^ALTER TABLE (?P<db>\w+)\.(?P<name>\w+) (?P<change>ADD COLUMN .*)$", re.S)
_MUTATION = re.compile(r"^\s*ALTER TABLE\s+(?:(?P<db>\w+)\.)?(?P<name>\w+)\s+(?P<change>(?:DELETE|UPDATE)\b.*)$",
                       re.S | re.I)
# Column types cityHash64 on 18.16 does not take: hashed through their text.
_UNHASHABLE = ("Decimal",)


class ClusterDDLError(ValueError):
    """A statement of schemas/ddl.sql that this module does not know how to spread on a cluster."""


def cluster_statements(statements: list[str], cluster: str, existing: set[str] = frozenset()) -> list[str]:
    """The cluster's version of single-node ``statements`` (``sinks.schema.schema_statements``'
    output), every DDL ``ON CLUSTER``. ``existing``: the tables and views the database already
    has; their CREATEs are left out, so opening a ledger whose schema is complete runs no
    ON CLUSTER DDL (which waits for every node, a stopped replica included). INSERTs are kept:
    they write through the Distributed tables."""
    present = set(existing)  # less what an upgrade drops (a view it creates again)
    out: list[str] = []
    for stmt in statements:
        out += _spread(stmt.strip(), cluster, present)
    return out


def _spread(stmt: str, cluster: str, existing: set[str]) -> list[str]:
    on = f"ON CLUSTER {cluster}"
    if m := _CREATE_DATABASE.match(stmt):
        return [] if existing else [f"CREATE DATABASE IF NOT EXISTS {m[1]} {on}"]
    if m := _CREATE_TABLE.match(stmt):
        return _table(m, cluster, existing)
    if m := _CREATE_VIEW.match(stmt):
        if m["name"] in existing:
            return []
        return [f"CREATE VIEW IF NOT EXISTS {m['db']}.{m['name']} {on} AS" + stmt[m.end():]]
    if m := _DROP.match(stmt):
        existing.discard(m["name"])
        return [f"{stmt} {on}"]
    if m := _ADD_COLUMN.match(stmt):
        db, name, change = m["db"], m["name"], m["change"]
        return [f"ALTER TABLE {db}.{name}{LOCAL_SUFFIX} {on} {change}", f"ALTER TABLE {db}.{name} {on} {change}"]
    if stmt.upper().startswith("INSERT "):
        return [stmt]
    raise ClusterDDLError(f"no cluster form for the statement {stmt[:80]!r}…: teach schemas/cluster_ddl.py")


def _table(m: re.Match, cluster: str, existing: set[str]) -> list[str]:
    db, name, columns, version, rest = m["db"], m["name"], m["columns"], m["version"], m["rest"]
    key = _ORDER_BY.search(rest)
    if key is None:
        raise ClusterDDLError(f"{db}.{name} has no ORDER BY: there is no key to shard it by")
    local = f"{name}{LOCAL_SUFFIX}"
    path = ZOOKEEPER_PATH % (db, local)
    engine_args = ", ".join([f"'{path}'", "'{replica}'"] + ([version] if version else []))
    out = []
    if local not in existing:
        out.append(f"CREATE TABLE IF NOT EXISTS {db}.{local} ON CLUSTER {cluster} ({columns})\n"
                   f"ENGINE = ReplicatedReplacingMergeTree({engine_args}){rest}")
    if name not in existing:
        # MATERIALIZED columns left out: the Distributed table would compute them and the shard refuse them
        written = ",".join(d for d in _column_defs(columns) if " MATERIALIZED " not in d)
        out.append(f"CREATE TABLE IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} ({written}\n)\n"
                   f"ENGINE = Distributed({cluster}, {db}, {local}, {sharding_key(columns, key['key'])})")
    return out


def sharding_key(columns: str, order_by: str) -> str:
    """``cityHash64`` of the ORDER BY columns (``columns`` is the CREATE TABLE's column list);
    Decimal columns through ``toString``, which cityHash64 on 18.16 refuses."""
    types = dict(_column_types(columns))
    names = [c.strip() for c in order_by.strip("()").split(",") if c.strip()]
    unknown = [n for n in names if n not in types]
    if unknown:
        raise ClusterDDLError(f"ORDER BY {order_by}: {', '.join(unknown)} not among the columns; "
                              "a key of expressions needs a sharding rule of its own")
    return "cityHash64(" + ", ".join(
        f"toString({n})" if types[n].startswith(_UNHASHABLE) else n for n in names) + ")"


def _column_defs(columns: str) -> list[str]:
    """The column definitions of a CREATE TABLE's list, split on commas outside parentheses
    (``Decimal(18, 2)``), as written."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(columns):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(columns[start:i])
            start = i + 1
    parts.append(columns[start:])
    return [p for p in parts if p.strip()]


def _column_types(columns: str) -> list[tuple[str, str]]:
    """(name, type) of each column definition (``name Type [DEFAULT …|MATERIALIZED …]``)."""
    return [(w[0], w[1].strip()) for w in (d.split(None, 1) for d in _column_defs(columns)) if len(w) == 2]


def local_mutation(sql: str, database: str, cluster: str) -> str | None:
    """``ALTER TABLE [db.]X DELETE|UPDATE …`` as ``ALTER TABLE db.X_local ON CLUSTER c …``; None
    for any other statement."""
    m = _MUTATION.match(sql)
    if m is None:
        return None
    return f"ALTER TABLE {m['db'] or database}.{m['name']}{LOCAL_SUFFIX} ON CLUSTER {cluster} {m['change']}"
