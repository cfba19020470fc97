"""An order's fraud signals, as the order processor keeps them, and the hold they call for.

The risk chain (:mod:`engine.risk`) answers once with ``scored`` (the signals and features it
saw when the order was scored); an entity that turns suspicious later sends ``flag`` s. The
order keeps every signal with the earliest event time it applied (never before the payment),
adds the one signal only it can see — a new account refunding its first order in full right
away (F12) — and holds its commission from the time the signals reach ``hold_score``
(:func:`engine.fraud.hold_at`). Each new set of signals is one row of ``fraud_scores``.

State: ``state["fraud"] = {"sig": {code: [ts_ms, cause]}, "f": features, "p": level-1 promoter,
"n": the scoring "p" came from, "seen": scorings merged, "h": the hold, "rows": reasons last written}``.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import orjson

from engine.dataflow import RISK, Message, Output
from engine.fraud import OWN_SIGNALS, FraudRules, hold_at, score
from schemas.ledger_entry import entry_id
from engine.lifecycle import refund_shares
from engine.money import ZERO


def record_signals(state: dict, msg: Message, out: Output) -> bool:
    """Merge a ``scored`` or ``flag`` message; False when it adds nothing."""
    fraud = state.setdefault("fraud", {"sig": {}, "f": {}, "p": None, "n": 0})
    body = msg.body
    if msg.kind == "scored":  # the first scoring, or a later one on a promoter attributed late
        if body["n"] in fraud.setdefault("seen", []):
            return False
        fraud["seen"].append(body["n"])
        fraud["scored"] = True
        fraud["f"] = {**body["f"], **fraud["f"]} if body["n"] > 1 else {**fraud["f"], **body["f"]}
        if body["n"] > fraud["n"]:
            fraud["n"], fraud["p"] = body["n"], body.get("p")
            if fraud["p"] and state["refunds"]:  # refunded before: the promoter's refund rate counts it
                first = min(state["refunds"].values())
                out.messages.append(Message(RISK, f"p:{fraud['p']}", "refund", {"t": first[0]}, msg.cause))
        incoming = body["sig"]
    else:
        incoming = {body["code"]: [body["t"], body["cause"]]}
    changed = False
    for code, (ts, cause) in incoming.items():
        have = fraud["sig"].get(code)
        if have is None or (ts, cause) < (have[0], have[1]):
            fraud["sig"][code] = [ts, cause]
            changed = True
    return changed or msg.kind == "scored"


def fraud_hold(order_id: str, state: dict, rules: FraudRules, out: Output) -> list | None:
    """The ``[ts_ms, cause]`` from which the order's commission is held, or None; writes a
    ``fraud_scores`` row whenever the order's signals change."""
    fraud = state.get("fraud")
    paid = state.get("paid")
    if not rules.enabled or fraud is None or not fraud.get("scored") or paid is None:
        return None
    signals = {code: [max(ts, paid["t"]), cause] for code, (ts, cause) in fraud["sig"].items()}
    abuse = _refund_abuse(paid, state["refunds"], fraud["f"], rules)
    if abuse is not None:
        signals["F12"] = abuse
    own = [signals[c] for c in OWN_SIGNALS if c in signals]
    if own and fraud["p"] and fraud.get("suspect") != fraud["p"]:  # tell the promoter's record (F15)
        fraud["suspect"] = fraud["p"]
        out.messages.append(Message(RISK, f"p:{fraud['p']}", "suspect", {"o": order_id, "t": min(own)[0]},
                                    min(own)[1]))
    hold = fraud["h"] = hold_at(signals, rules)
    reasons = ",".join(sorted(signals))
    if fraud.get("rows") != reasons:
        fraud["rows"] = reasons
        out.facts.append(("fraud_scores", _row(order_id, paid, fraud, signals, reasons, hold, rules)))
    return hold


def _refund_abuse(paid: dict, refunds: dict, features: dict, rules: FraudRules) -> list | None:
    """F12: a new account's first order, refunded in full within ``refund_hours`` of payment."""
    if not refunds or not features.get("first_order"):
        return None
    if features.get("account_age_s", 0) > rules.limit("new_account_hours") * 3600:
        return None
    left = sum((Decimal(price) * qty for _sku, _cat, price, qty in paid["items"]), ZERO)
    for share in refund_shares(paid, refunds):
        left -= sum(share.applied.values(), ZERO)
        if left <= 0:
            if share.ts_ms - paid["t"] <= rules.seconds("refund_hours", 3600):
                return [share.ts_ms, share.event_id]
            return None
    return None


def _row(order_id: str, paid: dict, fraud: dict, signals: dict, reasons: str, hold: list | None,
         rules: FraudRules) -> dict:
    latest = max((ts for ts, _ in signals.values()), default=paid["t"])
    return {
        "score_id": entry_id("fraud_score", order_id, reasons),
        "order_id": order_id,
        "ts": datetime.fromtimestamp(latest / 1000, timezone.utc),
        "customer_id": paid["c"],
        "promoter_id": fraud.get("p") or "",
        "score": score(signals, rules),
        "reasons": reasons,
        "features": orjson.dumps(fraud["f"], option=orjson.OPT_SORT_KEYS).decode(),
        "held": 1 if hold is not None else 0,
    }
