"""Commission tallies, keyed by beneficiary: what each promoter holds per status, as the sum of
what each of their orders holds (for dashboards, fraud signals and tier bonuses later).

The order processor tells a beneficiary the whole current net of one order per status after
every change (``{"order": id, "by": {status: amount}}``), not a delta: a redelivered or repeated
message sets the same value again, so the tally is idempotent and needs no entry ids. Messages
about one order come from one order key, in order. Display only: money is the ledger's.
"""
from __future__ import annotations

from decimal import Decimal

from .dataflow import Context, Message, Output


def handle_tally(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict:
    state = state or {"orders": {}, "total": {}}
    order_id, now = msg.body["order"], msg.body["by"]
    before = state["orders"].get(order_id, {})
    if before == now:
        return state
    total = state["total"]
    for status in set(before) | set(now):
        amount = Decimal(total.get(status, "0")) - Decimal(before.get(status, "0")) + Decimal(now.get(status, "0"))
        total[status] = str(amount)
    if now:
        state["orders"][order_id] = now
    else:
        state["orders"].pop(order_id, None)
    return state
