"""The streaming workers writing through the ClickHouse cluster (deploy/clickhouse-cluster.sh: 2
shards x 2 replicas) from the dev Kafka broker: a generated shop of 20,000 events, two workers, and
node 3 — the replica of shard 02 that takes its writes (load_balancing in_order) — stopped
mid-stream. The writes fail over to node 4; the money equals the embedded run's (`tuike run`,
chDB); node 3, started again, catches up from node 4 until both hold the same rows in every table.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from schemas.cluster_ddl import LOCAL_SUFFIX
from tests.cluster.conftest import (SHARDS, cluster_script, drop_cluster_database, fresh_cluster_database,
                                    node_client)
from tests.support.streaming import (Summary, check_alive, compare, input_progress, lag_rows, ledger_activity, note,
                                     ok, summarize_chdb, summarize_server, tally_balances, tuike, wait_until_done)
from tests.topologies.test_streaming import (BAD_LINES, KILL_AT, PARTITIONS, SEED, Env, assert_tuike_lag_is_zero,
                                             produce, rules_with_kafka, start_workers)

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.slow]

EVENTS = 20_000  # the shop's good events (the generator repeats ~0.1 % of them)
STOPPED = 3  # the first replica of shard 02: its writes fail over to node 4
PEER = 4
DOWN_S = 20  # how long it stays stopped while the workers write


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """`tuike generate` of the shop, malformed lines included."""
    d = tmp_path_factory.mktemp("shop")
    ok(tuike("generate", "--seed", str(SEED), "--events", str(EVENTS), "--bad-lines", str(BAD_LINES),
             "--out", str(d / "shop.jsonl"), cwd=d))
    return d / "shop.jsonl"


@pytest.fixture(scope="module")
def reference(shop: Path, tmp_path_factory) -> Summary:
    """The embedded pipeline's ledger of the shop (`tuike run`, chDB): what the cluster must hold."""
    d = tmp_path_factory.mktemp("embedded")
    config = rules_with_kafka(d / "tuike.yaml", "embedded")
    t0 = time.monotonic()
    ok(tuike("run", "--events", str(shop), "--data-dir", str(d / "data"), "--config", str(config), cwd=d,
             timeout=1200), 2)
    summary = summarize_chdb(d / "data", "embedded")
    note(f"embedded run in {time.monotonic() - t0:.0f}s: {summary.count:,} ledger rows, {len(summary.dead)} dead letters")
    return summary


@contextmanager
def cluster_environment(broker: str, clickhouse_cluster: str, where: Path):
    """Topics of their own and a database of its own on the cluster; workers stopped, topics
    deleted, the database dropped on every node and the stopped node started, whatever happened."""
    from topologies.admin import delete_topics
    from topologies.settings import StreamSettings

    settings = StreamSettings(topic_prefix=f"t{uuid.uuid4().hex[:8]}", partitions=PARTITIONS)
    url, database = fresh_cluster_database(clickhouse_cluster)
    where.mkdir(parents=True, exist_ok=True)
    env = Env(broker, url, settings, rules_with_kafka(where / "tuike.yaml", settings.topic_prefix), where)
    note(f"topics {settings.topic_prefix}.*, cluster database {database}, files in {where}")
    try:
        yield env
    finally:
        env.workers.stop_all()
        cluster_script("start-node", str(STOPPED))
        asyncio.run(delete_topics(broker, prefix=settings.topic_prefix + "."))
        drop_cluster_database(database)


def local_counts(node: int, database: str) -> dict[str, int]:
    """Rows stored (before FINAL) in each local table of ``database`` on ``node``: they shrink as
    merges collapse versions, on both replicas alike (merges are replicated too)."""
    client = node_client(node)
    try:
        tables = [r[0] for r in client.execute(
            f"SELECT name FROM system.tables WHERE database = '{database}' AND name LIKE '%{LOCAL_SUFFIX}'")]
        return {t: client.execute(f"SELECT count() FROM {database}.{t}")[0][0] for t in tables}
    finally:
        client.disconnect()


