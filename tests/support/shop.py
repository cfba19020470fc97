"""A tiny DSL for writing engine tests as a shop would see them: events in, money out."""
from __future__ import annotations

import itertools
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from engine.config import parse_config
from engine.dataflow import Output
from engine.runner import Engine
from engine.store import MemoryStore
from schemas.events import validate_event

_ids = itertools.count(1)


def run_file(path: Path, data_dir: Path, config, url: str | None = None, *queries: str):
    """``tuike run`` of a file, then ``queries`` on the resulting ledger (closed after: chDB allows
    one open path per process)."""
    from schemas.records import read_records
    from sinks import open_ledger
    from topologies.embedded import run_events

    ledger = open_ledger(url, data_dir)
    try:
        stats = run_events(read_records(path), config=config, data_dir=data_dir, ledger=ledger)
        return stats, [ledger.query(q).rows for q in queries]
    finally:
        ledger.close()


def ts(day: int, hour: int = 12, minute: int = 0, second: int = 0, month: int = 11) -> str:
    return f"2026-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}+08:00"


def joined(pid, parent=None, day=1, **kw):
    return dict(type="promoter.joined", ts=ts(day), promoter_id=pid, parent_id=parent, **kw)


def banned(pid, at):
    return dict(type="promoter.banned", ts=at, promoter_id=pid)


def bound(customer, promoter, at):
    return dict(type="customer.bound", ts=at, customer_id=customer, promoter_id=promoter)


def click(promoter, customer, at, cid=None):
    return dict(type="click", ts=at, click_id=cid or f"k{next(_ids)}", promoter_id=promoter, customer_id=customer)


def item(sku, price, qty=1, category="general"):
    return {"sku": sku, "category": category, "price": price, "qty": qty}


def paid(order, customer, at, *items, promoter=None):
    ev = dict(type="order.paid", ts=at, order_id=order, customer_id=customer, currency="CNY", items=list(items))
    if promoter:
        ev["promoter_id"] = promoter
    return ev


def refunded(order, refund_id, at, items=None, amount=None):
    ev = dict(type="order.refunded", ts=at, order_id=order, refund_id=refund_id)
    if items is not None:
        ev["items"] = [{"sku": s, "amount": a} for s, a in items]
    if amount is not None:
        ev["amount"] = amount
    return ev


def completed(order, at):
    return dict(type="order.completed", ts=at, order_id=order)


def cancelled(order, at):
    return dict(type="order.cancelled", ts=at, order_id=order)


def reviewed(order, decision, at):
    return dict(type="review.decided", ts=at, order_id=order, decision=decision)


def with_ids(events: list[dict]) -> list[dict]:
    """Give each event an event_id unless it has one (give them once before shuffling or repeating)."""
    return [e if "event_id" in e else {**e, "event_id": f"ev-{next(_ids)}"} for e in events]


class Run:
    """Feeds events through a fresh engine and answers questions about the ledger."""

    def __init__(self, events: list[dict], config: dict | None = None, engine: Engine | None = None):
        self.config = parse_config(config or {})
        self.engine = engine or Engine(self.config, MemoryStore())
        self.out = Output()
        self.feed(events)

    def feed(self, events: list[dict]) -> "Run":
        for e in with_ids(events):
            self.engine.feed(validate_event(e), self.out)
        return self

    @property
    def entries(self):
        return self.out.entries

    def net(self) -> dict[tuple, Decimal]:
        """Net money per (order, item, beneficiary, level), zeros dropped."""
        acc: dict[tuple, Decimal] = defaultdict(Decimal)
        for e in self.entries:
            acc[(e.order_id, e.item_sku, e.beneficiary_id, e.level)] += e.amount
        return {k: v for k, v in acc.items() if v != 0}

    def earned(self, who: str) -> Decimal:
        return sum((e.amount for e in self.entries if e.beneficiary_id == who), Decimal("0.00"))

    def by_status(self, who: str | None = None) -> dict[str, Decimal]:
        acc: dict[str, Decimal] = defaultdict(Decimal)
        for e in self.entries:
            if who is None or e.beneficiary_id == who:
                acc[e.status_after] += e.amount
        return {k: v for k, v in acc.items() if v != 0}

    def reasons(self) -> list[str]:
        return [d.reason for d in self.out.dead_letters]


def D(x: str) -> Decimal:
    return Decimal(x)
