"""One row of the append-only ledger (contract §4), and its deterministic id."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal



@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: str
    event_id: str  # the event that caused this row
    ts_ms: int  # event time of the step this row belongs to (epoch ms, UTC)
    order_id: str
    item_sku: str
    customer_id: str
    beneficiary_id: str
    level: int
    kind: str
    amount: Decimal  # signed, 2 decimals
    rate: Decimal  # the rate this money was computed at (frozen at accrual)
    rule_id: str
    currency: str
    status_after: str  # the status bucket this row's amount sits in


def step_entry_id(order_id: str, step_key: str, revision: int) -> str:
    """:func:`entry_id` of a ledger row: the order, the step (a JSON array, unambiguous) and its revision."""
    return hashlib.blake2b(f"{len(order_id)}:{order_id}{step_key}{revision}".encode(), digest_size=16).hexdigest()


def entry_id(*parts: object) -> str:
    """A stable 128-bit hex id from what caused the row: same cause, same id, on any machine."""
    text = "".join(f"{len(s)}:{s}" for s in map(str, parts))  # length-prefixed: no two causes collide
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
