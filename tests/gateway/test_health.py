"""``tuike serve``'s probes and metrics (gateway/health.py): /healthz is liveness only, /readyz asks
the handoff and the ledger and names what is not ready (503), /metrics counts requests by route
template, method and status."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.handoff import MAX_BACKLOG, KafkaHandoff
from gateway.health import ledger_check
from gateway.settings import gateway_settings
from tuike.dashboard import LedgerThread

RAW = {"shops": {"s1": {"events_secret": "shh-events"}}}


class Embedded:
    """A stand-in for the embedded handoff: only what readiness reads."""
    mode = "embedded"

    def __init__(self, backlog: int = 0):
        self.backlog = backlog

    async def hand_on(self, delivery) -> None:
        pass

    async def close(self) -> None:
        pass


class Ledger:
    def __init__(self, error: Exception | None = None):
        self.error = error

    def query(self, sql: str):
        if self.error:
            raise self.error
        return [(1,)]


def client_of(handoff, ledger: Ledger | None = None) -> TestClient:
    app = create_app(gateway_settings(RAW), handoff)
    if ledger is not None:
        app.state.readiness.add("clickhouse", ledger_check(LedgerThread(ledger)))
    return TestClient(app)


def test_ready_when_the_pipeline_keeps_up_and_the_ledger_answers():
    with client_of(Embedded(), Ledger()) as client:
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json() == {"ready": True, "checks": ["clickhouse", "handoff"]}


def test_not_ready_names_the_ledger_and_a_pipeline_too_far_behind():
    with client_of(Embedded(backlog=MAX_BACKLOG + 1), Ledger(ConnectionRefusedError("ClickHouse refused"))) as client:
        r = client.get("/readyz")
        assert r.status_code == 503, r.text
        problems = r.json()["not_ready"]
        assert set(problems) == {"handoff", "clickhouse"}
        assert "ClickHouse refused" in problems["clickhouse"] and "requests behind" in problems["handoff"]
        assert client.get("/healthz").status_code == 200  # alive all the same: a restart would not help


def test_not_ready_when_kafka_cannot_be_reached():
    handoff = KafkaHandoff("127.0.0.1:1", None)  # nothing listens on port 1: refused at once
    with client_of(handoff) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and "cannot reach Kafka at 127.0.0.1:1" in r.json()["not_ready"]["handoff"], r.text


@pytest.mark.kafka
def test_ready_with_kafka(kafka_broker: str, kafka_settings):
    with client_of(KafkaHandoff(kafka_broker, kafka_settings)) as client:
        r = client.get("/readyz")
        assert r.status_code == 200, r.text


def samples(page: str, name: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{name}\{{(.*)\}} (\S+)$", page, re.M)}


def test_requests_are_counted_by_route_template_method_and_status():
    with client_of(Embedded()) as client:
        before = samples(client.get("/metrics").text, "tuike_http_requests_total")
        assert client.post("/events", content=b"{}", headers={"X-Tuike-Signature": "bad"}).status_code == 401
        assert client.post("/webhooks/shopify/no-such-shop", content=b"{}").status_code == 404
        assert client.get("/no/such/page").status_code == 404
        client.get("/healthz")
        page = client.get("/metrics").text
    after = samples(page, "tuike_http_requests_total")

    def grew(labels: str) -> float:
        return after.get(labels, 0) - before.get(labels, 0)

    assert grew('method="POST",route="/events",status="401"') == 1, page
    assert grew('method="POST",route="/webhooks/shopify/{shop_id}",status="404"') == 1, page  # the template
    assert grew('method="GET",route="unmatched",status="404"') == 1, page
    assert grew('method="GET",route="/healthz",status="200"') == 1, page
    assert not any("no-such-shop" in labels for labels in after)
    assert samples(page, "tuike_http_request_seconds_count").get('route="/events"', 0) >= 1
    assert 'tuike_ready{check="handoff"} 1.0' in page  # the scrape ran the readiness check
