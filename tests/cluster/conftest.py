"""Fixtures of the cluster tests (``make test-cluster``; ``pytest -m cluster``).

Every test under tests/cluster/ is marked ``cluster``, so the default ``make test`` (``-m "not
cluster"``) leaves them out. The ClickHouse cluster of deploy/clickhouse-cluster.sh (ZooKeeper and
four 18.16 servers: 2 shards x 2 replicas on 127.0.0.1:9101-9104) is started once per session if it
is not running, and stopped at the end only then. Nodes are stopped and started through the script
(``stop-node N`` / ``start-node N``), never by name.
"""
from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "deploy" / "clickhouse-cluster.sh"
CLUSTER = "tuike"
NODE_PORTS = {1: 9101, 2: 9102, 3: 9103, 4: 9104}
SHARDS = {"01": (1, 2), "02": (3, 4)}  # shard -> its replicas' nodes


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


def cluster_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (f"deploy/clickhouse-cluster.sh {' '.join(args)} exited {p.returncode}:\n"
                               f"{p.stdout}{p.stderr}")
    return p


def node_client(node: int, database: str = "default"):
    from clickhouse_driver import Client

    return Client(host="127.0.0.1", port=NODE_PORTS[node], database=database, connect_timeout=5,
                  send_receive_timeout=120)


@pytest.fixture(scope="session")
def clickhouse_cluster() -> str:
    """The base URL of the running cluster (node 1, cluster=tuike); its database part is unused."""
    running = subprocess.run([str(CLUSTER_SCRIPT), "status"], capture_output=True).returncode == 0
    if not running:
        up = subprocess.run([str(CLUSTER_SCRIPT), "up"], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            pytest.fail(f"deploy/clickhouse-cluster.sh up failed:\n{up.stdout}{up.stderr}", pytrace=False)
    yield f"clickhouse://127.0.0.1:{NODE_PORTS[1]}/tuike_cluster?cluster={CLUSTER}"
    if not running:
        subprocess.run([str(CLUSTER_SCRIPT), "down"], capture_output=True, timeout=300)


def fresh_cluster_database(clickhouse_cluster: str) -> tuple[str, str]:
    """A URL with a database of its own (tuike_cluster_<random>) on the cluster, and its name."""
    database = f"tuike_cluster_{uuid.uuid4().hex[:12]}"
    return f"clickhouse://127.0.0.1:{NODE_PORTS[1]}/{database}?cluster={CLUSTER}", database


def drop_cluster_database(database: str) -> None:
    client = node_client(1)
    try:
        client.execute(f"DROP DATABASE IF EXISTS {database} ON CLUSTER {CLUSTER}")
    finally:
        client.disconnect()


@pytest.fixture
def cluster_url(clickhouse_cluster: str) -> str:
    """A fresh database on the cluster, dropped on every node after the test."""
    url, database = fresh_cluster_database(clickhouse_cluster)
    yield url
    drop_cluster_database(database)
