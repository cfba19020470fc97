"""The order processor: an order's facts in, ledger rows out (contract §3).

It keeps the order's facts, the terms frozen at payment, the latest attribution, and what the
ledger already holds for each step. After every input it reconciles: desired steps (from
:mod:`engine.lifecycle`) minus held steps = the rows to write. Events that arrive before the
order's payment are kept and counted as parked; the payment applies them.
"""
from __future__ import annotations

from decimal import Decimal

from schemas.events import OrderCancelled, OrderCompleted, OrderPaid, OrderRefunded, ReviewDecided

from .dataflow import Context, Message, Output
from .ledger_entry import LedgerEntry, entry_id
from .dead_letter import DeadLetter
from .lifecycle import SEP, Step, desired_steps, refund_split
from .money import ZERO


def handle_order(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict:
    state = state or {"refunds": {}, "steps": {}, "waiting": 0}
    if msg.kind == "attributed":
        current = state.get("attr")
        if current is not None and current[0] >= msg.body["v"]:
            return state  # an older answer than the one applied
        state["attr"] = [msg.body["v"], msg.body["levels"]]
    elif not _record(state, msg, ctx, out):
        return state
    _reconcile(msg.key, state, msg.cause, ctx, out)
    return state


def _record(state: dict, msg: Message, ctx: Context, out: Output) -> bool:
    """Store the event as a fact; False when it adds nothing (a duplicate or a refusal)."""
    event = msg.body
    if isinstance(event, OrderPaid):
        if "paid" in state:
            if state["paid"]["e"] == event.event_id:
                out.duplicates += 1
            else:
                out.reject(msg, f"order.paid: order {event.order_id} was already paid by event {state['paid']['e']}")
            return False
        items = [[it.sku, it.category, str(it.price), it.qty] for it in event.items]
        state["paid"] = {"e": event.event_id, "t": event.ts_ms, "c": event.customer_id, "cur": event.currency, "items": items}
        state["terms"] = {it.sku: ctx.terms(it.sku, it.category, it.price, it.qty, event.ts_ms) for it in event.items}
        out.parked -= state["waiting"]
        state["waiting"] = 0
        for refund_id, refund in state["refunds"].items():
            _check_refund(msg, state["paid"], refund_id, refund, out)
        return True
    if isinstance(event, OrderRefunded):
        if event.refund_id in state["refunds"]:
            out.duplicates += 1
            return False
        items = [[ri.sku, str(ri.amount)] for ri in event.items] if event.items is not None else None
        refund = [event.ts_ms, event.event_id, items, None if event.amount is None else str(event.amount)]
        state["refunds"][event.refund_id] = refund
        if "paid" in state:
            _check_refund(msg, state["paid"], event.refund_id, refund, out)
    elif isinstance(event, (OrderCompleted, OrderCancelled, ReviewDecided)):
        field = {OrderCompleted: "done", OrderCancelled: "cancel", ReviewDecided: "review"}[type(event)]
        fact = [event.ts_ms, event.event_id] + ([event.decision] if isinstance(event, ReviewDecided) else [])
        have = state.get(field)
        if have is not None and (have[0], have[1]) <= (fact[0], fact[1]):
            out.duplicates += 1  # the earliest completion (or cancel) is the one that counts
            return False
        state[field] = fact
    if "paid" not in state:
        state["waiting"] += 1
        out.parked += 1
    return True


def _check_refund(msg: Message, paid: dict, refund_id: str, refund: list, out: Output) -> None:
    """Name refund lines that cannot apply; the lines that can still do."""
    paid_by_sku = {it[0]: Decimal(it[2]) * it[3] for it in paid["items"]}
    for sku, amount in refund_split(paid, refund).items():
        if sku not in paid_by_sku:
            out.dead_letters.append(_refund_problem(msg, refund_id, f"sku {sku!r} is not in order {msg.key}"))
        elif amount > paid_by_sku[sku]:
            out.dead_letters.append(_refund_problem(
                msg, refund_id, f"sku {sku!r} refund {amount} exceeds its paid amount {paid_by_sku[sku]}; reversed up to the paid amount"))


def _refund_problem(msg: Message, refund_id: str, reason: str) -> DeadLetter:
    return DeadLetter.of("engine", f"{msg.key}/{refund_id}", refund_id, f"order.refunded {refund_id}: {reason}", msg.key)


def _reconcile(order_id: str, state: dict, cause: str, ctx: Context, out: Output) -> None:
    """Write the difference between the steps the facts call for and the steps the ledger holds."""
    paid = state.get("paid")
    if paid is None:
        return
    levels = state["attr"][1] if state.get("attr") else []
    desired = desired_steps(paid, state["refunds"], state.get("done"), state.get("cancel"),
                            state["terms"], levels, ctx.config.hold_days)
    held: dict[str, list] = state["steps"]
    changed = [k for k, step in desired.items() if k not in held or held[k][0] != str(step.amount)]
    changed += [k for k, have in held.items() if k not in desired and have[0] != "0.00"]
    for key in sorted(changed):
        have = held.get(key)
        want = desired[key].amount if key in desired else ZERO
        delta = want - (Decimal(have[0]) if have else ZERO)
        if delta == 0:
            continue
        step = desired.get(key) or _held_step(key, have)  # type: ignore[arg-type]
        n = have[1] if have else 0
        held[key] = [str(want), n + 1, step.ts_ms, str(step.rate), step.rule_id]
        if step.kind == "confirm":
            kind = "confirm"
        elif step.kind == "accrue":
            kind = "accrue" if delta > 0 else "reverse"
        else:
            kind = "reverse" if delta < 0 else "accrue"
        out.entries.append(LedgerEntry(
            entry_id=entry_id(order_id, key, n),
            event_id=step.cause if n == 0 else cause,
            ts_ms=step.ts_ms, order_id=order_id, item_sku=step.sku, customer_id=paid["c"],
            beneficiary_id=step.beneficiary, level=step.level, kind=kind, amount=delta,
            rate=step.rate, rule_id=step.rule_id, currency=paid["cur"], status_after=step.bucket,
        ))


def _held_step(key: str, have: list) -> Step:
    """Rebuild a step the facts no longer call for (e.g. the old promoter after a late bind)."""
    sku, who, level, kind, cause, bucket = key.split(SEP)
    return Step(key, have[2], kind, bucket, cause, sku, who, int(level), ZERO, Decimal(have[3]), have[4])
