"""The workers' metrics and probes (topologies/metrics.py, topologies/health.py).

The cheap tests run without servers; one test runs a real `tuike worker` on the Kafka broker and
the ClickHouse server, feeds it events and finds real figures on its /metrics, and its /healthz and
/readyz answering.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from topologies import metrics
from topologies.health import Readiness

from tests.support.streaming import TUIKE, child_env, free_port, ok, tuike, write_config

DATA = Path(__file__).resolve().parents[1] / "data"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_dead_letter_reasons_are_classes_and_bounded():
    before = value("tuike_dead_letters_total", reason="order.paid: items[N].price")
    metrics.count_dead_letters(["order.paid: items[0].price: must be positive",
                                "order.paid: items[0].price: not a decimal"])
    assert value("tuike_dead_letters_total", reason="order.paid: items[N].price") == before + 2
    metrics.count_dead_letters(["bad JSON at column 41", "bad JSON at column 7"])  # one class: numbers are N
    assert value("tuike_dead_letters_total", reason="bad JSON at column N") >= 2
    letters = "abcdefghijklmnopqrstuvwxyz"
    metrics.count_dead_letters(f"reason {letters[i % 26]}{letters[i // 26]}: bad" for i in range(metrics.MAX_REASONS + 10))
    assert len(metrics._reasons) <= metrics.MAX_REASONS
    assert value("tuike_dead_letters_total", reason="other") >= 10


def test_batch_figures_and_partitions():
    class Result:
        received = {"t.orders": 3, "t.clicks": 1}
        sent = {"t.g0.ledger": 5}
        holds = 1

    before = (value("tuike_events_in_total", topic="t.orders"), value("tuike_fraud_holds_total"),
              value("tuike_processing_seconds_count", stage="engine"))
    metrics.batch_done("engine", time.monotonic() - 0.01, Result())
    assert (value("tuike_events_in_total", topic="t.orders"), value("tuike_fraud_holds_total"),
            value("tuike_processing_seconds_count", stage="engine")) == (before[0] + 3, before[1] + 1, before[2] + 1)

    class TP:
        def __init__(self, topic: str, partition: int):
            self.topic, self.partition = topic, partition

    metrics.refresh_partitions("w1", {TP("t.orders", 0): 7, TP("t.orders", 1): None})
    assert value("tuike_consumer_lag", worker="w1", topic="t.orders", partition="0") == 7
    assert value("tuike_partition_assigned", worker="w1", topic="t.orders", partition="1") == 1
    metrics.refresh_partitions("w1", {})  # revoked: the series go
    assert REGISTRY.get_sample_value("tuike_partition_assigned", {"worker": "w1", "topic": "t.orders",
                                                                  "partition": "0"}) is None


def test_readiness_names_what_is_not_ready(monkeypatch):
    monkeypatch.setattr("topologies.health.CHECK_SECONDS", 0.2)
    async def fine():
        return None

    async def down():
        raise ConnectionRefusedError("connection refused")

    async def slow():
        await asyncio.sleep(60)

    async def run():
        ready = await Readiness({"kafka": fine}).answer()
        not_ready = await Readiness({"kafka": fine, "clickhouse": down, "pipeline": slow}).answer()
        return ready, not_ready

    ready, (status, body) = asyncio.run(asyncio.wait_for(run(), 10))
    assert ready == (200, {"ready": True, "checks": ["kafka"]})
    assert status == 503 and body["ready"] is False and set(body["not_ready"]) == {"clickhouse", "pipeline"}
    assert "connection refused" in body["not_ready"]["clickhouse"] and "no answer" in body["not_ready"]["pipeline"]
    assert value("tuike_ready", check="clickhouse") == 0 and value("tuike_ready", check="kafka") == 1


def scraped(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric's samples in a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


@pytest.mark.long  # about 25 s: a worker's start and a rebalance
def test_a_worker_serves_its_figures(tmp_path: Path, kafka_broker: str, kafka_settings, clickhouse_url: str):
    """One worker, two small event files (one with bad lines): /metrics shows the records in and
    out, the batches' latency, the ledger's rows and latency, dead letters by reason, and the
    partitions it owns with their lag; /healthz and /readyz answer 200."""
    config = write_config(tmp_path / "tuike.yaml", kafka_settings.topic_prefix, partitions=2)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*TUIKE, "worker", "--config", str(config), "--broker", kafka_broker, "--clickhouse",
                                 clickhouse_url, "--data-dir", str(tmp_path / "w"), "--web-port", str(port),
                                 "--log-format", "json"], cwd=tmp_path, env=child_env(), stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        ok(tuike("produce", "--config", str(config), "--broker", kafka_broker, "--events",
                 str(DATA / "valid_events.jsonl"), cwd=tmp_path))
        tuike("produce", "--config", str(config), "--broker", kafka_broker, "--events", str(DATA / "mixed.jsonl"),
              cwd=tmp_path)  # exits 2: some lines are dead letters
        deadline, page = time.monotonic() + 90, ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the worker stopped:\n{log.read_text()}"
            try:
                page = httpx.get(f"{base}/metrics", timeout=5).text
            except httpx.HTTPError:
                page = ""
            if (sum(scraped(page, "tuike_events_in_total").values()) >= 15
                    and sum(scraped(page, "tuike_ledger_rows_total").values()) >= 20):
                break
            time.sleep(1)
        events_in = scraped(page, "tuike_events_in_total")
        assert sum(events_in.values()) >= 15 and any("orders" in k for k in events_in), page
        assert sum(scraped(page, "tuike_events_out_total").values()) > 0, page
        assert scraped(page, "tuike_processing_seconds_count") and all(
            v > 0 for v in scraped(page, "tuike_processing_seconds_sum").values()), page
        assert scraped(page, "tuike_ledger_write_seconds_count")[""] > 0, page
        assert sum(scraped(page, "tuike_ledger_rows_total").values()) >= 20, page
        dead = scraped(page, "tuike_dead_letters_total")
        assert sum(dead.values()) >= 3 and any("bad JSON" in k for k in dead), dead
        owned = scraped(page, "tuike_partition_assigned")
        assert len(owned) == 2 * len({k.split('topic="')[1].split('"')[0] for k in owned}) >= 2, owned
        assert all(v == 0 for v in scraped(page, "tuike_consumer_lag").values()), page
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
        assert '"logger": "tuike.worker.progress"' in log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_a_bad_web_port_is_bad_input(capsys):
    from tuike.cli import main

    assert main(["worker", "--clickhouse", "clickhouse://127.0.0.1:1/x", "--web-port", "70000"]) == 2
    assert "--web-port 70000" in capsys.readouterr().err


def test_a_stage_counts_what_its_batch_took_in_and_sent():
    """Stage.run's own figures (the agent turns them into tuike_events_in/out): every record in
    per topic, and the messages out per topic, the dead letter of a bad record among them."""
    from types import SimpleNamespace

    from engine.config import parse_config
    from engine.dataflow import Context
    from schemas.records import read_records
    from topologies.admin import outgoing
    from topologies.settings import StreamSettings
    from topologies.stage import Stage

    settings = StreamSettings(topic_prefix="t", partitions=1)
    stage = Stage("engine", settings, 0, Context(parse_config({}), lambda promoter: None), lambda *key: None)
    records = [outgoing(rec, settings) for rec in read_records(DATA / "valid_events.jsonl")]
    events = [SimpleNamespace(message=SimpleNamespace(topic=out.topic, partition=0, offset=i, key=out.key,
                                                      value=out.value, headers=out.headers))
              for i, out in enumerate(records) if out.topic in stage.topics]
    events.append(SimpleNamespace(message=SimpleNamespace(topic="t.orders", partition=0, offset=len(events),
                                                          key=b"o", value=b"{not json", headers=None)))
    _entries, result = stage.run(events, lambda p: {topic: 0 for topic in stage.topics})
    assert sum(result.received.values()) == len(events) and result.received["t.orders"] >= 2, result.received
    assert result.sent[settings.deadletter] == result.dead_letters >= 1, result.sent
    assert result.sent[stage.sink_topic] > 0, result.sent
