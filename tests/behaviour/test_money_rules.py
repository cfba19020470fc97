"""Every money rule of contract §2–§3, with amounts computed by hand."""
from __future__ import annotations

from datetime import datetime

import pytest

from engine.config import ConfigError, parse_config
from tests.support.shop import (D, Run, banned, bound, cancelled, completed, item, joined, paid, refunded, reviewed, ts,
                        with_ids)

CHAIN = [joined("A"), joined("B", "A"), joined("C", "B"), joined("D", "C")]  # D → C → B → A


def shop(*events, config=None) -> Run:
    return Run(CHAIN + list(events), config)


def test_four_level_chain_pays_only_three_levels():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")))
    assert run.net() == {("o1", "s1", "D", 1): D("10.00"), ("o1", "s1", "C", 2): D("5.00"), ("o1", "s1", "B", 3): D("2.00")}
    assert run.earned("A") == 0
    assert {e.rule_id for e in run.entries} == {"default"}
    assert {e.status_after for e in run.entries} == {"pending"}


def test_level_not_configured_by_rule_pays_nothing():
    config = {"commission": {"rules": [{"id": "digital-goods", "when": {"category": "digital"}, "levels": ["0.15", "0.05"]}]}}
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("e-book", "200.00", category="digital")), config=config)
    assert run.net() == {("o1", "e-book", "D", 1): D("30.00"), ("o1", "e-book", "C", 2): D("10.00")}
    assert {e.rule_id for e in run.entries} == {"digital-goods"}


FIXED = {"commission": {"rules": [{"id": "flagship-fixed", "when": {"sku": "SKU-0001"}, "fixed": ["5.00", "2.00"]}]}}


def test_fixed_amount_per_unit():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("SKU-0001", "99.00", qty=3)), config=FIXED)
    assert run.net() == {("o1", "SKU-0001", "D", 1): D("15.00"), ("o1", "SKU-0001", "C", 2): D("6.00")}
    assert {e.rule_id for e in run.entries} == {"flagship-fixed"}


def test_fixed_amounts_scaled_down_to_the_cap():
    # paid 20.00, cap 0.30 → 6.00; fixed 10.00 + 4.00 = 14.00 scaled by 6/14: 4.2857 → 4.29, 1.7142 → 1.71
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("SKU-0001", "10.00", qty=2)), config=FIXED)
    assert run.net() == {("o1", "SKU-0001", "D", 1): D("4.29"), ("o1", "SKU-0001", "C", 2): D("1.71")}
    assert {e.rule_id for e in run.entries} == {"flagship-fixed+capped"}
    assert sum(run.net().values()) <= D("20.00") * D("0.30")


CAMPAIGN = {"commission": {"campaigns": [{"id": "double-11", "from": "2026-11-10T00:00:00+08:00",
                                          "to": "2026-11-12T00:00:00+08:00", "multiplier": "1.2"}]}}


@pytest.mark.parametrize("at, level1, rule", [
    ("2026-11-09T23:59:59+08:00", "10.00", "default"),            # 1 s before the window
    ("2026-11-10T00:00:01+08:00", "12.00", "default*double-11"),  # 1 s inside the start
    ("2026-11-11T23:59:59+08:00", "12.00", "default*double-11"),  # 1 s inside the end
    ("2026-11-12T00:00:01+08:00", "10.00", "default"),            # 1 s after the window
    ("2026-11-10T01:59:59+10:00", "10.00", "default"),            # = 11-09 23:59:59 +08:00: offsets count
])
def test_campaign_window_by_event_time(at, level1, rule):
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", at, item("s1", "100.00")), config=CAMPAIGN)
    assert run.net()[("o1", "s1", "D", 1)] == D(level1)
    assert {e.rule_id for e in run.entries} == {rule}


def test_config_over_the_cap_with_campaign_is_refused():
    with pytest.raises(ConfigError) as err:
        parse_config({"commission": {"levels": ["0.15", "0.08", "0.05"], **CAMPAIGN["commission"]}})
    assert err.value.problems[0].path == "commission.levels"
    assert "0.336" in err.value.problems[0].message


def test_partial_refunds_summing_to_full_end_at_exactly_zero():
    # accrued: 99.99 × 0.10 = 9.999 → 10.00; × 0.05 = 4.9995 → 5.00; × 0.02 = 1.9998 → 2.00
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "99.99")),
               refunded("o1", "r1", ts(4), items=[("s1", "33.33")]),
               refunded("o1", "r2", ts(5), items=[("s1", "33.33")]),
               refunded("o1", "r3", ts(6), items=[("s1", "33.33")]))
    reversals = [(e.beneficiary_id, e.amount) for e in run.entries if e.kind == "reverse"]
    # each refund: accrued × 33.33 / 99.99, half-up; the last takes exactly the remainder
    assert reversals == [("B", D("-0.67")), ("C", D("-1.67")), ("D", D("-3.33")),
                         ("B", D("-0.67")), ("C", D("-1.67")), ("D", D("-3.33")),
                         ("B", D("-0.66")), ("C", D("-1.66")), ("D", D("-3.34"))]
    assert run.net() == {}
    assert sum(e.amount for e in run.entries) == D("0.00")


