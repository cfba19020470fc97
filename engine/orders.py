"""The order processor: an order's facts in, ledger rows out (contract §3).

It keeps the order's facts, the terms frozen at payment, the latest attribution, and what the
ledger already holds for each step. After every input it reconciles: desired steps (from
:mod:`engine.lifecycle`) minus held steps = the rows to write. Events that arrive before the
order's payment are kept and counted as parked; the payment applies them.
"""
from __future__ import annotations

from decimal import Decimal

import orjson

from schemas.events import OrderCancelled, OrderCompleted, OrderPaid, OrderRefunded, OrderSettled, ReviewDecided

from engine.dataflow import CUSTOMERS, PROPAGATION, RISK, Context, Message, Output
from schemas.dead_letter import DeadLetter
from schemas.ledger_entry import LedgerEntry, entry_id, step_entry_id
from engine.lifecycle import Step, desired_steps, parse_step_key, refund_shares
from engine.standing import stand
from engine.suspicion import fraud_hold, record_signals
from engine.money import ZERO

FACT_FIELDS = {OrderCompleted: "done", OrderCancelled: "cancel", ReviewDecided: "review"}


def handle_order(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict:
    state = state or {"refunds": {}, "steps": {}, "waiting": 0}
    if msg.kind == "attributed":
        # Answers are kept per customer: when an earlier payment by another customer replaced
        # the first one, the first payer's answer may still arrive later (another partition),
        # and it must not replace the current payer's.
        body = msg.body
        answers = state.setdefault("attrs", {})
        current = answers.get(body["customer"])
        if current is not None and current[0] >= body["v"]:
            return state  # an older answer than the one applied
        answers[body["customer"]] = [body["v"], body["levels"], body["holds"]]
    elif msg.kind in ("scored", "flag"):
        before = state.get("fraud", {}).get("h")
        if not record_signals(state, msg, out) or fraud_hold(msg.key, state, ctx.config.fraud, out) == before:
            return state  # nothing new, or a new signal that does not move the hold: no money changes
    elif not _record(state, msg, ctx, out):
        return state
    written = len(out.entries)
    _reconcile(msg.key, state, msg.cause, ctx, out)
    # where the order stands now (dashboards), when its money or its payment moved
    out.facts.extend(("order_standings", row) for row in stand(msg.key, state, len(out.entries) > written))
    return state


def _seen(state: dict, event_id: str) -> bool:
    """Whether this order already holds a fact from ``event_id`` (or refused it as a second payment)."""
    if state.get("paid", {}).get("e") == event_id or any(r[1] == event_id for r in state["refunds"].values()):
        return True
    if event_id in state.get("lost", ()) or any(s[1] == event_id for s in state.get("settled", {}).values()):
        return True
    return any(state.get(f) and state[f][1] == event_id for f in FACT_FIELDS.values())


def _record(state: dict, msg: Message, ctx: Context, out: Output) -> bool:
    """Store the event as a fact; False when it adds nothing (a duplicate or a refusal)."""
    event = msg.body
    if _seen(state, event.event_id):
        out.duplicates += 1
        return False
    if isinstance(event, OrderPaid):
        return _record_payment(state, msg, ctx, out)
    if isinstance(event, OrderSettled):
        settled = state.setdefault("settled", {})
        if event.period in settled:  # one settlement per period; its lines never change
            out.duplicates += 1
            return False
        settled[event.period] = [event.ts_ms, event.event_id,
                                 [[line.sku, line.beneficiary_id, line.level] for line in event.lines]]
    elif isinstance(event, OrderRefunded):
        items = [[ri.sku, str(ri.amount)] for ri in event.items] if event.items is not None else None
        refund = [event.ts_ms, event.event_id, items, None if event.amount is None else str(event.amount)]
        have = state["refunds"].get(event.refund_id)
        if have is not None:
            out.duplicates += 1  # the same refund again: the earliest delivery (ts, event_id) counts
            if (have[0], have[1]) <= (refund[0], refund[1]):
                return False
        if not state["refunds"] and state.get("fraud", {}).get("p"):  # the promoter's refund rate (engine/risk.py)
            out.messages.append(Message(RISK, f"p:{state['fraud']['p']}", "refund", {"t": event.ts_ms}, msg.cause))
        state["refunds"][event.refund_id] = refund
        if "paid" in state:
            _name_refund_problems(msg, state, {event.refund_id}, out)
    else:
        field = FACT_FIELDS[type(event)]
        fact = [event.ts_ms, event.event_id] + ([event.decision] if isinstance(event, ReviewDecided) else [])
        have = state.get(field)
        if have is not None:
            out.duplicates += 1  # the earliest completion (or cancel, or decision) is the one that counts
            if (have[0], have[1]) <= (fact[0], fact[1]):
                return False
        state[field] = fact
    if "paid" not in state:
        state["waiting"] += 1
        out.parked += 1
    return True


def _record_payment(state: dict, msg: Message, ctx: Context, out: Output) -> bool:
    """The first payment of an order by (ts, event_id) is the one; another is a producer's error."""
    event: OrderPaid = msg.body
    if event.currency != ctx.config.currency:  # commission in two currencies could not be summed
        out.reject(msg, f"order.paid: currency {event.currency} is not the shop's currency {ctx.config.currency} "
                        "(tuike.yaml: currency)")
        state.setdefault("lost", []).append(event.event_id)
        return False
    have = state.get("paid")
    if have is not None:
        incoming_loses = (have["t"], have["e"]) <= (event.ts_ms, event.event_id)
        winner, loser = (have["e"], event.event_id) if incoming_loses else (event.event_id, have["e"])
        raw = event.model_dump_json() if incoming_loses else orjson.dumps(have).decode()
        reason = (f"order.paid: order {event.order_id} was paid twice, by events {winner} and {loser}; "
                  f"the earlier one ({winner}) counts")
        # one id per losing payment, whichever of the two arrived first
        out.dead_letters.append(DeadLetter(entry_id("dead", "engine", loser), "engine", loser, msg.key, raw, reason))
        state.setdefault("lost", []).append(loser)  # a redelivery of it is then a duplicate
        if incoming_loses:
            return False
        if have["c"] != event.customer_id:
            out.messages.append(Message(CUSTOMERS, have["c"], "drop", {"order": event.order_id}, msg.cause))
    items = [[it.sku, it.category, str(it.price), it.qty] for it in event.items]
    state["paid"] = {"e": event.event_id, "t": event.ts_ms, "c": event.customer_id, "cur": event.currency, "items": items,
                     "k": event.click_id or ""}
    state["terms"] = {it.sku: ctx.terms(it.sku, it.category, it.price, it.qty, event.ts_ms) for it in event.items}
    out.parked -= state["waiting"]
    state["waiting"] = 0
    _name_refund_problems(msg, state, set(state["refunds"]), out)
    body = {"order": event.order_id, "ts": event.ts_ms, "promoter": event.promoter_id, "d": event.device_id,
            "i": event.ip, "v": str(sum((it.price * it.qty for it in event.items), ZERO))}
    out.messages.append(Message(CUSTOMERS, event.customer_id, "order", body, msg.cause))
    if event.click_id:  # a conversion of the share cascade the click is in (engine/propagation.py)
        out.messages.append(Message(PROPAGATION, event.click_id, "conv", {"o": event.order_id, "v": body["v"]},
                                    msg.cause))
    return True


def _name_refund_problems(msg: Message, state: dict, refund_ids: set[str], out: Output) -> None:
    """Dead-letter the lines of these refunds that cannot apply in full; the rest still applies."""
    if not refund_ids:
        return
    for share in refund_shares(state["paid"], state["refunds"]):
        if share.refund_id in refund_ids:
            for problem in share.problems:
                reason = f"order.refunded {share.refund_id} of order {msg.key}: {problem}"
                out.dead_letters.append(DeadLetter.of("engine", f"{msg.key}/{share.refund_id}", reason, reason, msg.key))


def _reconcile(order_id: str, state: dict, cause: str, ctx: Context, out: Output) -> None:
    """Write the difference between the steps the facts call for and the steps the ledger holds."""
    paid = state.get("paid")
    if paid is None:
        return
    answer = state.get("attrs", {}).get(paid["c"])
    levels, holds = (answer[1], answer[2]) if answer else ([], [])  # no answer yet: nothing to pay
    flag = fraud_hold(order_id, state, ctx.config.fraud, out)
    desired = desired_steps(paid, state["refunds"], state.get("done"), state.get("cancel"),
                            state["terms"], levels, holds, ctx.config.hold_days, state.get("review"), flag,
                            _settled_lines(state.get("settled")))
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
        if step.kind in ("confirm", "hold", "release"):
            kind = step.kind
        elif step.kind == "accrue":
            kind = "accrue" if delta > 0 else "reverse"
        else:
            kind = "reverse" if delta < 0 else "accrue"
        out.entries.append(LedgerEntry(
            entry_id=step_entry_id(order_id, key, n),
            event_id=step.cause if n == 0 else cause,
            ts_ms=step.ts_ms, order_id=order_id, item_sku=step.sku, customer_id=paid["c"],
            beneficiary_id=step.beneficiary, level=step.level, kind=kind, amount=delta,
            rate=step.rate, rule_id=step.rule_id, currency=paid["cur"], status_after=step.bucket,
        ))


def _settled_lines(settled: dict | None) -> dict[tuple, list] | None:
    """``{(sku, beneficiary, level): [[cutoff_ms, event_id], …]}`` from the order's settlements."""
    if not settled:
        return None
    lines: dict[tuple, list] = {}
    for ts, eid, paid_lines in settled.values():
        for sku, who, level in paid_lines:
            lines.setdefault((sku, who, level), []).append([ts, eid])
    return lines


def _held_step(key: str, have: list) -> Step:
    """Rebuild a step the facts no longer call for (e.g. the old promoter after a late bind)."""
    sku, who, level, kind, cause, bucket = parse_step_key(key)
    return Step(key, have[2], kind, bucket, cause, sku, who, level, ZERO, Decimal(have[3]), have[4])
