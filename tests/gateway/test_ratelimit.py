"""Per-IP token buckets for unauthenticated requests (gateway/ratelimit.py, gateway.rate_limit):
a client past its burst is answered 429 with Retry-After, tokens come back at the configured rate,
memory is bounded, and signed webhooks are never limited."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.config import ConfigError, parse_config
from gateway.app import create_app
from gateway.handoff import EmbeddedHandoff
from gateway.links import Link, make_code
from gateway.ratelimit import TokenBuckets
from gateway.settings import RateLimit, gateway_settings
from gateway.signatures import hmac_sha256_b64
from sinks import open_ledger
from topologies.embedded import EmbeddedPipeline

WEBHOOKS = Path(__file__).resolve().parents[1] / "data" / "realdata" / "webhooks"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_the_burst_then_refills_at_the_rate():
    clock = Clock()
    buckets = TokenBuckets(RateLimit(per_second=2, burst=3, clients=10), clock)
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 1]  # the 4th waits: 0.5 s rounds up to 1
    assert buckets.take("b") == 0  # another client has its own bucket
    clock.now += 1.0  # two tokens back
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 1]
    assert buckets.refused == 2
    slow = TokenBuckets(RateLimit(per_second=0.1, burst=1, clients=10), clock)
    assert (slow.take("a"), slow.take("a")) == (0, 10)  # one token per 10 s: Retry-After 10
    clock.now -= 100  # a clock stepping back adds no tokens (and takes none away)
    assert slow.take("a") == 10


def test_memory_is_bounded_least_recently_used_first():
    clock = Clock()
    buckets = TokenBuckets(RateLimit(per_second=1, burst=1, clients=3), clock)
    for ip in ("a", "b", "c"):
        buckets.take(ip)
    assert buckets.take("a") == 1  # "a" used again: the most recent
    buckets.take("d")  # a fourth client: "b", the least recently used, is forgotten
    assert list(buckets.buckets) == ["c", "a", "d"]
    assert buckets.take("b") == 0  # forgotten: starts full again


def test_rate_limit_settings():
    assert gateway_settings({}).rate_limit == RateLimit(10.0, 100, 100_000)
    assert gateway_settings({"gateway": {"rate_limit": False}}).rate_limit is None
    assert gateway_settings({"gateway": {"rate_limit": {"per_second": 0.5, "burst": 5}}}).rate_limit == \
        RateLimit(0.5, 5, 100_000)
    with pytest.raises(ConfigError) as bad:
        gateway_settings({"gateway": {"rate_limit": {"per_second": 0, "burst": 1.5, "per_minute": 3}}})
    assert [str(p) for p in bad.value.problems] == [
        "gateway.rate_limit.per_minute: unknown key; known keys: per_second, burst, clients",
        "gateway.rate_limit.per_second: expected a number above 0, got 0",
        "gateway.rate_limit.burst: expected a whole number above 0, got 1.5"]


RAW = {"currency": "USD", "shops": {"s1": {"shopify_secret": "shh-shopify", "events_secret": "shh-events"}},
       "links": {"secret": "shh-links", "landing_url": "https://shop.example/"},
       "gateway": {"rate_limit": {"per_second": 1, "burst": 5}}}


@pytest.fixture
def edge(tmp_path):
    ledger = open_ledger(None, tmp_path)
    handoff = EmbeddedHandoff(EmbeddedPipeline(parse_config(RAW), tmp_path, ledger))
    clock = Clock(1_793_500_000.0)  # 2026-11-01
    with TestClient(create_app(gateway_settings(RAW), handoff, clock=clock), client=("198.51.100.7", 40000)) as client:
        yield client, clock, handoff, ledger
    ledger.close()


def test_clicks_past_the_burst_get_429_with_retry_after_and_are_not_recorded(edge):
    client, clock, handoff, ledger = edge
    code = make_code(Link("P1"), "shh-links")
    answers = [client.get(f"/r/{code}", follow_redirects=False) for _ in range(7)]
    assert [a.status_code for a in answers] == [302] * 5 + [429] * 2
    assert answers[-1].headers["retry-after"] == "1"
    assert answers[-1].json()["error"] == ("too many unauthenticated requests from 198.51.100.7: retry after 1 s "
                                          "(gateway.rate_limit)")
    clock.now += 1  # one token back
    assert client.get(f"/r/{code}", follow_redirects=False).status_code == 302
    assert client.get("/healthz").json()["refusals"]["rate_limited"] == 2
    assert handoff.wait_applied(60)
    assert ledger.query("SELECT count() FROM clicks").rows == [(6,)]


def test_bad_signatures_are_limited_and_signed_webhooks_are_not(edge):
    client, clock, handoff, ledger = edge
    body = b'{"type":"promoter.joined"}'
    bad = [client.post("/events", content=body, headers={"X-Tuike-Signature": "forged"}) for _ in range(8)]
    assert [b.status_code for b in bad] == [401] * 5 + [429] * 3
    # the same client, bucket empty, with valid signatures: every one is taken
    order = json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"]
    order["created_at"] = "2026-11-01T10:30:00+08:00"
    for i in range(10):
        signed = json.dumps({**order, "id": 1000 + i}).encode()
        r = client.post("/webhooks/shopify/s1", content=signed, headers={
            "X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": hmac_sha256_b64("shh-shopify", signed),
            "X-Shopify-Webhook-Id": f"w{i}"})
        assert r.status_code == 200, r.text
    joined = b'{"type":"promoter.joined","event_id":"j1","ts":"2026-11-01T10:00:00+08:00","promoter_id":"P1"}'
    r = client.post("/events", content=joined, headers={"X-Tuike-Signature": hmac_sha256_b64("shh-events", joined)})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    # an unknown shop is refused before any signature: limited too
    assert client.post("/webhooks/shopify/nope", content=signed).status_code == 429
    assert client.post("/webhooks/shopify/nope", content=signed).status_code == 429
    assert handoff.wait_applied(60)
    assert ledger.query("SELECT count() FROM dead_letters").rows == [(5,)]  # the five 401s; no 429 is a write
    assert ledger.query("SELECT count(DISTINCT order_id) FROM orders").rows == [(10,)]


def test_rate_limit_off(tmp_path):
    raw = {**RAW, "gateway": {"rate_limit": False}}
    ledger = open_ledger(None, tmp_path)
    handoff = EmbeddedHandoff(EmbeddedPipeline(parse_config(raw), tmp_path, ledger))
    code = make_code(Link("P1"), "shh-links")
    with TestClient(create_app(gateway_settings(raw), handoff, clock=Clock())) as client:
        assert {client.get(f"/r/{code}", follow_redirects=False).status_code for _ in range(150)} == {302}
    ledger.close()
