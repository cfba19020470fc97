"""Paid money is settled (engine/lifecycle.py, ``order.settled``): a hold dated after the
settlement that paid a line leaves it alone, a hold that reached a paid line only after the
payment is void for it, and a refund of a paid line is still a negative carried in
``confirmed``. Each test also shows the ledger without the settlement, so it can fail."""
from __future__ import annotations

from decimal import Decimal

from engine.lifecycle import desired_steps

D = Decimal
HOUR = 3_600_000
PAID = {"e": "pay", "t": 0, "items": [["s1", "general", "100.00", 1]]}
TERMS = {"s1": [[1, "10.00", "0.10", "r1"]]}


def moves(*, done=None, refunds=None, holds=(None,), fraud=None, review=None, settled=None) -> list[tuple]:
    steps = desired_steps(PAID, refunds or {}, done, None, TERMS, ["P1"], list(holds), 0, review, fraud, settled)
    return sorted((s.ts_ms // HOUR, s.kind, s.bucket, s.amount) for s in steps.values())


def by_bucket(ms: list[tuple]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for _, _, bucket, amount in ms:
        out[bucket] = out.get(bucket, D(0)) + amount
    return {k: v for k, v in out.items() if v}


PAID_AT_10 = {("s1", "P1", 1): [[10 * HOUR, "settled:2026-10:o"]]}  # a settlement with its cutoff at hour 10


def test_a_fraud_hold_after_the_cutoff_leaves_a_paid_line_confirmed():
    done = [5 * HOUR, "done"]  # confirmed at hour 5 (hold_days 0)
    assert by_bucket(moves(done=done, fraud=[20 * HOUR, "f"])) == {"held": D("10.00")}  # unpaid: held
    assert by_bucket(moves(done=done, fraud=[20 * HOUR, "f"], settled=PAID_AT_10)) == {"confirmed": D("10.00")}
    # nothing held, so a reviewer's reject decides nothing
    rejected = moves(done=done, fraud=[20 * HOUR, "f"], review=[30 * HOUR, "rv", "reject"], settled=PAID_AT_10)
    assert by_bucket(rejected) == {"confirmed": D("10.00")}


def test_a_ban_after_the_cutoff_leaves_a_paid_line_and_a_refund_after_it_is_a_carried_negative():
    done, ban = [5 * HOUR, "done"], [20 * HOUR, "ban"]
    refund = {"r": [30 * HOUR, "refund", None, "40.00"]}  # 40 % of the item: 4.00 back
    assert by_bucket(moves(done=done, holds=[ban], refunds=refund)) == {"held": D("6.00")}
    ms = moves(done=done, holds=[ban], refunds=refund, settled=PAID_AT_10)
    assert by_bucket(ms) == {"confirmed": D("6.00")}
    assert (30, "reverse", "confirmed", D("-4.00")) in ms  # out of confirmed: the next settlement carries it


def test_a_hold_dated_before_the_cutoff_that_came_after_the_payment_is_void_for_the_paid_line():
    # the ban is dated hour 3, before the confirmation; the settlement paid the line (it was
    # confirmed when it ran), so the ban reached it late: paid money is not held
    done, ban = [5 * HOUR, "done"], [3 * HOUR, "ban"]
    assert by_bucket(moves(done=done, holds=[ban])) == {"held": D("10.00")}
    ms = moves(done=done, holds=[ban], settled=PAID_AT_10)
    assert by_bucket(ms) == {"confirmed": D("10.00")} and not [m for m in ms if m[1] == "hold"]


def test_a_hold_released_before_the_cutoff_keeps_its_history_when_the_release_is_paid():
    done, ban = [5 * HOUR, "done"], [3 * HOUR, "ban"]
    release = [8 * HOUR, "rv", "release"]
    ms = moves(done=done, holds=[ban], review=release, settled=PAID_AT_10)
    assert by_bucket(ms) == {"confirmed": D("10.00")}
    assert (3, "hold", "held", D("10.00")) in ms and (8, "release", "confirmed", D("10.00")) in ms


def test_a_later_settlement_of_a_line_held_at_an_earlier_one_voids_only_holds_up_to_its_cutoff():
    # held at hour 3 and released at hour 15: the first settlement (hour 10) did not pay it, the
    # second (hour 20) did; a ban at hour 25 comes after both
    done, ban = [5 * HOUR, "done"], [25 * HOUR, "ban"]
    fraud, release = [3 * HOUR, "f"], [15 * HOUR, "rv", "release"]
    paid_at_20 = {("s1", "P1", 1): [[20 * HOUR, "settled:2026-11:o"]]}
    ms = moves(done=done, holds=[ban], fraud=fraud, review=release, settled=paid_at_20)
    assert by_bucket(ms) == {"confirmed": D("10.00")}
    assert (3, "hold", "held", D("10.00")) in ms and (15, "release", "confirmed", D("10.00")) in ms
    assert not [m for m in ms if m[0] == 25]