def test_order_level_refund_spread_over_items_by_paid_amount():
    # 10.01 over paid 60.00 / 40.00: 6.006 / 4.004 → 6.00 / 4.00 + the left cent to the larger remainder (a)
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("a", "60.00"), item("b", "40.00")),
               refunded("o1", "r1", ts(4), amount="10.01"))
    rev = {(e.item_sku, e.level): e.amount for e in run.entries if e.kind == "reverse"}
    # level 1: a 6.00 × 6.01/60 = 0.601 → 0.60; b 4.00 × 4.00/40 = 0.40
    assert rev[("a", 1)] == D("-0.60") and rev[("b", 1)] == D("-0.40")
    # level 2: a 3.00 × 6.01/60 = 0.3005 → 0.30; b 2.00 × 0.1 = 0.20
    assert rev[("a", 2)] == D("-0.30") and rev[("b", 2)] == D("-0.20")


def test_refund_before_payment_is_parked_then_applied():
    run = shop(bound("u", "D", ts(2)), refunded("o1", "r1", ts(4), items=[("s1", "50.00")]))
    assert run.entries == [] and run.out.parked == 1
    run.feed([paid("o1", "u", ts(3), item("s1", "100.00"))])
    assert run.out.parked == 0
    assert run.net() == {("o1", "s1", "D", 1): D("5.00"), ("o1", "s1", "C", 2): D("2.50"), ("o1", "s1", "B", 3): D("1.00")}


def test_cancel_reverses_everything_left():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")),
               refunded("o1", "r1", ts(4), items=[("s1", "30.00")]), cancelled("o1", ts(5)))
    assert run.net() == {}
    cancel_rows = sorted((e.beneficiary_id, e.amount) for e in run.entries if e.event_id == run.entries[-1].event_id)
    assert cancel_rows == [("B", D("-1.40")), ("C", D("-3.50")), ("D", D("-7.00"))]


def test_confirmation_exactly_hold_days_after_completion():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")),
               completed("o1", ts(5, 12, 0, 0)),
               refunded("o1", "r1", ts(12, 11, 59, 59), items=[("s1", "10.00")]),  # 1 s before: reverses pending
               refunded("o1", "r2", ts(12, 12, 0, 1), items=[("s1", "10.00")]),   # 1 s after: reverses confirmed
               config={"hold_days": 7})
    confirm_at = int(datetime.fromisoformat(ts(12, 12, 0, 0)).timestamp() * 1000)
    # the refund dated before the confirmation arrived after it: the move is corrected to 9.00
    moved = {}
    for e in run.entries:
        if e.kind == "confirm" and e.beneficiary_id == "D":
            assert e.ts_ms == confirm_at
            moved[e.status_after] = moved.get(e.status_after, 0) + e.amount
    assert moved == {"pending": D("-9.00"), "confirmed": D("9.00")}
    d_rev = {e.status_after: e.amount for e in run.entries if e.kind == "reverse" and e.beneficiary_id == "D"}
    assert d_rev == {"pending": D("-1.00"), "confirmed": D("-1.00")}
    assert run.by_status("D") == {"confirmed": D("8.00")}


def test_refund_at_exactly_confirmation_time_reverses_before_confirming():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")),
               completed("o1", ts(5)), refunded("o1", "r1", ts(12), amount="100.00"), config={"hold_days": 7})
    assert run.net() == {} and run.by_status() == {}
    assert sum(e.amount for e in run.entries if e.kind == "confirm" and e.status_after == "confirmed") == 0


def _orders_for(mode, binds, orders, **binding):
    config = {"binding": {"mode": mode, **binding}}
    run = Run([joined("P1"), joined("P2")] + binds + orders, config)
    return {o: {e.beneficiary_id for e in run.entries if e.order_id == o and e.level == 1} for o in ("o1", "o2")}


@pytest.mark.parametrize("mode, expected", [("first", {"P1"}), ("override", {"P2"}), ("new_customer_only", {"P1"})])
def test_binding_modes(mode, expected):
    got = _orders_for(mode, [bound("u", "P1", ts(2)), bound("u", "P2", ts(3))], [paid("o1", "u", ts(4), item("s", "10.00"))])
    assert got["o1"] == expected


