"""Fuzzing `tuike serve` (gateway/app.py): 1,200 generated requests — random bytes, real platform
payloads with a random part replaced or removed, right and wrong signatures, unknown shops and
topics — against the embedded pipeline and a chDB ledger. No answer may be a 5xx, and every
request that was refused (4xx) or only recorded (202) must have left a dead letter whose
position is the request id the answer named."""
from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import parse_config
from gateway.app import create_app
from gateway.handoff import EmbeddedHandoff
from gateway.settings import gateway_settings
from gateway.signatures import hmac_sha256_b64, youzan_sign
from sinks import open_ledger
from topologies.embedded import EmbeddedPipeline

WEBHOOKS = Path(__file__).resolve().parents[1] / "data" / "realdata" / "webhooks"
WECHAT = json.loads((WEBHOOKS / "wechatpay" / "wechatpay_go_notify_test_vector.json").read_text())["notify_test"]
EXAMPLES = 1200
RAW = {
    "currency": "USD",
    "shops": {"s1": {"shopify_secret": "k-shopify", "woocommerce_secret": "k-wc", "events_secret": "k-events",
                     "youzan_client_id": "cd0e03a4099eb5c933", "youzan_client_secret": "k-yz",
                     "wechatpay_apiv3_key": WECHAT["apiv3_key"], "wechatpay_platform_cert": WECHAT["platform_certificate_pem"]}},
    "links": {"secret": "k-links"},
    # limits above the run's 1,200 requests: every refusal must be kept (sampling has its own tests)
    "gateway": {"max_body_bytes": 16 * 1024, "rate_limit": {"per_second": 1000, "burst": 5000},
                "refusal_samples": {"per_reason": 5000}},
}
SEEDS = [
    ("/webhooks/shopify/s1", json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"]),
    ("/webhooks/shopify/s1", json.loads((WEBHOOKS / "shopify" / "python_api_refund.json").read_text())["refund"]),
    ("/webhooks/woocommerce/s1", json.loads((WEBHOOKS / "woocommerce" / "wc_docs_order_created_response.json").read_text())),
    ("/webhooks/woocommerce/s1", json.loads((WEBHOOKS / "woocommerce" / "wc_docs_order_refund_created_response.json").read_text())),
    ("/webhooks/youzan/s1", json.loads(json.loads((WEBHOOKS / "youzan" / "youzan_push_samples.json").read_text())["samples"][0]["raw_body"])),
    ("/events", {"type": "order.paid", "event_id": "e1", "ts": "2026-11-01T10:00:00+08:00", "order_id": "o1",
                 "customer_id": "c1", "currency": "USD", "items": [{"sku": "A", "category": "x", "price": "9.90", "qty": 1}]}),
    ("/links", {"promoter_id": "P1", "sku": "A"}),
]
TOPICS = ["orders/paid", "refunds/create", "orders/fulfilled", "orders/cancelled", "order.created", "order.updated",
          "products/create", ""]
json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


@st.composite
def mutated(draw, payload):
    """The payload with one value somewhere replaced by a random JSON value, or its key removed."""
    obj = json.loads(json.dumps(payload))
    node = obj
    for _ in range(draw(st.integers(0, 3))):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        children = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
        if not children:
            break
        node = draw(st.sampled_from(children))[1]
    if isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        if draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(json_values)
    return orjson.dumps(obj)


@st.composite
def requests(draw):
    kind = draw(st.sampled_from(["seed", "seed", "seed", "bytes", "link", "wechat"]))
    headers: dict[str, str] = {}
    if kind == "link":
        code = draw(st.text(alphabet="abcdefgXYZ0123456789.-_~", max_size=40))
        return "GET", "/r/c" + code, b"", headers
    if kind == "wechat":
        body = WECHAT["raw_body"].encode()
        if draw(st.booleans()):
            body = draw(mutated(json.loads(body)))
        return "POST", "/webhooks/wechatpay/s1", body, {k: v for k, v in WECHAT["headers"].items()}
    path, payload = draw(st.sampled_from(SEEDS))
    if draw(st.integers(0, 9)) == 0:
        path = path.replace("/s1", "/unknown-shop")
    body = draw(mutated(payload)) if kind == "seed" else draw(st.binary(max_size=400))
    if path.startswith("/webhooks/youzan") and draw(st.booleans()):
        try:  # sign the mutated push as 有赞 would, when it still has the fields
            push = orjson.loads(body)
            push["sign"] = youzan_sign(str(push.get("client_id")), str(push.get("msg")), "k-yz")
            body = orjson.dumps(push)
        except Exception:
            pass
    secret = {"shopify": "k-shopify", "woocommerce": "k-wc", "events": "k-events", "links": "k-links"}
    which = next((v for k, v in secret.items() if k in path), "")
    ascii_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=44)
    signature = hmac_sha256_b64(which, body) if draw(st.booleans()) else draw(ascii_text)
    headers.update({"X-Shopify-Hmac-Sha256": signature, "X-WC-Webhook-Signature": signature,
                    "X-Tuike-Signature": signature, "X-Shopify-Topic": draw(st.sampled_from(TOPICS)),
                    "X-WC-Webhook-Topic": draw(st.sampled_from(TOPICS)),
                    "X-Shopify-Webhook-Id": str(draw(st.integers(0, 50)))})
    if draw(st.integers(0, 19)) == 0:
        body = body + b" " * (16 * 1024)  # over the size limit
    return "POST", path, body, headers


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz")
    ledger = open_ledger(None, data)
    handoff = EmbeddedHandoff(EmbeddedPipeline(parse_config(RAW), data, ledger))
    app = create_app(gateway_settings(RAW), handoff, clock=lambda: float(WECHAT["now_unix"]))
    seen = {"answers": 0, "statuses": {}, "recorded": []}
    with TestClient(app) as client:
        yield client, seen
    # the app's shutdown applied the inbox (a 200 means appended, not yet in the ledger)
    positions = [r[0] for r in ledger.query("SELECT position FROM dead_letters").rows]
    ledger.close()
    # checked after the last flush: each refused or recorded request left its dead letter
    missing = [rid for rid in seen["recorded"] if not any(p == rid or p.startswith(rid + ":") for p in positions)]
    assert seen["answers"] >= EXAMPLES
    assert not missing, f"{len(missing)} refused requests left no dead letter, e.g. {missing[:3]}"
    print(f"fuzz: {seen['answers']} requests, statuses {dict(sorted(seen['statuses'].items()))}, "
          f"{len(seen['recorded'])} dead letters checked")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
@given(request=requests())
def test_no_generated_request_gets_a_5xx_and_every_refusal_is_kept(fuzz_client, request):
    client, seen = fuzz_client
    method, path, body, headers = request
    r = client.request(method, path, content=body or None, headers=headers, follow_redirects=False)
    seen["answers"] += 1
    seen["statuses"][r.status_code] = seen["statuses"].get(r.status_code, 0) + 1
    assert r.status_code < 500, (path, r.status_code, r.text[:300])
    if r.status_code >= 400 or r.status_code == 202:
        rid = r.json().get("request")
        assert rid, (path, r.status_code, r.text[:300])
        seen["recorded"].append(rid)
