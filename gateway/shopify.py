"""Shopify webhooks → canonical events.

| ``X-Shopify-Topic`` | event |
|---|---|
| ``orders/paid`` | ``order.paid`` (line items at the unit price paid after line discounts) |
| ``orders/fulfilled`` | ``order.completed`` (ts: the order's ``closed_at`` or ``updated_at``) |
| ``refunds/create`` | ``order.refunded`` (per line: ``subtotal``; else the successful refund transactions less shipping refunds; a shipping-only refund maps to nothing) |
| ``orders/cancelled`` | ``order.cancelled`` |

The promoter: the ``tk`` (or ``tuike``, ``ref``) parameter of ``landing_site``, else a note
attribute of that name (set by the storefront from the ``tk`` cookie), else a discount code the
resolver knows. Customer: ``customer.id``, or the order itself for a guest checkout.
"""
from __future__ import annotations

from decimal import Decimal

from gateway.canonical import PayloadError, Resolver, credit, merged_items, money, ns, ref_in_pairs, ref_in_url, rfc3339

TOPICS = ("orders/paid", "orders/fulfilled", "refunds/create", "orders/cancelled")


def events(topic: str, body: dict, shop_id: str, resolve: Resolver) -> list[dict] | None:
    """The canonical events of one webhook; None for a topic tuike does not map."""
    if topic == "refunds/create":
        refund = _refund(body, shop_id)
        return [refund] if refund else []
    if topic not in TOPICS:
        return None
    order = ns("shopify", shop_id, _id(body, "id"))
    if topic == "orders/paid":
        return [_paid(body, shop_id, order, resolve)]
    if topic == "orders/fulfilled":
        ts = rfc3339(body.get("closed_at") or body.get("updated_at"), "closed_at")
        return [{"type": "order.completed", "event_id": f"{order}:completed", "ts": ts, "order_id": order}]
    ts = rfc3339(body.get("cancelled_at") or body.get("updated_at"), "cancelled_at")
    event = {"type": "order.cancelled", "event_id": f"{order}:cancelled", "ts": ts, "order_id": order}
    if body.get("cancel_reason"):
        event["reason"] = str(body["cancel_reason"])
    return [event]


def _id(obj: dict, field: str) -> str:
    value = obj.get(field)
    if value is None or value == "":
        raise PayloadError(f"{field}: missing")
    return str(value)


def _paid(body: dict, shop_id: str, order: str, resolve: Resolver) -> dict:
    rows = []
    lines = body.get("line_items")
    if not isinstance(lines, list) or not lines:
        raise PayloadError("line_items: an order.paid needs at least one line")
    for i, line in enumerate(lines):
        qty = line.get("quantity")
        if not isinstance(qty, int) or qty < 1:
            raise PayloadError(f"line_items[{i}].quantity: expected a whole number ≥ 1, got {qty!r}")
        paid = Decimal(money(line.get("price"), f"line_items[{i}].price")) * qty - _discount(line, i)
        sku = line.get("sku") or f"variant-{line.get('variant_id') or line.get('id')}"
        rows.append((str(sku), str(line.get("product_type") or "uncategorized"), qty, paid))
    items = merged_items(rows)
    customer = body.get("customer") or {}
    who = ns("shopify", shop_id, "customer", customer["id"]) if customer.get("id") else ns("shopify", shop_id, "guest", _id(body, "id"))
    details = body.get("client_details") or {}
    event = {"type": "order.paid", "event_id": f"{order}:paid",
             "ts": rfc3339(body.get("processed_at") or body.get("created_at"), "processed_at"),
             "order_id": order, "customer_id": who, "currency": _id(body, "currency"), "items": items,
             "shop_id": shop_id}
    ip = details.get("browser_ip") or body.get("browser_ip")
    if ip:
        event["ip"] = str(ip)
    codes = [c.get("code") for c in body.get("discount_codes") or [] if isinstance(c, dict)]
    return credit(event, [ref_in_url(body.get("landing_site")), ref_in_pairs(body.get("note_attributes"), "name", "value"),
                          *codes], resolve)


def _discount(line: dict, i: int) -> Decimal:
    """What the line's discounts took off: its ``discount_allocations`` (codes, automatic and
    order-level discounts spread by Shopify), else the older ``total_discount``."""
    allocations = line.get("discount_allocations")
    if isinstance(allocations, list) and allocations:
        return sum((Decimal(money(a.get("amount"), f"line_items[{i}].discount_allocations[].amount"))
                    for a in allocations if isinstance(a, dict)), Decimal("0"))
    return Decimal(money(line.get("total_discount") or "0", f"line_items[{i}].total_discount"))


def _refund(body: dict, shop_id: str) -> dict | None:
    order = ns("shopify", shop_id, _id(body, "order_id"))
    refund = _id(body, "id")
    event = {"type": "order.refunded", "event_id": f"{order}:refund:{refund}",
             "ts": rfc3339(body.get("processed_at") or body.get("created_at"), "created_at"),
             "order_id": order, "refund_id": refund}
    lines = body.get("refund_line_items") or []
    if lines:
        per_sku: dict[str, Decimal] = {}
        for i, line in enumerate(lines):
            item = line.get("line_item") or {}
            sku = item.get("sku") or f"variant-{item.get('variant_id') or line.get('line_item_id')}"
            amount = line.get("subtotal")
            if amount is None:  # older payloads: the line's unit price × the refunded quantity
                amount = Decimal(money(item.get("price"), f"refund_line_items[{i}].line_item.price")) * int(line.get("quantity") or 0)
            per_sku[str(sku)] = per_sku.get(str(sku), Decimal("0")) + Decimal(money(amount, f"refund_line_items[{i}].subtotal"))
        event["items"] = [{"sku": sku, "amount": money(a, "refund amount")} for sku, a in per_sku.items()]
        return event
    # no lines: money went back without goods (a goodwill amount, shipping). The successful refund
    # transactions, less what was shipping, reduce the paid amount; a shipping-only refund changes
    # no commission (nothing to map).
    refunds = [t for t in body.get("transactions") or []
               if isinstance(t, dict) and t.get("kind") == "refund" and t.get("status", "success") == "success"]
    total = sum((Decimal(money(t.get("amount"), "transactions[].amount")) for t in refunds), Decimal("0"))
    shipping = sum((abs(Decimal(money(a.get("amount"), "order_adjustments[].amount")))
                    for a in body.get("order_adjustments") or []
                    if isinstance(a, dict) and a.get("kind") == "shipping_refund"), Decimal("0"))
    if total - shipping <= 0:
        return None
    event["amount"] = money(total - shipping, "amount")
    return event
