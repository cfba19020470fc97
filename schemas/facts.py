"""Events as rows of the fact tables of ``schemas/ddl.sql`` (orders, order_items, order_events,
clicks, bindings, promoters).

:func:`facts_of` is pure: the same event always gives the same rows, so writing them again is
collapsed by the tables' deterministic keys (event_id; (order_id, sku) for order items).
Optional strings are ``''`` when absent (the tables have no Nullable columns); ``ts`` stays a
timezone-aware UTC datetime and money stays :class:`~decimal.Decimal`.
"""
from __future__ import annotations

from decimal import Decimal

from schemas.events import (
    Click,
    CustomerBound,
    Event,
    OrderCancelled,
    OrderCompleted,
    OrderPaid,
    OrderRefunded,
    PromoterAgreed,
    PromoterBanned,
    PromoterJoined,
    ReviewDecided,
)

ZERO = Decimal("0.00")

# Column order of each fact table, as in schemas/ddl.sql (sinks insert in this order).
FACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "orders": ("event_id", "order_id", "ts", "customer_id", "currency", "shop_id", "promoter_id",
               "click_id", "device_id", "ip", "item_count", "paid_amount", "sealed"),
    "order_items": ("order_id", "sku", "category", "price", "qty", "paid_amount", "ts"),
    "order_events": ("event_id", "type", "order_id", "ts", "refund_id", "amount", "detail"),
    "clicks": ("event_id", "click_id", "ts", "promoter_id", "visitor_id", "customer_id",
               "device_id", "ip", "user_agent", "sku", "campaign", "parent_click_id", "sealed"),
    "bindings": ("event_id", "ts", "customer_id", "promoter_id", "via", "click_id"),
    "promoters": ("event_id", "type", "ts", "promoter_id", "parent_id", "device_id", "ip",
                  "reason", "sealed"),
    # derived by the engine (engine/suspicion.py), not from one event
    "cascade_nodes": ("click_id", "root_id", "parent_click_id", "depth", "ts", "promoter_id", "campaign", "sku"),
    "cascade_stats": ("root_id", "version", "reach", "depth", "breadth", "conversions", "gmv", "first_ts", "last_ts",
                      "promoter_id", "campaign"),
    "cascade_forecasts": ("root_id", "window_hours", "made_at", "size_now", "early_size", "trained_on", "size", "low",
                          "high", "k_factor", "k_low", "k_high", "method"),
    "fraud_scores": ("score_id", "order_id", "ts", "customer_id", "promoter_id", "score", "reasons",
                     "features", "held"),
    "order_standings": ("generation", "order_id", "ts", "version", "customer_id", "click_id", "paid_amount",
                        "promoter1", "promoter2", "promoter3", "commission", "commission1", "commission2",
                        "commission3"),
    # written by `tuike settle` (tuike/backoffice/settle.py)
    "settlements": ("period", "payee", "payer", "balance", "gmv", "tier", "bonus_rate", "bonus", "income", "taxable", "rate",
                    "quick_deduction", "tax", "net", "carried", "status", "method", "table_version",
                    "statement_sha256", "settled_at"),
    "settled_lines": ("period", "order_id", "sku", "beneficiary_id", "level", "amount"),
    "alerts": ("alert_id", "period", "kind", "subject", "detail", "amount", "ts"),
    "agreements": ("event_id", "ts", "promoter_id", "agreement_version", "text_sha256", "payout_account",
                   "sealed"),
}


def _s(value: str | None) -> str:
    return "" if value is None else value


def _order_paid(e: OrderPaid, sealed: str) -> list[tuple[str, dict]]:
    rows: list[tuple[str, dict]] = [(
        "orders",
        {
            "event_id": e.event_id,
            "order_id": e.order_id,
            "ts": e.ts,
            "customer_id": e.customer_id,
            "currency": e.currency,
            "shop_id": _s(e.shop_id),
            "promoter_id": _s(e.promoter_id),
            "click_id": _s(e.click_id),
            "device_id": _s(e.device_id),
            "ip": _s(e.ip),
            "item_count": sum(i.qty for i in e.items),
            "paid_amount": sum((i.paid for i in e.items), ZERO),
            "sealed": sealed,
        },
    )]
    for i in e.items:
        rows.append((
            "order_items",
            {
                "order_id": e.order_id,
                "sku": i.sku,
                "category": i.category,
                "price": i.price,
                "qty": i.qty,
                "paid_amount": i.paid,
                "ts": e.ts,
            },
        ))
    return rows


