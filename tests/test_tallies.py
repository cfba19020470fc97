"""Commission tallies per beneficiary equal the ledger's net per (beneficiary, status)."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from engine.config import parse_config
from engine.dataflow import TALLIES, Output
from engine.runner import Engine
from engine.store import MemoryStore
from schemas.events import validate_event
from tuike.generate import generate_shop


def _ledger_net(out: Output) -> dict:
    net: dict = defaultdict(Decimal)
    for e in out.entries:
        net[(e.beneficiary_id, e.status_after)] += e.amount
    return {k: v for k, v in net.items() if v}


def _tallies(store: MemoryStore) -> dict:
    return {(who, status): Decimal(amount) for who, state in store.tables[TALLIES].items()
            for status, amount in state["total"].items() if Decimal(amount)}


def test_tallies_equal_the_ledger_per_beneficiary_and_status():
    store, out = MemoryStore(), Output()
    engine = Engine(parse_config({}), store)
    events = [validate_event(e) for e in generate_shop(3, promoters=40, customers=300, orders=500)]
    for event in events:
        engine.feed(event, out)
    assert _tallies(store) == _ledger_net(out)
    assert len(_tallies(store)) > 20  # a real shop: many beneficiaries, several statuses


def test_duplicate_events_leave_the_tallies_equal_to_the_ledger():
    store, out = MemoryStore(), Output()
    engine = Engine(parse_config({}), store)
    events = [validate_event(e) for e in generate_shop(4, promoters=20, customers=100, orders=150)]
    for event in events + events[: len(events) // 2]:
        engine.feed(event, out)
    assert _tallies(store) == _ledger_net(out)
