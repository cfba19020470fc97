"""有赞 (Youzan) TRADE_ORDER_STATE pushes → canonical events.

A push is ``{client_id, kdt_id, type, status, msg, sign, …}``; ``msg`` is the URL-encoded JSON
of ``{tid, status, payment, update_time, …}`` (China time, no offset). The push names neither the
buyer nor the items — 有赞 expects the receiver to fetch the trade through its API, which tuike
does not call — so:

| status | event |
|---|---|
| ``WAIT_SELLER_SEND_GOODS`` (paid) | ``order.paid``: one line ``youzan-trade`` at ``payment``; customer = the trade (no binding applies); the promoter from a ``tk`` in ``msg`` when the shop's push includes one |
| ``TRADE_SUCCESS`` | ``order.completed`` |
| ``TRADE_CLOSED`` | ``order.cancelled`` (有赞 closes unpaid and fully refunded trades alike) |
| any other (``WAIT_BUYER_PAY``, …) | nothing (acknowledged, recorded) |
"""
from __future__ import annotations

import json
from urllib.parse import unquote

from gateway.canonical import CHINA, PayloadError, Resolver, credit, money, ns, rfc3339

TOPICS = ("TRADE_ORDER_STATE",)
CURRENCY = "CNY"


def decode_msg(push: dict) -> dict:
    msg = push.get("msg")
    if not isinstance(msg, str):
        raise PayloadError("msg: missing")
    try:
        decoded = json.loads(unquote(msg))
    except ValueError as exc:
        raise PayloadError(f"msg: not URL-encoded JSON ({exc})") from None
    if not isinstance(decoded, dict) or not decoded.get("tid"):
        raise PayloadError("msg: expected an object with tid")
    return decoded


def events(push: dict, shop_id: str, resolve: Resolver) -> list[dict] | None:
    if push.get("type") not in TOPICS or push.get("test") is True:  # 有赞's console test pushes are not orders
        return None
    msg = decode_msg(push)
    status = msg.get("status") or push.get("status")
    order = ns("youzan", shop_id, msg["tid"])
    ts = rfc3339(msg.get("update_time"), "msg.update_time", naive_zone=CHINA)
    if status == "WAIT_SELLER_SEND_GOODS":
        price = money(msg.get("payment"), "msg.payment")
        event = {"type": "order.paid", "event_id": f"{order}:paid", "ts": ts, "order_id": order,
                 "customer_id": ns("youzan", shop_id, "trade", msg["tid"]), "currency": CURRENCY,
                 "items": [{"sku": "youzan-trade", "category": "uncategorized", "price": price, "qty": 1}],
                 "shop_id": shop_id}
        return [credit(event, [msg.get("tk")], resolve)]
    if status == "TRADE_SUCCESS":
        return [{"type": "order.completed", "event_id": f"{order}:completed", "ts": ts, "order_id": order}]
    if status == "TRADE_CLOSED":
        return [{"type": "order.cancelled", "event_id": f"{order}:cancelled", "ts": ts, "order_id": order,
                 "reason": "youzan TRADE_CLOSED"}]
    return []
