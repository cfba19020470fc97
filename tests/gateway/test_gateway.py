"""`tuike serve` (gateway/app.py) in embedded mode, through FastAPI's test client: real payloads,
real signatures, the real engine and a real chDB ledger (contract §6).

The end-to-end test follows a customer: promoters join, a link is created and clicked (302,
cookie), the customer binds, a signed Shopify orders/paid arrives carrying the link, and the
ledger pays the link's promoter chain the configured rates."""
from __future__ import annotations

import base64
import copy
import json
import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from engine.config import parse_config
from gateway.app import create_app
from gateway.handoff import EmbeddedHandoff
from gateway.settings import gateway_settings
from gateway.signatures import hmac_sha256_b64
from sinks import open_ledger
from topologies.embedded import EmbeddedPipeline

WEBHOOKS = Path(__file__).resolve().parents[1] / "data" / "realdata" / "webhooks"
NOW = datetime.fromisoformat("2026-11-01T10:00:00+08:00").timestamp()
RAW = {
    "currency": "USD",
    "commission": {"levels": ["0.10", "0.05", "0.02"]},
    "shops": {"s1": {"shopify_secret": "shh-shopify", "woocommerce_secret": "wc&amp;secret", "events_secret": "shh-events",
                     "youzan_client_id": "cd0e03a4099eb5c933", "youzan_client_secret": "yz-secret"}},
    "links": {"secret": "shh-links", "base_url": "https://t.example", "landing_url": "https://shop.example/sale"},
    "gateway": {"max_body_bytes": 64 * 1024},
}


class Gateway:
    def __init__(self, client: TestClient, ledger, handoff: EmbeddedHandoff | None = None):
        self.client = client
        self.ledger = ledger
        self.handoff = handoff

    def events(self, *events: dict, secret: str = "shh-events"):
        body = "\n".join(json.dumps(e) for e in events).encode()
        return self.client.post("/events", content=body, headers={"X-Tuike-Signature": hmac_sha256_b64(secret, body)})

    def shopify(self, topic: str, payload: dict, *, secret: str = "shh-shopify", webhook_id: str = "w1", body=None,
                signed: bytes | None = None):
        """Post ``payload`` (or ``body``) signed over ``signed`` (default: what is sent)."""
        body = body if body is not None else json.dumps(payload).encode()
        return self.client.post("/webhooks/shopify/s1", content=body, headers={
            "X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": hmac_sha256_b64(secret, body if signed is None else signed),
            "X-Shopify-Webhook-Id": webhook_id, "Content-Type": "application/json"})

    def rows(self, sql: str) -> list[tuple]:
        """The ledger once every acknowledged request is applied (answers come after the inbox's fsync)."""
        if self.handoff is not None:
            assert self.handoff.wait_applied(60), "the inbox was not applied within 60 s"
        return self.ledger.query(sql).rows

    def dead(self) -> list[tuple]:
        return self.rows("SELECT source, reason FROM dead_letters ORDER BY source, reason")


@pytest.fixture
def gw(tmp_path):
    ledger = open_ledger(None, tmp_path)
    handoff = EmbeddedHandoff(EmbeddedPipeline(parse_config(RAW), tmp_path, ledger))
    app = create_app(gateway_settings(RAW), handoff, clock=lambda: NOW)
    with TestClient(app) as client:
        yield Gateway(client, ledger, handoff)
    ledger.close()


def joined(pid: str, parent: str | None, ts: str = "2026-10-01T09:00:00+08:00") -> dict:
    return {"type": "promoter.joined", "event_id": f"j-{pid}", "ts": ts, "promoter_id": pid, "parent_id": parent}


