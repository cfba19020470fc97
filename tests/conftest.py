"""Shared fixtures.

ClickHouse server: `make test` starts it and sets TUIKE_TEST_CLICKHOUSE; a bare `pytest` starts
it with deploy/clickhouse.sh (and stops it at the end only if it started it). Tests that use
`clickhouse_url` are marked `server` automatically, so `pytest -m "not server"` skips them.

Kafka broker: the same with TUIKE_TEST_KAFKA (HOST:PORT) and deploy/kafka.sh. Tests that use
`kafka_broker` (directly or through `kafka_settings`) are marked `kafka`; each test gets topics
of its own through a fresh `kafka.topic_prefix` (`kafka_settings`), deleted after it.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLICKHOUSE_SCRIPT = REPO / "deploy" / "clickhouse.sh"
KAFKA_SCRIPT = REPO / "deploy" / "kafka.sh"


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "clickhouse_url" in names:
            item.add_marker(pytest.mark.server)
        if "kafka_broker" in names:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def clickhouse_server() -> str:
    """Base URL of a running ClickHouse server (its database part is ignored)."""
    url = os.environ.get("TUIKE_TEST_CLICKHOUSE")
    if url:
        yield url
        return
    running = subprocess.run([str(CLICKHOUSE_SCRIPT), "status"], capture_output=True).returncode == 0
    if not running:
        up = subprocess.run([str(CLICKHOUSE_SCRIPT), "up"], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            pytest.fail(f"deploy/clickhouse.sh up failed (run `make clickhouse-up` to see why):\n"
                        f"{up.stdout}{up.stderr}", pytrace=False)
    yield "clickhouse://127.0.0.1:9000/tuike_test"
    if not running:
        subprocess.run([str(CLICKHOUSE_SCRIPT), "down"], capture_output=True, timeout=120)


@pytest.fixture
def clickhouse_url(clickhouse_server: str) -> str:
    """A URL with a fresh database of its own (tuike_test_<random>), dropped after the test."""
    from clickhouse_driver import Client

    from sinks.server_sink import parse_url

    base = parse_url(clickhouse_server)
    database = f"tuike_test_{uuid.uuid4().hex[:12]}"
    auth = f"{base.user}:{base.password}@" if base.password else f"{base.user}@"
    yield f"clickhouse://{auth}{base.host}:{base.port}/{database}"
    client = Client(host=base.host, port=base.port, user=base.user, password=base.password)
    try:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.disconnect()


@pytest.fixture(scope="session")
def kafka_broker() -> str:
    """HOST:PORT of a running Kafka broker: TUIKE_TEST_KAFKA, else the local one of
    deploy/kafka.sh, started here if it is not running (and then stopped at the end)."""
    broker = os.environ.get("TUIKE_TEST_KAFKA")
    if broker:
        yield broker
        return
    running = subprocess.run([str(KAFKA_SCRIPT), "status"], capture_output=True).returncode == 0
    if not running:
        up = subprocess.run([str(KAFKA_SCRIPT), "up"], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            pytest.fail(f"deploy/kafka.sh up failed (run `make kafka-up` to see why):\n{up.stdout}{up.stderr}",
                        pytrace=False)
    yield "127.0.0.1:9092"
    if not running:
        subprocess.run([str(KAFKA_SCRIPT), "down"], capture_output=True, timeout=120)


@pytest.fixture
def kafka_settings(kafka_broker: str):
    """Stream settings with a topic prefix of this test's own (t<8 hex>): every topic it creates
    is new, and deleted after the test."""
    import asyncio

    from topologies.admin import delete_topics
    from topologies.settings import StreamSettings

    settings = StreamSettings(topic_prefix=f"t{uuid.uuid4().hex[:8]}")
    yield settings
    asyncio.run(delete_topics(kafka_broker, prefix=settings.topic_prefix + "."))


@pytest.fixture
def chdb_ledger(tmp_path: Path):
    """An embedded chDB ledger in tmp_path (chDB allows one open data path per process)."""
    from sinks.chdb_sink import ChdbLedger

    ledger = ChdbLedger(tmp_path)
    yield ledger
    ledger.close()


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def ledger_url(request) -> str | None:
    """Each engine in turn: None (the embedded chDB ledger), then a fresh database on the server."""
    return request.getfixturevalue("clickhouse_url") if request.param == "server" else None
