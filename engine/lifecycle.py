"""An order's commission as it should stand, computed from the facts the order holds.

The order processor does not add per-event deltas. After any input it asks this module what
every *step* of the order's money should be — the accrual, each refund's reversal, the cancel,
the confirmation and hold moves — and writes only the difference from what the ledger already
holds. A late bind or ban then needs no special path, a redelivery changes no fact and so
writes nothing, and any arrival order ends at the same net money.

Order facts (JSON-able, as kept in state):
- ``paid``: ``{"e": event_id, "t": ts_ms, "items": [[sku, category, price, qty]], ...}``
- ``refunds``: ``{refund_id: [ts_ms, event_id, [[sku, amount]] or None, amount or None]}``
- ``done`` (completed) and ``cancel``: ``[ts_ms, event_id]`` or absent.
- ``settled``: ``{period: [cutoff_ms, event_id, [[sku, beneficiary, level]]]}``: the lines a
  closed settlement paid (``order.settled``); paid money is not held again.
- ``review``: ``[ts_ms, event_id, "release" | "reject"]`` or absent: a person's decision on held
  money. ``release`` moves what is held back to pending (or confirmed, when the confirmation
  date has passed) with ``release`` rows; ``reject`` reverses it to exactly zero. A decision
  before anything is held decides nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import orjson

from engine.binding import DAY_MS
from engine.money import ZERO, cents, spread


@dataclass(frozen=True, slots=True)
class Step:
    key: str  # unique within the order; see step_key
    ts_ms: int
    kind: str  # accrue | reverse | confirm | hold | release
    bucket: str  # the status the amount sits in: pending | confirmed | held
    cause: str  # event id of the fact behind the step
    sku: str
    beneficiary: str
    level: int
    amount: Decimal
    rate: Decimal
    rule_id: str


def step_key(sku: str, who: str, level: int, kind: str, cause: str, bucket: str) -> str:
    """A JSON array: unambiguous whatever characters the ids contain."""
    return orjson.dumps([sku, who, level, kind, cause, bucket]).decode()


def parse_step_key(key: str) -> list:
    return orjson.loads(key)


@dataclass(frozen=True, slots=True)
class RefundShare:
    ts_ms: int
    refund_id: str
    event_id: str
    applied: dict[str, Decimal]  # sku → amount that counts (never past what is left of the item)
    problems: list[str]  # lines that could not apply in full, in words


def refund_shares(paid: dict, refunds: dict[str, list]) -> list[RefundShare]:
    """Each refund as amounts per sku, in event-time order ``(ts, refund_id)``.

    A per-item refund applies to its sku; an order-level amount is spread over what is left
    of each item's paid amount (so refunding a whole order in parts ends at exactly zero).
    Amounts past what is left are not applied and are named in ``problems``.
    """
    left = {it[0]: Decimal(it[2]) * it[3] for it in paid["items"]}
    out = []
    for refund_id, (ts, eid, items, amount) in sorted(refunds.items(), key=lambda kv: (kv[1][0], kv[0])):
        asked: dict[str, Decimal] = {}
        problems = []
        if items is not None:
            for sku, value in items:
                asked[sku] = asked.get(sku, ZERO) + Decimal(value)
        else:
            total = Decimal(amount)
            remaining = sum(left.values(), ZERO)
            if total > remaining:
                problems.append(f"amount {total} exceeds what is left of the order ({remaining}); reversed up to that")
                total = remaining
            asked = dict(zip(left, spread(total, list(left.values()))))
        applied = {}
        for sku, value in asked.items():
            if sku not in left:
                problems.append(f"sku {sku!r} is not in the order")
                continue
            if value > left[sku]:
                problems.append(f"sku {sku!r} refund {value} exceeds what is left of its paid amount ({left[sku]}); "
                                "reversed up to that")
                value = left[sku]
            left[sku] -= value
            applied[sku] = value
        out.append(RefundShare(ts, refund_id, eid, applied, problems))
    return out


def desired_steps(
    paid: dict,
    refunds: dict[str, list],
    done: list | None,
    cancel: list | None,
    terms: dict[str, list],
    beneficiaries: list[str | None],
    holds: list[list | None],
    hold_days: int,
    review: list | None = None,
    fraud: list | None = None,
    settled: dict[tuple, list] | None = None,
) -> dict[str, Step]:
    """Every step of the order's money, from its facts (pure; see module doc).

    ``holds[i]`` is the ban ``[ts_ms, event_id]`` of level i+1's promoter after the order: from
    then on their unsettled money from this order is held (and is not confirmed). ``fraud`` is
    the ``[ts_ms, cause]`` from which the fraud score holds every level (engine/suspicion.py).
    ``settled[(sku, beneficiary, level)]`` lists ``[cutoff_ms, cause]`` of the settlements that
    paid that line (``order.settled``).
    """
    if not any(beneficiaries):
        return {}
    shares = refund_shares(paid, refunds) if refunds else []
    confirm_at = done[0] + hold_days * DAY_MS if done else None
    steps: dict[str, Step] = {}
    paid_event, paid_ts = paid["e"], paid["t"]
    for sku, _cat, price, qty in paid["items"]:
        item_paid = Decimal(price) * qty
        # (ts, rank, tiebreak, what, cause, arg): at equal ts reversals come first, then holds, then
        # the review, then confirmation, then a settlement's cutoff
        base: list[tuple] = [(s.ts_ms, 0, s.refund_id, "refund", s.event_id, s.applied[sku])
                             for s in shares if s.applied.get(sku)]
        if cancel:
            base.append((cancel[0], 0, "", "cancel", cancel[1], None))
        if review:
            base.append((review[0], 2, "", "review", review[1], review[2]))
        if confirm_at is not None:
            base.append((confirm_at, 3, "", "confirm", done[1], None))  # type: ignore[index]
        if fraud is not None:
            base.append((fraud[0], 1, "fraud", "hold", fraud[1], None))
        for level, amount, rate, rule_id in terms.get(sku, ()):
            who = beneficiaries[level - 1] if level <= len(beneficiaries) else None
            if who is None:
                continue
            ban = holds[level - 1] if level <= len(holds) else None
            timeline = base + [(ban[0], 1, "", "hold", ban[1], None)] if ban is not None else base
            for cutoff, cause in (settled or {}).get((sku, who, level), ()):
                timeline = timeline + [(cutoff, 4, "", "settled", cause, None)]
            if len(timeline) > 1:
                timeline = sorted(timeline, key=lambda x: (x[0], x[1], x[2]))
            moves = _line_moves(timeline, Decimal(amount), item_paid, confirm_at, paid_event, paid_ts)
            rate_d = Decimal(rate)
            for kind, where, cause, ts, value in moves:
                key = step_key(sku, who, level, kind, cause, where)
                steps[key] = Step(key, ts, kind, where, cause, sku, who, level, value, rate_d, rule_id)
    return steps


def _line_moves(timeline: list[tuple], accrued: Decimal, item_paid: Decimal, confirm_at: int | None,
                paid_event: str, paid_ts: int) -> list[tuple]:
    """One line's moves ``(kind, bucket, cause, ts, amount)`` along its timeline.

    A settlement that paid the line finds its money confirmed and marks it settled: a later hold
    (a ban, a fraud score) leaves paid money alone, and a later refund still reverses it out of
    ``confirmed`` (the negative the next settlement carries). When the timeline has the line held
    at a cutoff that paid it, the hold was dated inside the period but arrived after the
    payment: money paid is not held, so holds up to that cutoff do not apply to this line.
    """
    void_until = None
    while True:
        moves, conflict = _walk(timeline, accrued, item_paid, confirm_at, paid_event, paid_ts, void_until)
        if conflict is None:
            return moves
        void_until = conflict


def _walk(timeline: list[tuple], accrued: Decimal, item_paid: Decimal, confirm_at: int | None,
          paid_event: str, paid_ts: int, void_until: int | None) -> tuple[list[tuple], int | None]:
    moves: list[tuple] = [("accrue", "pending", paid_event, paid_ts, accrued)]
    left, refunded, bucket = accrued, ZERO, "pending"
    for ts, _rank, _tie, what, cause, share in timeline:
        if what == "settled":
            if bucket == "held" and left > 0:
                return moves, ts  # held at a cutoff that paid it: see _line_moves
            if bucket == "confirmed":
                bucket = "settled"
            continue
        if what == "review":
            if bucket != "held":
                continue  # nothing held (yet) to decide on
            if share == "release":
                target = "confirmed" if confirm_at is not None and confirm_at <= ts else "pending"
                if left > 0:
                    moves.append(("release", "held", cause, ts, -left))
                    moves.append(("release", target, cause, ts, left))
                bucket = target
            else:  # reject: the held money goes back, to exactly zero
                if left > 0:
                    moves.append(("reverse", "held", cause, ts, -left))
                left = ZERO
            continue
        if what == "confirm" or what == "hold":
            if bucket in ("held", "settled") or (what == "hold" and void_until is not None and ts <= void_until):
                continue  # held money stays held until a review releases it; paid money is not held
            target = "confirmed" if what == "confirm" else "held"
            if target == bucket:
                continue  # already there (a review released it straight into confirmed)
            if left > 0:
                moves.append((what, bucket, cause, ts, -left))
                moves.append((what, target, cause, ts, left))
            bucket = target
            continue
        if what == "cancel":
            back = left
        else:
            refunded += share
            back = left if refunded >= item_paid else min(left, cents(accrued * share / item_paid))
        if back > 0:
            moves.append(("reverse", "confirmed" if bucket == "settled" else bucket, cause, ts, -back))
            left -= back
    return moves, None
