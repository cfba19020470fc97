"""schemas/cluster_ddl.py, without a server: the cluster schema derived from schemas/ddl.sql
(milliseconds; the cluster itself is tested in tests/cluster/)."""
from __future__ import annotations

import re

import pytest

from schemas.cluster_ddl import ClusterDDLError, cluster_statements, local_mutation, sharding_key
from sinks.schema import ddl_statements, schema_statements

SINGLE = ddl_statements("shop")
CLUSTERED = cluster_statements(SINGLE, "tuike")
TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS shop\.(\w+) .*?ENGINE = ReplacingMergeTree.*?ORDER BY (\(.*?\)|\w+)\s*$",
                   re.S)


def created(statements: list[str], kind: str) -> dict[str, str]:
    found = re.compile(rf"^CREATE {kind} IF NOT EXISTS shop\.(\w+) ON CLUSTER tuike\b")
    return {m[1]: s for s in statements if (m := found.match(s))}


def test_every_table_becomes_replicated_shards_under_a_distributed_table_of_its_name():
    single = {m[1]: m[2] for s in SINGLE if (m := TABLE.match(s))}
    tables = created(CLUSTERED, "TABLE")
    assert len(single) >= 20 and set(tables) == set(single) | {f"{t}_local" for t in single}
    for name in single:
        local = tables[f"{name}_local"]
        assert f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/shop/{name}_local', '{{replica}}'" in local
        assert "Distributed(tuike, shop, " + f"{name}_local, cityHash64(" in tables[name]
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/shop/ledger_hours_raw_local', '{replica}', version)" \
        in tables["ledger_hours_raw_local"], "the version column stays the engine's"
    assert all(s.startswith(("CREATE DATABASE IF NOT EXISTS shop ON CLUSTER tuike", "CREATE TABLE", "CREATE VIEW"))
               for s in CLUSTERED)


def test_each_table_is_sharded_by_its_order_by_key_so_every_version_of_a_row_is_on_one_shard():
    tables = created(CLUSTERED, "TABLE")
    assert "cityHash64(generation, ts, entry_id))" in tables["ledger_entries"]
    assert "cityHash64(generation, order_id, ts))" in tables["order_standings_raw"]
    assert "cityHash64(order_id, sku))" in tables["order_items_raw"]
    assert "cityHash64(root_id, toString(window_hours)))" in tables["cascade_forecasts_raw"], \
        "18.16's cityHash64 takes no Decimal"
    for stmt in SINGLE:
        if m := TABLE.match(stmt):
            key = [c.strip() for c in m[2].strip("()").split(",")]
            hashed = re.search(r"cityHash64\((.*)\)\)$", tables[m[1]])[1]
            assert [re.sub(r"toString\((\w+)\)", r"\1", c.strip()) for c in hashed.split(",")] == key, m[1]


def test_the_views_keep_their_names_and_read_the_distributed_tables_with_final():
    views = created(CLUSTERED, "VIEW")
    assert {"commission_ledger", "dead_letters", "orders", "order_standings", "settlements"} <= set(views)
    assert "FROM shop.ledger_entries FINAL" in views["commission_ledger"]


def test_a_materialized_column_stays_on_the_shards_only():
    tables = created(CLUSTERED, "TABLE")
    assert "first_received_ver" in tables["dead_letters_raw_local"]
    assert "first_received_ver" not in tables["dead_letters_raw"]


def test_a_complete_schema_runs_no_ddl_and_an_upgrade_runs_on_every_node():
    def query(sql: str) -> list[tuple]:
        if "FROM system.tables" in sql and "create_table_query" not in sql:
            return [(n,) for n in names]
        if "create_table_query" in sql:
            return [("CREATE VIEW shop.commission_ledger AS SELECT 1",)]  # an older view
        if "schema_upgrades" in sql:
            return [("order_standings",), ("ledger_hours",)]
        return [("generation",), ("sealed",)]

    names = list(created(CLUSTERED, "TABLE")) + list(created(CLUSTERED, "VIEW"))
    out = schema_statements("shop", query, "tuike")
    assert out == ["DROP TABLE IF EXISTS shop.commission_ledger ON CLUSTER tuike",
                   created(CLUSTERED, "VIEW")["commission_ledger"]]


def test_mutations_go_to_the_local_tables_on_the_cluster():
    assert (local_mutation("ALTER TABLE person_keys DELETE WHERE owner = 'a'", "shop", "tuike")
            == "ALTER TABLE shop.person_keys_local ON CLUSTER tuike DELETE WHERE owner = 'a'")
    assert (local_mutation("ALTER TABLE shop.clicks_raw UPDATE sealed = '' WHERE 1", "shop", "tuike")
            == "ALTER TABLE shop.clicks_raw_local ON CLUSTER tuike UPDATE sealed = '' WHERE 1")
    assert local_mutation("SELECT 1", "shop", "tuike") is None


def test_what_it_cannot_spread_is_refused_by_name():
    with pytest.raises(ClusterDDLError, match="teach schemas/cluster_ddl.py"):
        cluster_statements(["CREATE TABLE shop.x (a String) ENGINE = Log"], "tuike")
    with pytest.raises(ClusterDDLError, match="sharding rule"):
        sharding_key("a String", "(lower(a))")


def test_the_url_names_the_cluster():
    from sinks.errors import LedgerError
    from sinks.server_sink import parse_url

    url = parse_url("clickhouse://127.0.0.1:9101/shop?cluster=tuike")
    assert (url.port, url.database, url.cluster) == (9101, "shop", "tuike")
    assert url.display == "clickhouse://127.0.0.1:9101/shop?cluster=tuike"
    assert parse_url("clickhouse://127.0.0.1:9000/shop").cluster is None
    with pytest.raises(LedgerError, match="is not a cluster name"):
        parse_url("clickhouse://127.0.0.1:9101/shop?cluster=a-b")