def test_link_click_bind_and_a_signed_shopify_order_pay_the_links_chain(gw):
    assert gw.events(joined("P1", None), joined("P2", "P1"), joined("P3", "P2")).status_code == 200
    body = json.dumps({"promoter_id": "P3", "sku": "IPOD2008GREEN"}).encode()
    made = gw.client.post("/links", content=body, headers={"X-Tuike-Signature": hmac_sha256_b64("shh-links", body)})
    assert made.status_code == 200, made.text
    link = made.json()
    assert link["url"] == f"https://t.example/r/{link['code']}"
    assert base64.b64decode(link["qr_png_base64"]).startswith(b"\x89PNG")
    assert gw.client.get(f"/links/{link['code']}/qr.png").headers["content-type"] == "image/png"

    clicked = gw.client.get(f"/r/{link['code']}", follow_redirects=False,
                            headers={"User-Agent": "Mozilla/5.0 (iPhone)", "Accept-Language": "zh-CN"})
    assert clicked.status_code == 302
    location = urlsplit(clicked.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/sale")
    ref = parse_qs(location.query)["tk"][0]
    code, _, click_id = ref.partition("~")
    assert code == link["code"] and click_id.startswith("c")
    assert "tk_vid=" in clicked.headers["set-cookie"]

    customer = "shopify:s1:customer:207119551"
    bound = {"type": "customer.bound", "event_id": "b-1", "ts": "2026-11-01T10:05:00+08:00",
             "customer_id": customer, "promoter_id": "P3", "via": "link", "click_id": click_id}
    assert gw.events(bound).status_code == 200

    order = copy.deepcopy(json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"])
    order.update(created_at="2026-11-01T10:30:00+08:00", landing_site=f"/sale?{location.query}", discount_codes=[])
    paid = gw.shopify("orders/paid", order)
    assert paid.status_code == 200, paid.text
    assert paid.json()["events"] == 1

    rows = gw.rows("SELECT beneficiary_id, level, kind, sum(amount) FROM commission_ledger "
                   "WHERE order_id = 'shopify:s1:450789469' GROUP BY beneficiary_id, level, kind ORDER BY level")
    # three lines of 199.00: level 1 (P3) 10 % = 19.90 each, level 2 (P2) 5 % = 9.95, level 3 (P1) 2 % = 3.98
    assert rows == [("P3", 1, "accrue", Decimal("59.70")), ("P2", 2, "accrue", Decimal("29.85")),
                    ("P1", 3, "accrue", Decimal("11.94"))]
    clicks = gw.rows("SELECT click_id, promoter_id, sku FROM clicks")
    assert clicks == [(click_id, "P3", "IPOD2008GREEN")]

    assert gw.rows("SELECT count() FROM commission_ledger")[0][0] == 9  # 3 lines × 3 levels
    again = gw.shopify("orders/paid", order)  # Shopify redelivers the same webhook id
    assert again.json().get("duplicate") is True
    assert gw.shopify("orders/paid", order, webhook_id="w2").status_code == 200  # a new id: the engine dedups
    assert gw.rows("SELECT count() FROM commission_ledger")[0][0] == 9


def test_refusals_are_answered_and_kept_in_dead_letters(gw):
    order = json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"]
    body = json.dumps(order).encode()
    assert gw.shopify("orders/paid", order, secret="wrong").status_code == 401
    changed = body.replace(b'"199.00"', b'"199.01"', 1)  # one byte changed after signing
    assert gw.shopify("orders/paid", order, body=changed, signed=body).status_code == 401
    assert gw.client.post("/webhooks/shopify/nope", content=body).status_code == 404
    bad_json = b'{"id": 1,'
    assert gw.shopify("orders/paid", {}, body=bad_json).status_code == 400
    unmapped = gw.shopify("customers/create", {"id": 5}, webhook_id="w9")
    assert unmapped.status_code == 202 and "not mapped" in unmapped.json()["recorded"]
    no_lines = gw.shopify("orders/paid", {**order, "line_items": []}, webhook_id="w10")
    assert no_lines.status_code == 422 and "line_items" in no_lines.json()["error"]
    big = b"x" * (64 * 1024 + 1)
    assert gw.client.post("/webhooks/shopify/s1", content=big).status_code == 413
    assert gw.client.get("/r/not-a-code", follow_redirects=False).status_code == 404
    mixed = gw.events(joined("P9", None), {"type": "order.paid", "event_id": "x", "ts": "2026-11-01T10:00:00+08:00"})
    assert mixed.status_code == 422 and mixed.json()["accepted"] == 1 and "line 2" in mixed.json()["problems"][0]
    reasons = [r for _, r in gw.dead()]
    assert len(reasons) == 9, reasons
    for expected in ("X-Shopify-Hmac-Sha256 does not match the body", "unknown shop 'nope'", "body is not JSON",
                     "not mapped: topic 'customers/create'", "payload: line_items", "over the limit",
                     "unknown or altered promotion link code", "order.paid: "):
        assert any(expected in r for r in reasons), (expected, reasons)
    assert not any("shh-" in r for r in reasons)  # no secret in any reason


def test_woocommerce_and_youzan_webhooks_end_in_the_ledger(gw):
    order = json.loads((WEBHOOKS / "woocommerce" / "wc_docs_order_created_response.json").read_text())
    order["currency"], order["date_paid_gmt"] = "USD", "2026-11-01T02:00:00"
    body = json.dumps(order).encode()
    signed = hmac_sha256_b64("wc&secret", body)  # WooCommerce signs with the HTML-decoded secret
    r = gw.client.post("/webhooks/woocommerce/s1", content=body,
                       headers={"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Signature": signed})
    assert r.status_code == 200, r.text
    assert gw.rows("SELECT order_id, count() FROM orders GROUP BY order_id") == [("woocommerce:s1:727", 1)]
    sample = json.loads((WEBHOOKS / "youzan" / "youzan_push_samples.json").read_text())["samples"][0]
    push = json.loads(sample["raw_body"])
    from gateway.signatures import youzan_sign
    push["sign"] = youzan_sign(push["client_id"], push["msg"], "yz-secret")
    r = gw.client.post("/webhooks/youzan/s1", content=json.dumps(push).encode())
    assert r.status_code == 200 and r.json()["code"] == 0 and r.json()["events"] == 0  # WAIT_BUYER_PAY: nothing yet
    push["sign"] = "0" * 32
    assert gw.client.post("/webhooks/youzan/s1", content=json.dumps(push).encode()).status_code == 401


def test_the_openapi_description_lists_every_route(gw):
    spec = gw.client.get("/openapi.json").json()
    assert {"/webhooks/shopify/{shop_id}", "/webhooks/woocommerce/{shop_id}", "/webhooks/youzan/{shop_id}",
            "/webhooks/wechatpay/{shop_id}", "/events", "/r/{code}", "/links", "/healthz"} <= set(spec["paths"])
    assert gw.client.get("/healthz").json() == {"status": "ok", "mode": "embedded", "process": os.getpid(), "backlog": 0,
                                                "refusals": {"kept": 0, "dropped": 0, "rate_limited": 0}}


def test_gateway_settings_resolve_env_and_name_every_problem(monkeypatch, tmp_path):
    from engine.config import ConfigError
    from tuike.configfile import ConfigFileError, load_config

    monkeypatch.setenv("TK_SHOPIFY", "from-env")
    s = gateway_settings({"shops": {"s1": {"shopify_secret": "env:TK_SHOPIFY"}}})
    assert s.shops["s1"].shopify_secret == "from-env" and "from-env" not in repr(s)
    with pytest.raises(ConfigError) as bad:
        gateway_settings({"shops": {"s1": {"shopify_secret": "env:TK_MISSING", "nope": "x"}},
                          "links": {"landing_url": "shop.example"}, "gateway": {"max_body_bytes": 10}})
    assert [p.path for p in bad.value.problems] == ["shops.s1.shopify_secret", "shops.s1.nope", "links.landing_url",
                                                    "gateway.max_body_bytes"]
    path = tmp_path / "tuike.yaml"
    path.write_text("currency: USD\nshops:\n  s1:\n    shopify_secret: env:TK_MISSING\nlinks:\n  base_url: ftp://x\n")
    with pytest.raises(ConfigFileError) as file_bad:  # every command checks the shape; env is read where used
        load_config(path)
    assert file_bad.value.message_lines == [f"{path}:6: links.base_url: expected an http(s) URL, got 'ftp://x'"]


@pytest.mark.kafka
def test_in_streaming_mode_webhooks_become_keyed_records_on_the_input_topics(kafka_broker, kafka_settings):
    from gateway.handoff import KafkaHandoff
    from tests.topologies.test_produce import read_topics
    from topologies.admin import ensure_topics_sync, input_topic_specs

    ensure_topics_sync(kafka_broker, input_topic_specs(kafka_settings))
    app = create_app(gateway_settings(RAW), KafkaHandoff(kafka_broker, kafka_settings), clock=lambda: NOW)
    order = json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"]
    with TestClient(app) as client:
        gw = Gateway(client, None)
        assert client.get("/healthz").json()["mode"] == "kafka"
        assert gw.shopify("orders/paid", order).status_code == 200  # answered once Kafka acked (acks=all)
        assert gw.shopify("orders/paid", order, secret="wrong", webhook_id="w2").status_code == 401
    records = read_topics(kafka_broker, [kafka_settings.topic("orders"), kafka_settings.deadletter])
    orders = [(key, json.loads(value)) for topic, _, _, key, value in records if topic == kafka_settings.topic("orders")]
    assert [(key, e["type"], e["event_id"]) for key, e in orders] == [
        (b"shopify:s1:450789469", "order.paid", "shopify:s1:450789469:paid")]
    dead = [json.loads(value) for topic, _, _, _, value in records if topic == kafka_settings.deadletter]
    assert [d["reason"] for d in dead] == ["X-Shopify-Hmac-Sha256 does not match the body"]


@pytest.mark.kafka
def test_several_serving_processes_share_the_port_and_every_webhook_reaches_the_topic(kafka_broker, kafka_settings,
                                                                                      tmp_path):
    """`tuike serve --to kafka --processes 2`: two processes answer on one port (each with its own
    producer), and every acknowledged webhook is one keyed record on the orders topic."""
    import signal
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    import yaml

    from tests.support.streaming import start_serve
    from tests.topologies.test_produce import read_topics
    from topologies.admin import ensure_topics_sync, input_topic_specs

    ensure_topics_sync(kafka_broker, input_topic_specs(kafka_settings))
    raw = {**RAW, "kafka": {"topic_prefix": kafka_settings.topic_prefix, "partitions": kafka_settings.partitions}}
    (tmp_path / "tuike.yaml").write_text(yaml.safe_dump(raw))
    proc, url = start_serve(["--config", str(tmp_path / "tuike.yaml"), "--data-dir", str(tmp_path / "data")], tmp_path,
                            serve_args=["--to", "kafka", "--broker", kafka_broker, "--processes", "2"])
    order = json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"]

    def post(i: int) -> int:
        body = json.dumps({**order, "id": 700_000 + i}).encode()
        with httpx.Client() as client:  # a connection each: the kernel spreads them over the processes
            return client.post(f"{url}/webhooks/shopify/s1", content=body, timeout=30, headers={
                "X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": hmac_sha256_b64("shh-shopify", body),
                "X-Shopify-Webhook-Id": f"w{i}"}).status_code

    try:
        children = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True,
                                  text=True).stdout.split()  # the serving processes, not multiprocessing's tracker
        assert len(children) == 2, f"tuike serve --processes 2 runs {len(children)} serving processes"
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(post, range(40))) == [200] * 40
        answered = set()
        for _ in range(200):  # a connection each: both processes answer sooner or later
            answered.add(httpx.get(f"{url}/healthz", timeout=10).json()["process"])
            if len(answered) == 2:
                break
        assert answered == {int(c) for c in children}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    records = read_topics(kafka_broker, [kafka_settings.topic("orders")])
    assert sorted(key for *_, key, _ in records) == sorted(f"shopify:s1:{700_000 + i}".encode() for i in range(40))


