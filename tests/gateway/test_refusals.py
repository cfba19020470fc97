"""Anonymous refusals are sampled into dead_letters (gateway/refusals.py, gateway.refusal_samples):
a flood of bad signatures writes at most the sample, the rest is counted in /healthz and a log
line, and refusals of authenticated requests are all kept."""
from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from engine.config import parse_config
from gateway.app import create_app
from gateway.handoff import EmbeddedHandoff
from gateway.refusals import RefusalSampler
from gateway.settings import RefusalSamples, gateway_settings
from gateway.signatures import hmac_sha256_b64
from sinks import open_ledger
from topologies.embedded import EmbeddedPipeline


class Clock:
    def __init__(self, now: float = 1_793_500_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_first_n_per_kind_and_interval_are_kept(caplog):
    clock = Clock()
    sampler = RefusalSampler(RefusalSamples(per_reason=2, seconds=60), clock)
    assert [sampler.keep("gateway:events 401") for _ in range(5)] == [True, True, False, False, False]
    assert sampler.keep("gateway:events 404") is True  # another kind has its own sample
    clock.now += 59.9
    assert sampler.keep("gateway:events 401") is False
    clock.now += 0.1  # a new interval: the count of the last one is logged once
    with caplog.at_level(logging.WARNING, logger="tuike.gateway"):
        assert sampler.keep("gateway:events 401") is True
    assert caplog.messages == ["refusals gateway:events 401: 2 kept in dead_letters, 4 more answered and not kept "
                               "in the last 60 s (gateway.refusal_samples)"]
    assert (sampler.kept, sampler.dropped) == (4, 4)


RAW = {"currency": "USD", "shops": {"s1": {"shopify_secret": "shh-shopify", "events_secret": "shh-events"}},
       "gateway": {"rate_limit": False, "refusal_samples": {"per_reason": 20, "seconds": 60}}}


@pytest.fixture
def edge(tmp_path):
    ledger = open_ledger(None, tmp_path)
    handoff = EmbeddedHandoff(EmbeddedPipeline(parse_config(RAW), tmp_path, ledger))
    with TestClient(create_app(gateway_settings(RAW), handoff, clock=Clock())) as client:
        yield client, handoff, ledger
    ledger.close()


def test_a_flood_of_1000_bad_signatures_writes_at_most_the_sample(edge):
    client, handoff, ledger = edge
    before = handoff.inbox.next_seq
    body = b'{"type":"promoter.joined","event_id":"j1","ts":"2026-11-01T10:00:00+08:00","promoter_id":"P1"}'
    statuses = {client.post("/events", content=body, headers={"X-Tuike-Signature": f"forged-{i}"}).status_code
                for i in range(1000)}
    assert statuses == {401}  # every one is answered as before
    assert handoff.inbox.next_seq - before == 20  # durable writes: the sample only
    assert client.get("/healthz").json()["refusals"] == {"kept": 20, "dropped": 980, "rate_limited": 0}
    assert handoff.wait_applied(60)
    assert ledger.query("SELECT source, reason, count() FROM dead_letters GROUP BY source, reason").rows == [
        ("gateway:events", "X-Tuike-Signature does not match the body", 20)]


def test_refusals_of_authenticated_requests_are_all_kept(edge):
    client, handoff, ledger = edge
    bad_json = b'{"id": 1,'
    for i in range(30):  # Shopify's own, signed, unreadable: the shop must be able to find each one
        r = client.post("/webhooks/shopify/s1", content=bad_json, headers={
            "X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": hmac_sha256_b64("shh-shopify", bad_json),
            "X-Shopify-Webhook-Id": f"w{i}"})
        assert r.status_code == 400
    assert client.get("/healthz").json()["refusals"] == {"kept": 0, "dropped": 0, "rate_limited": 0}
    assert handoff.wait_applied(60)
    assert ledger.query("SELECT count() FROM dead_letters WHERE reason LIKE 'body is not JSON%'").rows == [(30,)]
