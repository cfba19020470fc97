"""Where an order stands now: one row per order for the dashboards (``order_standings``).

The analytical panels ask of every order of a range "who holds each level, what did it pay,
what does it cost in commission". Read from the ledger, that is a grouping of every row of the
range by order, level and promoter under FINAL: the bulk of a panel's time at 10M rows. The
order processor already holds the answer in its state (what the ledger holds per step), so it
writes it as a fact whenever the order's money moves, and the panels read one row per order.

The row is a pure function of the order's state, defined exactly as the ledger would give it
(``schemas/analytics.py`` ``STANDINGS_FROM_LEDGER`` computes the same from the ledger, for
ledgers written before this table existed, and a test holds the two equal):
- ``promoter1..3``: per level, the beneficiary with the largest net of accrue and reverse rows
  (ties to the largest id); hold, release and confirm move money between statuses of one
  promoter and do not count. ``''`` when the level never earned.
- ``commission1..3``: the net of every row of that level (all statuses, whoever the beneficiary);
  ``commission`` their sum.
- ``version`` grows with each row the order writes, so ReplacingMergeTree(version) keeps the
  newest; rows are keyed by (generation, order, payment time), and when an earlier-dated
  payment replaces the first one the old time gets an empty row of the same version.

Order state written before this table existed has no click in its payment (``paid["k"]``): such
an order keeps the row the sinks filled from the ledger when they created the table (its click
is right; its commission does not follow money that moves after the upgrade).
"""
from __future__ import annotations

from decimal import Decimal

from engine.lifecycle import parse_step_key
from engine.money import ZERO

MOVES = ("confirm", "hold", "release")  # status moves: a pair netting to zero per promoter


def standing_row(order_id: str, state: dict, version: int, ts_s: int) -> dict:
    """The order's standing (see module doc); ``ts_s`` is the payment time in epoch seconds."""
    paid = state["paid"]
    net: dict[tuple[int, str], Decimal] = {}
    by_level = {1: ZERO, 2: ZERO, 3: ZERO}
    for key, (amount, *_rest) in state["steps"].items():
        _sku, who, level, kind, _cause, _bucket = parse_step_key(key)
        if level not in by_level:
            continue
        value = Decimal(amount)
        by_level[level] += value
        if kind not in MOVES:
            net[(level, who)] = net.get((level, who), ZERO) + value
    holders = {}
    for (level, who), value in net.items():
        best = holders.get(level)
        if best is None or (value, who) > best:
            holders[level] = (value, who)
    return {
        "order_id": order_id, "ts": ts_s, "version": version, "customer_id": paid["c"], "click_id": paid["k"],
        "paid_amount": sum((Decimal(price) * qty for _sku, _cat, price, qty in paid["items"]), ZERO),
        "promoter1": holders.get(1, (ZERO, ""))[1], "promoter2": holders.get(2, (ZERO, ""))[1],
        "promoter3": holders.get(3, (ZERO, ""))[1], "commission": sum(by_level.values(), ZERO),
        "commission1": by_level[1], "commission2": by_level[2], "commission3": by_level[3],
    }


def void_row(order_id: str, customer_id: str, version: int, ts_s: int) -> dict:
    """The standing of a payment time that no longer counts: nothing earned, nothing paid."""
    return {"order_id": order_id, "ts": ts_s, "version": version, "customer_id": customer_id, "click_id": "",
            "paid_amount": ZERO, "promoter1": "", "promoter2": "", "promoter3": "", "commission": ZERO,
            "commission1": ZERO, "commission2": ZERO, "commission3": ZERO}


def stand(order_id: str, state: dict, money_moved: bool) -> list[dict]:
    """The standing rows to write after an input: when the order's ledger rows changed, or its
    payment did since the last row (an earlier payment that moved no money yet). Updates
    ``state["st"]`` (``[version, payment time in seconds, payment event]`` of the last row)."""
    paid = state.get("paid")
    last = state.get("st")
    if paid is None or "k" not in paid:  # not paid yet, or state from before standings (module doc)
        return []
    if not money_moved and (last is None or last[2] == paid["e"]):
        return []
    version = (last[0] if last else 0) + 1
    ts_s = paid["t"] // 1000
    rows = [standing_row(order_id, state, version, ts_s)]
    if last is not None and last[1] != ts_s:
        rows.append(void_row(order_id, paid["c"], version, last[1]))
    state["st"] = [version, ts_s, paid["e"]]
    return rows