def test_several_serving_processes_need_kafka(tmp_path):
    from tests.support.streaming import ok, tuike

    p = ok(tuike("--data-dir", str(tmp_path), "serve", "--processes", "2", cwd=tmp_path), 2)
    assert "--processes 2 needs --to kafka" in p.stderr


def test_a_killed_server_loses_no_acknowledged_webhook_and_a_resend_counts_once(tmp_path):
    """SIGKILL `tuike serve` while webhooks are in flight: every order it acknowledged is in the
    ledger; the platform's resend of all of them after a restart adds each order's rows once."""
    import signal
    import subprocess
    import threading
    import time

    import httpx
    import yaml

    from gateway.links import Link, make_code, reference
    from tests.support.streaming import ok, start_serve, tuike

    (tmp_path / "tuike.yaml").write_text(yaml.safe_dump(RAW))
    args = ["--config", str(tmp_path / "tuike.yaml"), "--data-dir", str(tmp_path / "data")]
    order = json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"]
    code = make_code(Link("P3"), "shh-links")

    def webhook(i: int) -> tuple[bytes, dict]:
        body = json.dumps({**order, "id": 900_000 + i, "created_at": "2026-11-01T10:30:00+08:00",
                           "landing_site": f"/?tk={reference(code, f'c{i}')}"}).encode()
        return body, {"X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": hmac_sha256_b64("shh-shopify", body),
                      "X-Shopify-Webhook-Id": f"w{i}"}

    def serve() -> tuple[subprocess.Popen, str]:
        return start_serve(args, tmp_path)

    proc, url = serve()
    body = "\n".join(json.dumps(joined(p, parent)) for p, parent in (("P1", None), ("P2", "P1"), ("P3", "P2"))).encode()
    assert httpx.post(f"{url}/events", content=body,
                      headers={"X-Tuike-Signature": hmac_sha256_b64("shh-events", body)}).status_code == 200
    acked: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(2000):
                data, headers = webhook(i)
                try:
                    if client.post("/webhooks/shopify/s1", content=data, headers=headers).status_code == 200:
                        acked.append(i)
                except httpx.HTTPError:
                    return

    sender = threading.Thread(target=send)
    sender.start()
    while len(acked) < 30:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sender.join()
    assert 30 <= len(acked) < 2000, len(acked)

    def ledger_orders() -> dict[str, int]:
        p = ok(tuike(*args, "query", "SELECT order_id, count() FROM commission_ledger GROUP BY order_id",
                     "--format", "csv", cwd=tmp_path))
        return {row.split(",")[0].strip('"'): int(row.split(",")[1]) for row in p.stdout.strip().splitlines()[1:]}

    # an acknowledged request is in the inbox (fsynced), not yet necessarily in the ledger: the
    # next start replays the inbox from the position the state holds, before it listens
    proc, url = serve()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    paid = ledger_orders()
    missing = [i for i in acked if f"shopify:s1:{900_000 + i}" not in paid]
    assert not missing, f"{len(missing)} acknowledged orders lost by the SIGKILL, e.g. {missing[:5]}"
    assert set(paid.values()) <= {9}  # the replay counted each once
    proc, url = serve()  # the platform retries everything it was not sure of: here, all of them
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(len(acked) + 5):
                data, headers = webhook(i)
                assert client.post("/webhooks/shopify/s1", content=data, headers=headers).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    after = ledger_orders()  # the sender waits for each answer: at most one order was in flight at the kill
    assert set(after) == {f"shopify:s1:{900_000 + i}" for i in range(len(acked) + 5)}
    assert set(after.values()) == {9}  # 3 lines × 3 levels, each once


