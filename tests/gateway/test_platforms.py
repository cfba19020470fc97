"""Platform payloads → canonical events (gateway/shopify.py, woocommerce.py, youzan.py,
wechatpay.py), on the real payloads of ../shared/realdata/webhooks (copied to tests/data/realdata). Every event produced must
pass the contract's validation (schemas/events.py)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from gateway import shopify, wechatpay, woocommerce, youzan
from gateway.canonical import Attribution, PayloadError, ref_in_url
from gateway.signatures import decrypt_wechatpay_resource
from schemas.events import validate_event

WEBHOOKS = Path(__file__).resolve().parents[1] / "data" / "realdata" / "webhooks"
KNOWN = {"TENOFF": Attribution("P-coupon"), "LINK1": Attribution("P000042", "c-77"), "SPRING": Attribution("P-wc")}


def resolve(ref: str) -> Attribution | None:
    return KNOWN.get(ref)


def load(path: str) -> dict | list:
    return json.loads((WEBHOOKS / path).read_text())


def valid(events: list[dict]) -> list[dict]:
    for e in events:
        validate_event(e)  # raises on anything the contract refuses
    return events


def test_shopify_orders_paid_becomes_order_paid():
    order = load("shopify/python_api_order.json")["order"]  # a webhook body is the unwrapped object
    [paid] = valid(shopify.events("orders/paid", order, "s1", resolve))
    assert paid["type"] == "order.paid" and paid["event_id"] == "shopify:s1:450789469:paid"
    assert paid["order_id"] == "shopify:s1:450789469" and paid["customer_id"] == "shopify:s1:customer:207119551"
    assert paid["ts"] == "2008-01-10T11:00:00-05:00" and paid["currency"] == "USD" and paid["ip"] == "0.0.0.0"
    assert paid["items"] == [{"sku": s, "category": "uncategorized", "price": "199.00", "qty": 1}
                             for s in ("IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK")]
    assert paid["promoter_id"] == "P-coupon"  # landing_site has ?source=abc, not ours; the TENOFF code is


def test_shopify_attribution_prefers_the_landing_link_and_discounts_lines():
    order = copy.deepcopy(load("shopify/python_api_order.json")["order"])
    order["landing_site"] = "/products/ipod?utm_source=wx&tk=LINK1"
    order["line_items"][0].update(quantity=3, total_discount="30.00")
    [paid] = valid(shopify.events("orders/paid", order, "s1", resolve))
    assert (paid["promoter_id"], paid["click_id"]) == ("P000042", "c-77")
    assert paid["items"][0] == {"sku": "IPOD2008GREEN", "category": "uncategorized", "price": "189.00", "qty": 3}
    order["landing_site"], order["discount_codes"], order["customer"] = None, [], None
    [guest] = valid(shopify.events("orders/paid", order, "s1", resolve))
    assert "promoter_id" not in guest and guest["customer_id"] == "shopify:s1:guest:450789469"


def test_shopify_refund_fulfilled_cancelled_and_unmapped_topics():
    refund = load("shopify/python_api_refund.json")["refund"]
    [r] = valid(shopify.events("refunds/create", refund, "s1", resolve))
    assert r["order_id"] == "shopify:s1:450789469" and r["refund_id"] == "509562969"
    assert r["items"] == [{"sku": "IPOD2008BLACK", "amount": "199.00"}, {"sku": "IPOD2008GREEN", "amount": "199.00"}]
    no_lines = {**refund, "refund_line_items": []}
    assert valid(shopify.events("refunds/create", no_lines, "s1", resolve))[0]["amount"] == "209.00"
    order = load("shopify/python_api_order.json")["order"]
    [done] = valid(shopify.events("orders/fulfilled", order, "s1", resolve))
    assert done == {"type": "order.completed", "event_id": "shopify:s1:450789469:completed",
                    "ts": "2008-01-10T11:00:00-05:00", "order_id": "shopify:s1:450789469"}
    [gone] = valid(shopify.events("orders/cancelled", {**order, "cancelled_at": "2008-01-11T09:00:00-05:00",
                                                       "cancel_reason": "customer"}, "s1", resolve))
    assert gone["type"] == "order.cancelled" and gone["reason"] == "customer"
    assert shopify.events("orders/create", order, "s1", resolve) is None
    with pytest.raises(PayloadError, match=r"line_items\[0\].price"):
        shopify.events("orders/paid", {**order, "line_items": [{**order["line_items"][0], "price": "abc"}]}, "s1", resolve)


def test_woocommerce_order_created_becomes_order_paid():
    order = load("woocommerce/wc_docs_order_created_response.json")
    [paid] = valid(woocommerce.events("order.created", order, "w1", resolve))
    assert paid["order_id"] == "woocommerce:w1:727" and paid["ts"] == "2017-03-22T19:28:08+00:00"
    assert paid["items"] == [{"sku": "product-93", "category": "uncategorized", "price": "3.00", "qty": 2},
                             {"sku": "Bar3", "category": "uncategorized", "price": "12.00", "qty": 1}]
    assert paid["customer_id"].startswith("woocommerce:w1:guest:") and "promoter_id" not in paid
    with_ref = {**order, "meta_data": order["meta_data"] + [{"id": 1, "key": "_tk", "value": "LINK1"}]}
    assert valid(woocommerce.events("order.updated", with_ref, "w1", resolve))[0]["promoter_id"] == "P000042"


def test_woocommerce_a_completed_order_with_refunds_gives_every_fact_once():
    completed = [o for o in load("woocommerce/wc_docs_orders_list_response.json") if o["id"] == 723][0]
    events = valid(woocommerce.events("order.updated", completed, "w1", resolve))
    assert [e["type"] for e in events] == ["order.paid", "order.completed", "order.refunded", "order.refunded"]
    assert events[0]["customer_id"] == "woocommerce:w1:customer:26"
    assert [(e["refund_id"], e["amount"]) for e in events[2:]] == [("726", "10.00"), ("724", "9.00")]
    again = valid(woocommerce.events("order.updated", completed, "w1", resolve))
    assert [e["event_id"] for e in again] == [e["event_id"] for e in events]  # the same facts, the same ids
    refund = load("woocommerce/wc_docs_order_refund_created_response.json")
    [r] = valid(woocommerce.events("refund.created", refund, "w1", resolve))
    assert r["event_id"] == events[2]["event_id"] and r["amount"] == "10.00" and r["order_id"] == "woocommerce:w1:723"
    pending = {**completed, "status": "pending", "date_completed_gmt": None, "refunds": []}
    assert woocommerce.events("order.updated", pending, "w1", resolve) == []
    assert woocommerce.events("product.created", completed, "w1", resolve) is None


def test_youzan_pushes_map_by_status():
    samples = load("youzan/youzan_push_samples.json")["samples"]
    pushes = [json.loads(s["raw_body"]) if "raw_body" in s else s["parsed"] for s in samples]
    by_status = {youzan.decode_msg(p)["status"]: p for p in pushes}
    assert youzan.events(by_status["WAIT_BUYER_PAY"], "y1", resolve) == []
    [done] = valid(youzan.events(by_status["TRADE_SUCCESS"], "y1", resolve))
    assert done["type"] == "order.completed" and done["ts"] == "2018-01-28T15:48:15+08:00"
    [closed] = valid(youzan.events(by_status["TRADE_CLOSED"], "y1", resolve))
    assert closed["type"] == "order.cancelled" and closed["order_id"] == "youzan:y1:E20170807181905034500002"
    msg = youzan.decode_msg(by_status["TRADE_CLOSED"])
    paid_push = {**by_status["TRADE_CLOSED"], "msg": quote(json.dumps({**msg, "status": "WAIT_SELLER_SEND_GOODS",
                                                                        "tk": "LINK1"}))}
    [paid] = valid(youzan.events(paid_push, "y1", resolve))
    assert paid["items"] == [{"sku": "youzan-trade", "category": "uncategorized", "price": "11.00", "qty": 1}]
    assert (paid["currency"], paid["promoter_id"]) == ("CNY", "P000042")


def test_wechatpay_resources_map_by_event_type():
    vector = load("wechatpay/wechatpay_go_notify_test_vector.json")["notify_test"]
    body = json.loads(vector["raw_body"])
    plain = json.loads(decrypt_wechatpay_resource(body["resource"], vector["apiv3_key"]))
    assert wechatpay.events(body["event_type"], plain, "m1", resolve) is None  # PAYSCORE.USER_OPEN_SERVICE: not ours
    transaction = {"mchid": "1230000109", "out_trade_no": "T20261111", "transaction_id": "4200000",
                   "trade_state": "SUCCESS", "success_time": "2026-11-11T10:00:00+08:00", "attach": "tk=LINK1",
                   "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, "amount": {"total": 19900, "currency": "CNY"}}
    [paid] = valid(wechatpay.events("TRANSACTION.SUCCESS", transaction, "m1", resolve))
    assert paid["items"][0]["price"] == "199.00" and paid["promoter_id"] == "P000042"
    refund = {"out_trade_no": "T20261111", "out_refund_no": "R1", "refund_status": "SUCCESS",
              "success_time": "2026-11-12T10:00:00+08:00", "amount": {"refund": 5000, "total": 19900}}
    [r] = valid(wechatpay.events("REFUND.SUCCESS", refund, "m1", resolve))
    assert (r["refund_id"], r["amount"]) == ("R1", "50.00")
    with pytest.raises(PayloadError, match="fen"):
        wechatpay.events("REFUND.SUCCESS", {**refund, "amount": {"refund": 50.5}}, "m1", resolve)


def test_a_reference_is_found_in_any_landing_url_form():
    assert ref_in_url("https://shop.example/p/1?tk=ABC&x=1") == "ABC"
    assert ref_in_url("/p/1?ref=P1") == "P1"
    assert ref_in_url("p/1?tuike=Q") == "Q"
    assert ref_in_url("http://www.example.com?source=abc") is None and ref_in_url(None) is None


def test_review_regressions_in_the_mappings():
    order = copy.deepcopy(load("shopify/python_api_order.json")["order"])
    first = order["line_items"][0]
    order["line_items"] = [{**first, "quantity": 1, "discount_allocations": [{"amount": "10.00"}]},
                           {**first, "id": 2, "quantity": 2}]  # the same variant twice (two engravings)
    [paid] = valid(shopify.events("orders/paid", order, "s1", resolve))
    # (199.00 − 10.00 + 2 × 199.00) / 3 = 195.666… → 195.67 a unit
    assert paid["items"] == [{"sku": "IPOD2008GREEN", "category": "uncategorized", "price": "195.67", "qty": 3}]
    refund = load("shopify/python_api_refund.json")["refund"]
    shipping_only = {**refund, "refund_line_items": [], "order_adjustments": [{"kind": "shipping_refund", "amount": "-8.00"}],
                     "transactions": [{"kind": "refund", "status": "success", "amount": "8.00"},
                                      {"kind": "refund", "status": "failure", "amount": "300.00"}]}
    assert shopify.events("refunds/create", shipping_only, "s1", resolve) == []
    goodwill = {**shipping_only, "order_adjustments": []}
    assert valid(shopify.events("refunds/create", goodwill, "s1", resolve))[0]["amount"] == "8.00"
    push = json.loads(load("youzan/youzan_push_samples.json")["samples"][0]["raw_body"])
    assert youzan.events({**push, "test": True}, "y1", resolve) is None  # a console test push


def test_ipv4_mapped_addresses_fingerprint_as_their_ipv4_network():
    from gateway.fingerprint import ip_prefix

    assert ip_prefix("::ffff:203.0.113.7") == "203.0.113.0/24" != ip_prefix("::ffff:198.51.100.9")
