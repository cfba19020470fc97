"""WooCommerce webhooks → canonical events.

An order webhook (``order.created``, ``order.updated``) carries the whole order, so it becomes
every event the order's state implies, each with a deterministic id (the engine counts a fact
seen twice once, so a missed ``order.created`` is made good by the next ``order.updated``):

| order state | events |
|---|---|
| ``date_paid_gmt`` set (status processing, completed, refunded), or completed | ``order.paid`` |
| status ``completed`` | + ``order.completed`` (ts ``date_completed_gmt``) |
| status ``cancelled`` | ``order.cancelled`` |
| each entry of ``refunds`` | ``order.refunded`` with that refund's amount (WooCommerce lists the total, tax and shipping included, dated by the order's last change: an approximation; a refund resource with lines is exact) |
| pending, on-hold, failed, without ``date_paid_gmt`` | nothing yet (acknowledged, recorded) |

A refund webhook (a refund resource: ``amount``, ``_links.up`` → the order) becomes
``order.refunded``, per line when it lists ``line_items``. ``*_gmt`` times are UTC.

The promoter: a ``tk`` (or ``_tk``, ``tuike``, ``ref``) entry of ``meta_data`` (the plugin copies
the ``tk`` cookie there), else a coupon code the resolver knows. Customer: ``customer_id``, or
the billing e-mail's hash for a guest.
"""
from __future__ import annotations

import hashlib
import re
from decimal import Decimal

from gateway.canonical import PayloadError, Resolver, credit, merged_items, money, ns, ref_in_pairs, rfc3339

TOPICS = ("order.created", "order.updated", "order.refunded", "refund.created")
PAID_STATUSES = ("processing", "completed", "refunded")
_ORDER_LINK = re.compile(r"/orders/(\d+)(?:/refunds/\d+)?/?$")


def events(topic: str, body: dict, shop_id: str, resolve: Resolver) -> list[dict] | None:
    if topic not in TOPICS:
        return None
    if "amount" in body and "line_items" in body and "status" not in body:
        return [_refund_resource(body, shop_id)]
    if topic.startswith("refund"):
        raise PayloadError("a refund webhook needs a refund resource (amount, line_items, _links.up)")
    order = ns("woocommerce", shop_id, _text(body, "id"))
    status = body.get("status")
    out: list[dict] = []
    if status == "cancelled":
        ts = rfc3339(body.get("date_modified_gmt"), "date_modified_gmt")
        out.append({"type": "order.cancelled", "event_id": f"{order}:cancelled", "ts": ts, "order_id": order})
    paid_at = body.get("date_paid_gmt") or (body.get("date_completed_gmt") if status == "completed" else None)
    if paid_at and status in PAID_STATUSES:
        out.append(_paid(body, shop_id, order, paid_at, resolve))
    if status == "completed":
        ts = rfc3339(body.get("date_completed_gmt") or body.get("date_modified_gmt"), "date_completed_gmt")
        out.append({"type": "order.completed", "event_id": f"{order}:completed", "ts": ts, "order_id": order})
    for i, refund in enumerate(body.get("refunds") or []):
        rid = _text(refund, "id")
        amount = Decimal(money(refund.get("total"), f"refunds[{i}].total")).copy_abs()  # listed as negative
        out.append({"type": "order.refunded", "event_id": f"{order}:refund:{rid}",
                    "ts": rfc3339(body.get("date_modified_gmt"), "date_modified_gmt"),
                    "order_id": order, "refund_id": rid, "amount": money(amount, "refund")})
    return out


def _text(obj: dict, field: str) -> str:
    value = obj.get(field)
    if value is None or value == "":
        raise PayloadError(f"{field}: missing")
    return str(value)


def _sku(line: dict) -> str:
    return str(line.get("sku") or f"product-{line.get('variation_id') or line.get('product_id')}")


def _paid(body: dict, shop_id: str, order: str, paid_at: str, resolve: Resolver) -> dict:
    lines = body.get("line_items")
    if not isinstance(lines, list) or not lines:
        raise PayloadError("line_items: a paid order needs at least one line")
    rows = []
    for i, line in enumerate(lines):
        qty = line.get("quantity")
        if not isinstance(qty, int) or qty < 1:
            raise PayloadError(f"line_items[{i}].quantity: expected a whole number ≥ 1, got {qty!r}")
        total = Decimal(money(line.get("total"), f"line_items[{i}].total"))  # after coupons, before tax
        rows.append((_sku(line), "uncategorized", qty, total))
    items = merged_items(rows)
    customer = body.get("customer_id")
    if customer:
        who = ns("woocommerce", shop_id, "customer", customer)
    else:
        email = str((body.get("billing") or {}).get("email") or "").strip().lower()
        who = ns("woocommerce", shop_id, "guest", hashlib.sha256(email.encode()).hexdigest()[:16] if email else f"order-{body['id']}")
    event = {"type": "order.paid", "event_id": f"{order}:paid", "ts": rfc3339(paid_at, "date_paid_gmt"),
             "order_id": order, "customer_id": who, "currency": _text(body, "currency"), "items": items,
             "shop_id": shop_id}
    if body.get("customer_ip_address"):
        event["ip"] = str(body["customer_ip_address"])
    coupons = [c.get("code") for c in body.get("coupon_lines") or [] if isinstance(c, dict)]
    return credit(event, [ref_in_pairs(body.get("meta_data"), "key", "value"), *coupons], resolve)


def _refund_resource(body: dict, shop_id: str) -> dict:
    links = body.get("_links")
    up = links.get("up") if isinstance(links, dict) else None
    href = up[0].get("href") if isinstance(up, list) and up and isinstance(up[0], dict) else None
    match = _ORDER_LINK.search(href) if isinstance(href, str) else None
    if not match:
        raise PayloadError("_links.up: the refund does not name its order (…/orders/<id>)")
    order = ns("woocommerce", shop_id, match.group(1))
    rid = _text(body, "id")
    event = {"type": "order.refunded", "event_id": f"{order}:refund:{rid}",
             "ts": rfc3339(body.get("date_created_gmt"), "date_created_gmt"), "order_id": order, "refund_id": rid}
    lines = [line for line in body.get("line_items") or [] if isinstance(line, dict)]
    if lines:
        event["items"] = [{"sku": _sku(line), "amount": money(Decimal(money(line.get("total"), "line_items[].total")).copy_abs(),
                                                               "line_items[].total")} for line in lines]
    else:
        event["amount"] = money(body.get("amount"), "amount")
    return event