def test_tuike_link_create_prints_a_verifiable_code_and_writes_the_qr(tmp_path):
    import yaml

    from gateway.links import Link, verify
    from tests.support.streaming import ok, tuike

    config = tmp_path / "tuike.yaml"
    config.write_text("currency: USD\n")
    p = ok(tuike("--config", str(config), "link", "create", "--promoter", "P7", cwd=tmp_path), 2)
    assert "links.secret is not configured" in p.stderr
    config.write_text(yaml.safe_dump({"links": {"secret": "env:TK_LINK_SECRET", "base_url": "https://t.example"}}))
    p = ok(tuike("--config", str(config), "link", "create", "--promoter", "P7", "--sku", "SKU-1", "--qr", "p7.png",
                 cwd=tmp_path), 2)  # env:TK_LINK_SECRET is not set in the test's environment
    assert "TK_LINK_SECRET is not set" in p.stderr
    config.write_text(yaml.safe_dump({"links": {"secret": "s3", "base_url": "https://t.example"}}))
    p = ok(tuike("--config", str(config), "link", "create", "--promoter", "P7", "--sku", "SKU-1", "--qr", "p7.png",
                 cwd=tmp_path))
    fields = dict(line.split(None, 1) for line in p.stdout.strip().splitlines())
    assert verify(fields["code"], "s3") == Link("P7", "SKU-1", None)
    assert fields["url"] == f"https://t.example/r/{fields['code']}" and fields["url"] in fields["share"]
    assert (tmp_path / "p7.png").read_bytes().startswith(b"\x89PNG")


