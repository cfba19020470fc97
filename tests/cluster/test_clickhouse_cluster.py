"""The ledger on the ClickHouse cluster of deploy/clickhouse-cluster.sh (2 shards x 2 replicas,
18.16): the schema of schemas/cluster_ddl.py applies ON CLUSTER, and the same generated shop (the
embedded pipeline, then a month's settlement) written once to the single-node dev server and once
through the cluster gives the same answers to every query of schemas/analytics.py, the promoter
page's and the settlement's; rows written again in later batches collapse under FINAL because all
versions of a row sit on one shard; a retention delete reaches every replica.
"""
from __future__ import annotations

import time
import uuid

import pytest

from schemas.analytics import promoter_queries
from schemas.cluster_ddl import LOCAL_SUFFIX
from sinks.writer import BASE_TABLE
from tests.cluster.conftest import SHARDS, drop_cluster_database, fresh_cluster_database, node_client
from tests.schemas.test_analytics import ALL, CONFIG, MONTH, OCTOBER, Filters, answers, build
from tests.schemas.test_analytics import shop  # noqa: F401 (fixture)
from tuike.backoffice.retention import apply_retention, expired

pytestmark = [pytest.mark.cluster, pytest.mark.server]

FILTERS = [ALL, MONTH, Filters(OCTOBER.start_s, OCTOBER.end_s, "hour", timezone=CONFIG.timezone)]
# Every base table the sinks write (the analysts' views read them with FINAL).
BASE_TABLES = sorted(set(BASE_TABLE.values()) | {"ledger_hours_raw", "ledger_generations"})
SETTLEMENT_READS = (
    "SELECT * FROM settlements ORDER BY period, payee",
    "SELECT * FROM settled_lines ORDER BY period, order_id, sku, beneficiary_id, level",
    "SELECT * FROM alerts ORDER BY alert_id",
)


@pytest.fixture(scope="module")
def single(shop, clickhouse_server, tmp_path_factory):  # noqa: F811
    """The shop on the single-node dev server (a database of its own, dropped after)."""
    from tests.topologies.test_streaming import drop_database, fresh_database_url

    url, database = fresh_database_url(clickhouse_server)
    ledger = build(shop, tmp_path_factory.mktemp("single"), url)
    yield ledger
    ledger.close()
    drop_database(clickhouse_server, database)


@pytest.fixture(scope="module")
def clustered(shop, clickhouse_cluster, tmp_path_factory):  # noqa: F811
    """The same shop written through the cluster (a database of its own, dropped on every node after)."""
    url, database = fresh_cluster_database(clickhouse_cluster)
    t0 = time.monotonic()
    ledger = build(shop, tmp_path_factory.mktemp("cluster"), url)
    print(f"\nshop built through the cluster in {time.monotonic() - t0:.1f}s")
    yield ledger
    ledger.close()
    drop_cluster_database(database)


def each_node(sql: str) -> dict[int, list[tuple]]:
    out = {}
    for node in (1, 2, 3, 4):
        client = node_client(node)
        try:
            out[node] = client.execute(sql)
        finally:
            client.disconnect()
    return out


def wait_for_replicas(database: str, timeout: float = 60) -> None:
    """Until every replica's queue of this database is empty (fetches of its peer's parts done)."""
    deadline = time.monotonic() + timeout
    sql = f"SELECT count() FROM system.replication_queue WHERE database = '{database}'"
    while any(rows[0][0] for rows in each_node(sql).values()):
        assert time.monotonic() < deadline, f"replication queues of {database} not empty after {timeout:.0f}s"
        time.sleep(0.5)


def local_counts(database: str, table: str) -> dict[int, int]:
    return {n: rows[0][0] for n, rows in each_node(f"SELECT count() FROM {database}.{table}{LOCAL_SUFFIX}").items()}


def test_the_schema_is_on_every_node_as_replicated_shards_under_distributed_tables(clustered):
    db = clustered.database
    tables = each_node(f"SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name")
    assert tables[1] == tables[2] == tables[3] == tables[4], "every node has the same tables (ON CLUSTER)"
    engines = dict(tables[1])
    for base in BASE_TABLES:
        assert engines[base] == "Distributed", base
        assert engines[base + LOCAL_SUFFIX] == "ReplicatedReplacingMergeTree", base
    assert engines["commission_ledger"] == engines["orders"] == "View"
    macros = each_node("SELECT macro, substitution FROM system.macros ORDER BY macro")
    assert {n: dict(m)["shard"] for n, m in macros.items()} == {1: "01", 2: "01", 3: "02", 4: "02"}
    assert len({dict(m)["replica"] for m in macros.values()}) == 4