def _order_event(e: Event, *, refund_id: str = "", amount: Decimal = ZERO, detail: str = "") -> list[tuple[str, dict]]:
    return [(
        "order_events",
        {
            "event_id": e.event_id,
            "type": e.type,
            "order_id": e.order_id,  # type: ignore[attr-defined]
            "ts": e.ts,
            "refund_id": refund_id,
            "amount": amount,
            "detail": detail,
        },
    )]


def _order_refunded(e: OrderRefunded) -> list[tuple[str, dict]]:
    if e.items is not None:
        total = sum((i.amount for i in e.items), ZERO)
        detail = ";".join(f"{i.sku}={i.amount}" for i in e.items)
    else:
        total, detail = e.amount, ""  # an order-level amount, spread over the items by the engine
    return _order_event(e, refund_id=e.refund_id, amount=total, detail=detail)


def _click(e: Click, sealed: str) -> list[tuple[str, dict]]:
    return [(
        "clicks",
        {
            "event_id": e.event_id,
            "click_id": e.click_id,
            "ts": e.ts,
            "promoter_id": e.promoter_id,
            "visitor_id": _s(e.visitor_id),
            "customer_id": _s(e.customer_id),
            "device_id": _s(e.device_id),
            "ip": _s(e.ip),
            "user_agent": _s(e.user_agent),
            "sku": _s(e.sku),
            "campaign": _s(e.campaign),
            "parent_click_id": _s(e.parent_click_id),
            "sealed": sealed,
        },
    )]


def _bound(e: CustomerBound) -> list[tuple[str, dict]]:
    return [(
        "bindings",
        {
            "event_id": e.event_id,
            "ts": e.ts,
            "customer_id": e.customer_id,
            "promoter_id": e.promoter_id,
            "via": _s(e.via),
            "click_id": _s(e.click_id),
        },
    )]


def _promoter(e: PromoterJoined | PromoterBanned, sealed: str) -> list[tuple[str, dict]]:
    joined = isinstance(e, PromoterJoined)
    return [(
        "promoters",
        {
            "event_id": e.event_id,
            "type": e.type,
            "ts": e.ts,
            "promoter_id": e.promoter_id,
            "parent_id": _s(e.parent_id) if joined else "",
            "device_id": _s(e.device_id) if joined else "",
            "ip": _s(e.ip) if joined else "",
            "reason": "" if joined else _s(e.reason),
            "sealed": sealed,
        },
    )]


def facts_of(event: Event, sealed: str = "") -> list[tuple[str, dict]]:
    """The fact rows one validated event contributes: ``[(table, row), …]``. ``sealed`` is the
    event's raw personal values, encrypted (topologies/protection.py), when privacy is on."""
    if isinstance(event, OrderPaid):
        return _order_paid(event, sealed)
    if isinstance(event, OrderRefunded):
        return _order_refunded(event)
    if isinstance(event, OrderCompleted):
        return _order_event(event)
    if isinstance(event, OrderCancelled):
        return _order_event(event, detail=_s(event.reason))
    if isinstance(event, ReviewDecided):
        return _order_event(event, detail=event.decision)
    if isinstance(event, Click):
        return _click(event, sealed)
    if isinstance(event, CustomerBound):
        return _bound(event)
    if isinstance(event, (PromoterJoined, PromoterBanned)):
        return _promoter(event, sealed)
    if isinstance(event, PromoterAgreed):
        return [("agreements", {"event_id": event.event_id, "ts": event.ts, "promoter_id": event.promoter_id,
                                "agreement_version": event.agreement_version, "text_sha256": event.text_sha256,
                                "payout_account": _s(event.payout_account), "sealed": sealed})]
    return []  # a type with no fact table yet: the ledger and dead letters still record it