def replication_queue(node: int, database: str) -> int:
    client = node_client(node)
    try:
        return client.execute(f"SELECT count() FROM system.replication_queue WHERE database = '{database}'")[0][0]
    finally:
        client.disconnect()


@pytest.mark.timeout(2400)  # the embedded run, the stream and the catch-up: ~10 min on a busy 2-core machine
def test_a_replica_stopped_mid_stream_loses_nothing_and_catches_up(shop, reference, kafka_broker,
                                                                    clickhouse_cluster, tmp_path):
    from sinks.server_sink import ServerLedger

    with cluster_environment(kafka_broker, clickhouse_cluster, tmp_path / "cluster") as env:
        database = env.clickhouse.split("/")[3].split("?")[0]
        for w in env.add_workers():
            if "--web-port" not in w.args:  # two workers on one host: a free port each
                w.args += ["--web-port", "0"]
        start_workers(env)
        t0 = time.monotonic()
        produce(env, shop)
        deadline = time.monotonic() + 240
        while True:
            check_alive(env.workers)
            committed, end = input_progress(lag_rows(env.broker, env.settings, 0), env.settings)
            if end and committed >= KILL_AT * end:
                break
            assert time.monotonic() < deadline, f"{KILL_AT:.0%} of the input not committed in 240 s"
            time.sleep(0.3)
        with ServerLedger(env.clickhouse) as ledger:
            rows_at_stop = ledger_activity(ledger, 0)[0]
        t_stop = time.monotonic()
        cluster_script("stop-node", str(STOPPED))
        note(f"node {STOPPED} stopped ({time.monotonic() - t_stop:.1f}s) at {committed:,}/{end:,} input records "
             f"committed, {rows_at_stop:,} ledger rows")
        assert committed < end, "the input was all processed before the stop: not mid-stream"
        time.sleep(DOWN_S)
        check_alive(env.workers)
        with ServerLedger(env.clickhouse) as ledger:
            rows_while_down = ledger_activity(ledger, 0)[0] - rows_at_stop
        note(f"{rows_while_down:,} ledger rows written in the {DOWN_S}s node {STOPPED} was down")
        done = wait_until_done(broker=env.broker, settings=env.settings, generation=0, clickhouse=env.clickhouse,
                               workers=env.workers, timeout=900, label=f"node {STOPPED} down")
        assert_tuike_lag_is_zero(env, 0)
        streamed_s = time.monotonic() - t0
        retried = [ln for w in env.workers for ln in w.text().splitlines() if "ledger write failed" in ln]
        note(f"{len(retried)} ledger writes retried while node {STOPPED} was away"
             + (f"; the first: {retried[0][:300]}" if retried else ""))
        got = summarize_server(env.clickhouse, "through the cluster")
        note(f"through the cluster: {done.ledger_rows:,} ledger rows inserted, {got.count:,} after FINAL; "
             f"produce to caught up {streamed_s:.0f}s")
        compare(reference, got)
        assert tally_balances(env.broker, env.settings, 0) == got.status, "the tallies are not the ledger's"

        t_start = time.monotonic()
        cluster_script("start-node", str(STOPPED))
        caught_up = None
        while time.monotonic() - t_start < 120:
            if replication_queue(STOPPED, database) == 0 and local_counts(STOPPED, database) == local_counts(PEER, database):
                caught_up = time.monotonic() - t_start
                break
            time.sleep(1)
        stopped_rows = local_counts(STOPPED, database)
        assert caught_up is not None, (f"node {STOPPED} did not catch up with node {PEER} in 120 s: "
                                       f"{stopped_rows} vs {local_counts(PEER, database)}")
        note(f"node {STOPPED} started again and caught up with node {PEER} in {caught_up:.1f}s: "
             f"{stopped_rows['ledger_entries_local']:,} ledger rows on each")
        for shard, (a, b) in SHARDS.items():
            assert local_counts(a, database) == local_counts(b, database), f"shard {shard}: replicas differ"
        compare(reference, summarize_server(env.clickhouse, "after the restart"))