def test_every_analytics_query_gives_the_single_node_answers(single, clustered):
    assert clustered.query("SELECT count() FROM commission_ledger").rows[0][0] > 1000
    assert answers(clustered, FILTERS) == answers(single, FILTERS)
    for sql in promoter_queries("P000001").values():
        assert clustered.query(sql).rows == single.query(sql).rows, sql
    for sql in SETTLEMENT_READS:
        assert clustered.query(sql).rows == single.query(sql).rows, sql
    assert clustered.query(SETTLEMENT_READS[0]).rows, "the month's settlement paid someone"


def test_both_replicas_of_each_shard_hold_the_same_rows_and_the_shards_split_them(clustered):
    db = clustered.database
    wait_for_replicas(db)
    counts = local_counts(db, "ledger_entries")
    for shard, (a, b) in SHARDS.items():
        assert counts[a] == counts[b] > 0, f"shard {shard}: replicas {a} and {b} hold {counts[a]} and {counts[b]} rows"
    total = clustered.query("SELECT count() FROM ledger_entries").rows[0][0]
    assert counts[1] + counts[3] == total
    print(f"\nledger_entries: shard 01 {counts[1]:,} rows, shard 02 {counts[3]:,} rows (each on both replicas)")


def test_rows_written_again_in_later_batches_collapse_under_final(single, clustered):
    """Each base table's rows written a second time, in two later inserts of different rows (so the
    replicas' block deduplication does not drop them): stored twice, counted once."""
    db = clustered.database
    before = {t: clustered.query(f"SELECT count() FROM {t} FINAL").rows[0][0] for t in BASE_TABLES}
    for table in BASE_TABLES:
        first = clustered.query(f"SELECT name FROM system.columns WHERE database = '{db}' AND table = '{table}'").rows[0][0]
        for half in (0, 1):
            clustered.query(f"INSERT INTO {table} SELECT * FROM {table} WHERE cityHash64(toString({first})) % 2 = {half}")
    wait_for_replicas(db)
    stored = clustered.query("SELECT count() FROM ledger_entries").rows[0][0]
    assert stored == 2 * before["ledger_entries"], "every ledger row is stored twice now"
    for table in BASE_TABLES:
        assert clustered.query(f"SELECT count() FROM {table} FINAL").rows[0][0] == before[table], table
    # no row has versions on both shards: FINAL could not collapse those
    shard1 = {r[0] for r in each_node(f"SELECT DISTINCT entry_id FROM {db}.ledger_entries{LOCAL_SUFFIX}")[1]}
    shard2 = {r[0] for r in each_node(f"SELECT DISTINCT entry_id FROM {db}.ledger_entries{LOCAL_SUFFIX}")[3]}
    assert shard1 and shard2 and not shard1 & shard2
    assert answers(clustered, FILTERS) == answers(single, FILTERS)
    for sql in SETTLEMENT_READS:
        assert clustered.query(sql).rows == single.query(sql).rows, sql


def test_a_retention_delete_reaches_every_replica(single, clustered):
    """tuike/backoffice/retention.py's ALTER … DELETE goes to the local tables ON CLUSTER (a
    Distributed table takes no mutation) and has finished on every node when it returns."""
    now = time.time()
    days = {"clicks": (int(now) - OCTOBER.start_s - 10 * 86_400) // 86_400}  # the clicks before ~Oct 10
    found = expired(clustered, days, now)
    assert found == expired(single, days, now) and found[0].rows > 0
    apply_retention(clustered, found)
    apply_retention(single, found)
    left = f"SELECT count() FROM {clustered.database}.clicks_raw{LOCAL_SUFFIX} WHERE ts < toDateTime({found[0].before})"
    assert all(rows[0][0] == 0 for rows in each_node(left).values())
    sql = "SELECT count(), min(ts) FROM clicks"
    assert clustered.query(sql).rows == single.query(sql).rows
    assert answers(clustered, FILTERS) == answers(single, FILTERS)


def test_a_cluster_the_server_does_not_know_is_refused(clickhouse_cluster):
    from sinks.errors import LedgerError
    from sinks.server_sink import ServerLedger

    with pytest.raises(LedgerError, match="has no cluster 'elsewhere'.*tuike"):
        ServerLedger(f"clickhouse://127.0.0.1:9101/tuike_{uuid.uuid4().hex[:6]}?cluster=elsewhere")
