"""An order's commission as it should stand, computed from the facts the order holds.

The order processor does not add per-event deltas. After any input it asks this module what
every *step* of the order's money should be — the accrual, each refund's reversal, the cancel,
the confirmation move — and writes only the difference from what the ledger already holds.
A late bind or ban then needs no special path, a redelivery changes no fact and so writes
nothing, and any arrival order ends at the same net money.

Order facts (JSON-able, as kept in state):
- ``paid``: ``{"e": event_id, "t": ts_ms, "items": [[sku, category, price, qty]], ...}``
- ``refunds``: ``{refund_id: [ts_ms, event_id, [[sku, amount]] or None, amount or None]}``
- ``done`` (completed) and ``cancel``: ``[ts_ms, event_id]`` or absent.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .binding import DAY_MS
from .money import ZERO, cents, spread


SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class Step:
    key: str  # unique within the order: sku, beneficiary, level, kind, cause, bucket joined by SEP
    ts_ms: int
    kind: str  # accrue | reverse | confirm
    bucket: str  # the status the amount sits in: pending | confirmed
    cause: str  # event id of the fact behind the step
    sku: str
    beneficiary: str
    level: int
    amount: Decimal
    rate: Decimal
    rule_id: str


def refund_split(paid: dict, refund: list) -> dict[str, Decimal]:
    """A refund as amounts per sku: given per item, or an order-level amount spread by paid amount."""
    if refund[2] is not None:
        out: dict[str, Decimal] = {}
        for sku, amount in refund[2]:
            out[sku] = out.get(sku, ZERO) + Decimal(amount)
        return out
    skus = [it[0] for it in paid["items"]]
    weights = [Decimal(it[2]) * it[3] for it in paid["items"]]
    return dict(zip(skus, spread(Decimal(refund[3]), weights)))


def desired_steps(
    paid: dict,
    refunds: dict[str, list],
    done: list | None,
    cancel: list | None,
    terms: dict[str, list],
    beneficiaries: list[str | None],
    hold_days: int,
) -> dict[str, Step]:
    """Every step of the order's money, from its facts (pure; see module doc)."""
    ordered = sorted(refunds.items(), key=lambda kv: (kv[1][0], kv[0]))
    splits = [(r[0], r[1], refund_split(paid, r)) for _, r in ordered]
    confirm_at = done[0] + hold_days * DAY_MS if done else None
    steps: dict[str, Step] = {}
    for sku, _cat, price, qty in paid["items"]:
        item_paid = Decimal(price) * qty
        # (ts, rank, cause, what, refund share): at equal ts a reversal comes before the confirmation
        timeline: list[tuple] = [(ts, 0, eid, "refund", split[sku]) for ts, eid, split in splits if split.get(sku)]
        if cancel:
            timeline.append((cancel[0], 0, cancel[1], "cancel", None))
        if confirm_at is not None:
            timeline.append((confirm_at, 1, done[1], "confirm", None))  # type: ignore[index]
        timeline.sort(key=lambda x: (x[0], x[1], x[2]))
        for level, amount, rate, rule_id in terms.get(sku, ()):
            who = beneficiaries[level - 1] if level <= len(beneficiaries) else None
            if who is None:
                continue
            accrued = Decimal(amount)
            rate_d = Decimal(rate)

            def add(kind: str, bucket: str, cause: str, ts: int, value: Decimal) -> None:
                key = SEP.join((sku, who, str(level), kind, cause, bucket))
                steps[key] = Step(key, ts, kind, bucket, cause, sku, who, level, value, rate_d, rule_id)

            add("accrue", "pending", paid["e"], paid["t"], accrued)
            left, refunded, bucket = accrued, ZERO, "pending"
            for ts, _rank, cause, what, share in timeline:
                if what == "confirm":
                    if left > 0:
                        add("confirm", "pending", cause, ts, -left)
                        add("confirm", "confirmed", cause, ts, left)
                    bucket = "confirmed"
                    continue
                if what == "cancel":
                    back = left
                else:
                    share = min(share, item_paid - refunded)
                    if share <= 0:
                        continue
                    refunded += share
                    back = left if refunded >= item_paid else min(left, cents(accrued * share / item_paid))
                if back > 0:
                    add("reverse", bucket, cause, ts, -back)
                    left -= back
    return steps