def test_the_wechatpay_vector_passes_the_gateway_and_a_changed_byte_does_not(tmp_path):
    vector = json.loads((WEBHOOKS / "wechatpay" / "wechatpay_go_notify_test_vector.json").read_text())["notify_test"]
    raw = {**RAW, "shops": {"m1": {"wechatpay_apiv3_key": vector["apiv3_key"],
                                   "wechatpay_platform_cert": vector["platform_certificate_pem"]}}}
    ledger = open_ledger(None, tmp_path)
    app = create_app(gateway_settings(raw), EmbeddedHandoff(EmbeddedPipeline(parse_config(raw), tmp_path, ledger)),
                     clock=lambda: float(vector["now_unix"]))
    body = vector["raw_body"].encode()
    with TestClient(app) as client:
        r = client.post("/webhooks/wechatpay/m1", content=body, headers=vector["headers"])
        # verified, decrypted; PAYSCORE is not ours: recorded, and 200 (WeChat Pay retries anything else)
        assert r.status_code == 200 and r.json()["code"] == "SUCCESS" and "not mapped" in r.json()["recorded"]
        changed = body.replace(b"PAYSCORE", b"PAYSCORF")
        assert client.post("/webhooks/wechatpay/m1", content=changed, headers=vector["headers"]).status_code == 401
    reasons = [r for (r,) in ledger.query("SELECT reason FROM dead_letters ORDER BY reason").rows]
    ledger.close()
    assert reasons == ["Wechatpay-Signature does not match the body", "not mapped: event_type 'PAYSCORE.USER_OPEN_SERVICE'"]


