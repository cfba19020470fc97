"""The one dataflow both runners execute: keyed processors exchanging messages.

Each processor is a pure function ``(state for one key, message, context) -> state`` that
appends what it produces to an :class:`Output`: ledger rows, dead letters, and messages for
other keys. The embedded runner routes messages through a local queue; the streaming runner
routes them through Kafka topics keyed the same way. Equivalence holds by construction.

| processor | key | state | in |
|---|---|---|---|
| promoters | promoter_id | joins, bans (global: every worker reads them) | promoter.* |
| watchers | promoter_id | customers whose attribution read this promoter | watch, changed |
| customers | customer_id | binds, clicks, paid orders, what was sent per order | customer.bound, click, order.paid, recheck |
| orders | order_id | order facts, frozen terms, what the ledger holds per step | order.*, review.decided, attributed |
| tallies | beneficiary_id | running totals per status, kind and level | the order processor's rows |
| risk | device, IP, prefix, promoter, peers | fraud evidence (engine/risk.py) | clicks, joins, orders, refunds |
| propagation | click_id | a click's place in its share cascade; at a root, the cascade's statistics | clicks, orders paid through a click |
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.chain import Lookup
from engine.commission import item_terms
from engine.config import Config
from schemas.dead_letter import DeadLetter
from schemas.ledger_entry import LedgerEntry

PROMOTERS, WATCHERS, CUSTOMERS, ORDERS, TALLIES = "promoters", "watchers", "customers", "orders", "tallies"
RISK = "risk"
PROPAGATION = "propagation"


@dataclass(frozen=True, slots=True)
class Message:
    processor: str  # which processor handles it; also the state table
    key: str  # the key it is partitioned by
    kind: str  # "event" (an input event) or an internal kind: watch, changed, recheck, attributed
    body: Any  # the typed event, or a small JSON-able dict for internal kinds
    cause: str  # the input event_id that started this chain of messages


@dataclass
class Output:
    entries: list[LedgerEntry] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    facts: list[tuple[str, dict]] = field(default_factory=list)  # rows the engine derives (fraud_scores)
    duplicates: int = 0  # input events that changed nothing because they were seen before
    parked: int = 0  # change in the number of events waiting for a prerequisite

    def reject(self, msg: Message, reason: str) -> None:
        """An event the engine refuses after validation (a loop, a self-bind, a second payment…)."""
        event = msg.body
        self.dead_letters.append(DeadLetter.of("engine", event.event_id, event.model_dump_json(), reason, msg.key))


@dataclass(frozen=True)
class Context:
    config: Config
    promoter: Lookup  # read-only view of every promoter's facts (a GlobalTable in streaming)
    _terms: dict = field(default_factory=dict, repr=False, compare=False)

    def terms(self, sku: str, category: str, price: Decimal, qty: int, ts_ms: int) -> list[list]:
        """An item's terms as kept in order state, memoized: a catalogue repeats the same lines."""
        multiplier = self.config.multiplier_at(ts_ms)
        key = (sku, category, price, qty, multiplier)
        found = self._terms.get(key)
        if found is None:
            if len(self._terms) > 100_000:
                self._terms.clear()
            found = self._terms[key] = [[t.level, str(t.amount), str(t.rate), t.rule_id]
                                        for t in item_terms(sku, category, price, qty, ts_ms, self.config)]
        return [list(t) for t in found]  # a copy: state values must never share lists
