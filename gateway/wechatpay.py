"""WeChat Pay APIv3 notifications → canonical events (after the signature is verified and the
resource decrypted, gateway/signatures.py).

| ``event_type`` | event |
|---|---|
| ``TRANSACTION.SUCCESS`` | ``order.paid``: order ``out_trade_no``, customer the payer's ``openid``, one line ``wechatpay`` at ``amount.total`` fen; the promoter from ``attach`` (``tk=<code>``, set by the shop when it creates the payment) |
| ``REFUND.SUCCESS`` | ``order.refunded``: ``out_refund_no``, ``amount.refund`` fen |
| any other (``PAYSCORE.*``, ``REFUND.ABNORMAL``, …) | nothing (acknowledged, recorded) |
"""
from __future__ import annotations

from urllib.parse import parse_qs

from gateway.canonical import REF_KEYS, PayloadError, Resolver, cents, credit, ns, rfc3339

TOPICS = ("TRANSACTION.SUCCESS", "REFUND.SUCCESS")


def _text(obj: dict, field: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"resource.{field}: missing")
    return value


def _ref_in_attach(attach: object) -> str | None:
    if not isinstance(attach, str):
        return None
    query = parse_qs(attach)
    return next((query[k][0] for k in REF_KEYS if query.get(k)), None)


def events(event_type: str, resource: dict, shop_id: str, resolve: Resolver) -> list[dict] | None:
    if event_type not in TOPICS:
        return None
    order = ns("wechatpay", shop_id, _text(resource, "out_trade_no"))
    amount = resource.get("amount") or {}
    ts = rfc3339(resource.get("success_time"), "resource.success_time")
    if event_type == "TRANSACTION.SUCCESS":
        payer = _text(resource.get("payer") or {}, "openid")
        event = {"type": "order.paid", "event_id": f"{order}:paid", "ts": ts, "order_id": order,
                 "customer_id": ns("wechatpay", shop_id, "openid", payer), "currency": amount.get("currency") or "CNY",
                 "items": [{"sku": "wechatpay", "category": "uncategorized",
                            "price": cents(amount.get("total"), "resource.amount.total"), "qty": 1}],
                 "shop_id": shop_id}
        return [credit(event, [_ref_in_attach(resource.get("attach"))], resolve)]
    refund = _text(resource, "out_refund_no")
    return [{"type": "order.refunded", "event_id": f"{order}:refund:{refund}", "ts": ts, "order_id": order,
             "refund_id": refund, "amount": cents(amount.get("refund"), "resource.amount.refund")}]