def test_the_device_fingerprint_is_stable_per_browser_and_network():
    from gateway.fingerprint import fingerprint, ip_prefix

    chrome = {"User-Agent": "Mozilla/5.0 Chrome/131", "Accept-Language": "zh-CN,zh;q=0.9", "Sec-CH-UA-Mobile": "?0"}
    same = fingerprint(chrome, "203.0.113.7")
    assert same == fingerprint({k.lower(): v for k, v in reversed(chrome.items())}, "203.0.113.200")  # case, order, host
    assert same != fingerprint(chrome, "203.0.114.7")  # another /24
    assert same != fingerprint({**chrome, "User-Agent": "Mozilla/5.0 Safari/18"}, "203.0.113.7")
    assert same.startswith("fp-") and len(same) == 23
    assert ip_prefix("2001:db8:1:2::5") == "2001:db8:1::/48" and ip_prefix("bogus") == ""


# --- regressions from the adversarial review of the gateway -------------------------------


def test_a_failed_flush_is_retried_from_the_inbox_and_a_resend_counts_once(gw, monkeypatch):
    """The answer comes after the inbox's fsync: a ledger that fails once delays the rows (the
    consumer discards the batch's state and retries it), loses nothing and counts them once."""
    gw.events(joined("P1", None))
    gw.rows("SELECT 1")  # applied
    order = copy.deepcopy(json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"])
    order.update(created_at="2026-11-01T10:30:00+08:00", landing_site=None, discount_codes=[],
                 note_attributes=[{"name": "tk", "value": "P1-not-a-code"}])
    from sinks import LedgerError
    real = gw.ledger.write
    calls = []

    def failing_once(batch):
        calls.append(1)
        if len(calls) == 1:
            raise LedgerError("the ledger is down")
        return real(batch)
    monkeypatch.setattr(gw.ledger, "write", failing_once)
    assert gw.shopify("orders/paid", order).status_code == 200  # durable in the inbox
    assert gw.shopify("orders/paid", order, webhook_id="w-retry").status_code == 200
    assert gw.rows("SELECT count() FROM orders WHERE order_id = 'shopify:s1:450789469'") == [(1,)]
    assert len(calls) >= 2


def test_a_shop_cannot_send_events_for_another_shops_ids(gw):
    cancel = {"type": "order.cancelled", "event_id": "x1", "ts": "2026-11-02T10:00:00+08:00",
              "order_id": "shopify:other-shop:450789469"}
    r = gw.events(cancel)
    assert r.status_code == 422 and "belongs to shop 'other-shop'" in r.json()["problems"][0]


def test_a_shop_cannot_send_what_only_a_settlement_writes(gw):
    settled = {"type": "order.settled", "event_id": "x2", "ts": "2026-11-30T23:59:59.999+08:00", "order_id": "o1",
               "period": "2026-11", "lines": [{"sku": "s1", "beneficiary_id": "P1", "level": 1}]}
    r = gw.events(settled)
    assert r.status_code == 422 and "order.settled is written by tuike settle" in r.json()["problems"][0]
    assert ("gateway:events", "type: order.settled is written by tuike settle, never sent by a shop") in gw.dead()


def test_pretty_printed_single_event_and_odd_inputs_are_handled(gw):
    body = json.dumps(joined("P5", None), indent=2).encode()
    assert gw.client.post("/events", content=body,
                          headers={"X-Tuike-Signature": hmac_sha256_b64("shh-events", body)}).status_code == 200
    order = json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"]
    huge = {**order, "line_items": [{**order["line_items"][0], "price": "1e60"}]}
    r = gw.shopify("orders/paid", huge, webhook_id="w-huge")
    assert r.status_code == 422 and "is not an amount" in r.json()["error"]
    ping = gw.client.post("/webhooks/woocommerce/s1", content=b"webhook_id=42",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert ping.status_code == 200 and ping.json()["ping"] is True


def test_a_click_keeps_working_with_junk_cookie_parent_or_click_id(gw):
    from gateway.links import CLICK_ID, Link, make_code, resolver

    code = make_code(Link("P3"), "shh-links")
    r = gw.client.get(f"/r/{code}?from={'x' * 300}", cookies={"tk_vid": "y" * 300}, follow_redirects=False)
    assert r.status_code == 302 and CLICK_ID.match(parse_qs(urlsplit(r.headers["location"]).query)["tk"][0].split("~")[1])
    assert gw.rows("SELECT count() FROM clicks") == [(1,)] and gw.dead() == []
    resolve = resolver("shh-links")
    assert resolve(f"{code}~{'z' * 300}").click_id is None and resolve(f"{code}~{'z' * 300}").promoter_id == "P3"