def test_new_customer_only_refuses_a_customer_who_already_ordered():
    # P1's binding lapses after 1 day; a later bind to P2 takes effect under `first`, not for an existing buyer
    binds = [bound("u", "P1", ts(1, 12)), bound("u", "P2", ts(3))]
    orders = [paid("o1", "u", ts(1, 13), item("s", "10.00")), paid("o2", "u", ts(4, 11), item("s", "10.00"))]
    assert _orders_for("first", binds, orders, valid_days=1) == {"o1": {"P1"}, "o2": {"P2"}}
    assert _orders_for("new_customer_only", binds, orders, valid_days=1) == {"o1": {"P1"}, "o2": set()}


def test_binding_lapses_after_valid_days():
    binds = [bound("u", "P1", ts(1, 12, 0, 0, month=10))]
    orders = [paid("o1", "u", ts(31, 11, 59, 59, month=10), item("s", "10.00")),  # 30 days − 1 s: still bound
              paid("o2", "u", ts(31, 12, 0, 0, month=10), item("s", "10.00"))]    # exactly 30 days: lapsed
    assert _orders_for("first", binds, orders, valid_days=30) == {"o1": {"P1"}, "o2": set()}
    assert _orders_for("first", binds, orders, valid_days=0) == {"o1": {"P1"}, "o2": {"P1"}}


def test_explicit_promoter_on_order_wins_over_binding():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00"), promoter="B"))
    assert run.net() == {("o1", "s1", "B", 1): D("10.00"), ("o1", "s1", "A", 2): D("5.00")}


def test_last_click_attribution_within_window():
    config = {"attribution": "last_click", "click_window_days": 7}
    from tests.support.shop import click
    run = Run([joined("P1"), joined("P2"), click("P1", "u", ts(1)), click("P2", "u", ts(2)),
               paid("o1", "u", ts(3), item("s", "10.00")),       # latest click P2 wins
               paid("o2", "u", ts(9, 13), item("s", "10.00"))],  # 7 days + 1 h after the last click: none
              config)
    assert {(e.order_id, e.beneficiary_id) for e in run.entries} == {("o1", "P2")}


def test_self_bind_refused():
    run = shop(bound("D", "D", ts(2)), paid("o1", "D", ts(3), item("s1", "100.00")))
    assert run.entries == []
    assert any("self-bind" in r for r in run.reasons())


def test_bind_to_own_downline_refused():
    run = shop(bound("B", "D", ts(2)), paid("o1", "B", ts(3), item("s1", "100.00")))
    assert run.entries == []  # D's chain is C, B, A: B would earn on their own purchase
    assert any("downline bind" in r for r in run.reasons())


def test_joined_loop_refused_whatever_the_arrival_order():
    loop = joined("A", "D", day=5)  # A's parent would become D, whose chain leads back to A
    run = Run(CHAIN + [loop, bound("u", "D", ts(6)), paid("o1", "u", ts(7), item("s1", "100.00"))])
    assert any("loop back" in r for r in run.reasons())
    assert run.net() == {("o1", "s1", "D", 1): D("10.00"), ("o1", "s1", "C", 2): D("5.00"), ("o1", "s1", "B", 3): D("2.00")}
    events = with_ids(CHAIN + [loop, bound("u", "D", ts(6)), paid("o1", "u", ts(7), item("s1", "100.00"))])
    assert Run(list(reversed(events))).net() == run.net()


def test_joined_never_creates_money():
    run = Run(CHAIN)
    assert run.entries == []


def test_late_bind_corrects_with_new_rows():
    # `first`: the bind to B dated day 2 arrives after an order already paid to D (bound day 4)
    run = shop(bound("u", "D", ts(4)), paid("o1", "u", ts(5), item("s1", "100.00")))
    assert run.earned("D") == D("10.00")
    before = len(run.entries)
    run.feed([bound("u", "B", ts(2))])
    new = run.entries[before:]
    assert {(e.beneficiary_id, e.level, e.kind, e.amount) for e in new} == {
        ("D", 1, "reverse", D("-10.00")), ("C", 2, "reverse", D("-5.00")), ("B", 3, "reverse", D("-2.00")),
        ("B", 1, "accrue", D("10.00")), ("A", 2, "accrue", D("5.00"))}
    assert run.net() == {("o1", "s1", "B", 1): D("10.00"), ("o1", "s1", "A", 2): D("5.00")}


def test_late_ban_corrects_only_the_banned_level_from_the_ban_on():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")),
               paid("o2", "u", ts(5), item("s1", "100.00")))
    run.feed([banned("D", ts(4))])  # between the two orders
    assert run.net() == {
        ("o1", "s1", "D", 1): D("10.00"), ("o1", "s1", "C", 2): D("5.00"), ("o1", "s1", "B", 3): D("2.00"),
        ("o2", "s1", "C", 2): D("5.00"), ("o2", "s1", "B", 3): D("2.00")}
    assert [(e.order_id, e.beneficiary_id, e.kind, e.amount) for e in run.entries[-1:]] == [("o2", "D", "reverse", D("-10.00"))]


def test_bind_to_promoter_not_yet_joined_is_parked_until_the_join():
    run = Run([bound("u", "X", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00"))])
    assert run.entries == []
    run.feed([joined("X", day=1)])
    assert run.net() == {("o1", "s1", "X", 1): D("10.00")}


def test_duplicate_event_ids_change_nothing():
    events = with_ids(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")),
                               refunded("o1", "r1", ts(4), amount="10.00"), completed("o1", ts(5))])
    run = Run(events)
    rows = list(run.entries)
    run.feed(events)
    assert run.entries == rows
    assert run.out.duplicates == len(events)


def test_rows_have_deterministic_ids():
    events = with_ids(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00"))])
    assert [e.entry_id for e in Run(events).entries] == [e.entry_id for e in Run(events).entries]
    assert len({e.entry_id for e in Run(events).entries}) == 3


def test_second_payment_of_an_order_is_refused():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")),
               paid("o1", "u", ts(4), item("s1", "500.00")))
    assert run.earned("D") == D("10.00")
    assert any("paid twice" in r and "the earlier one" in r for r in run.reasons())


def test_refund_of_unknown_sku_is_named():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")),
               refunded("o1", "r1", ts(4), items=[("nope", "5.00")]))
    assert run.earned("D") == D("10.00")
    assert any("order o1: sku 'nope' is not in the order" in r for r in run.reasons())


def test_rows_are_dated_by_event_time():
    a = Run(with_ids(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00"))]))
    assert a.entries[0].ts_ms == int(datetime.fromisoformat(ts(3)).timestamp() * 1000)


def test_payment_in_another_currency_is_refused():
    usd = {**paid("o1", "u", ts(3), item("s1", "100.00")), "currency": "USD"}
    run = shop(bound("u", "D", ts(2)), usd)
    assert run.entries == [] and any("currency USD is not the shop's currency CNY" in r for r in run.reasons())


def _moves(run, who):
    """The beneficiary's rows in event-time order (a reconciliation writes its rows by step key)."""
    rows = sorted((e for e in run.entries if e.beneficiary_id == who), key=lambda e: (e.ts_ms, e.amount > 0))
    return [(e.kind, e.status_after, e.amount) for e in rows]


def test_a_review_release_moves_held_money_back_and_it_confirms_later():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")), banned("D", ts(4)),
               reviewed("o1", "release", ts(5)), completed("o1", ts(6)), config={"hold_days": 7})
    assert _moves(run, "D") == [("accrue", "pending", D("10.00")), ("hold", "pending", D("-10.00")),
                                ("hold", "held", D("10.00")), ("release", "held", D("-10.00")),
                                ("release", "pending", D("10.00")), ("confirm", "pending", D("-10.00")),
                                ("confirm", "confirmed", D("10.00"))]
    assert run.by_status("D") == {"confirmed": D("10.00")} and run.earned("D") == D("10.00")


def test_a_release_after_the_confirmation_date_goes_straight_to_confirmed():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")), banned("D", ts(4)),
               completed("o1", ts(5)), reviewed("o1", "release", ts(20)), config={"hold_days": 7})
    assert _moves(run, "D")[-2:] == [("release", "held", D("-10.00")), ("release", "confirmed", D("10.00"))]
    assert run.by_status("D") == {"confirmed": D("10.00")}


def test_a_review_reject_ends_the_held_money_at_exactly_zero_and_other_levels_are_untouched():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "33.33", 3)), banned("D", ts(4)),
               refunded("o1", "r1", ts(5), amount="33.33"), reviewed("o1", "reject", ts(6)), completed("o1", ts(7)),
               config={"hold_days": 0})
    assert run.by_status("D") == {} and run.earned("D") == D("0.00")
    assert _moves(run, "D")[-1] == ("reverse", "held", D("-6.67"))  # 9.999 accrued → 10.00, 3.33 refunded
    assert run.by_status("C") == {"confirmed": D("3.33")}  # 5.00 − 1.67 refunded, confirmed at completion


def test_a_decision_before_anything_is_held_decides_nothing():
    run = shop(bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s1", "100.00")),
               reviewed("o1", "reject", ts(4)), banned("D", ts(5)))
    assert run.by_status("D") == {"held": D("10.00")}
