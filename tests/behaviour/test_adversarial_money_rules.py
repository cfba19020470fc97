"""Review tests: adversarial cases against contract §1–§4.

Section 1 holds the bugs a review found, fixed since; Section 2 holds tricky cases that pass today and
are worth keeping as regression guards.
"""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from engine.lifecycle import parse_step_key
from schemas.events import InvalidEvent, validate_event

from tests.support.shop import (D, Run, banned, bound, cancelled, click, completed, item, joined, paid, refunded, ts,
                        with_ids)

CHAIN = [joined("A"), joined("B", "A"), joined("C", "B"), joined("D", "C")]  # D → C → B → A


def at(day, event, hour=12):
    """``event`` re-dated to ``ts(day, hour)`` (joined() only takes a day, at noon)."""
    return {**event, "ts": ts(day, hour)}


def both_orders(first: list[dict], second: list[dict], config=None):
    """The net money of ``first + second`` and of ``second + first`` (ids given once)."""
    first, second = with_ids(first), with_ids(second)
    return Run(first + second, config).net(), Run(second + first, config).net()


# ---------------------------------------------------------------------------------------------
# Section 1: bugs found in review (fixed)
# ---------------------------------------------------------------------------------------------

def test_campaign_multiplier_below_one_applies():
    """§2 campaigns multiply the rates (0.5 allowed by config check); a 0.5 campaign must halve 10/5/2, engine pays full."""
    config = {"commission": {"campaigns": [{"id": "clearance", "from": "2026-11-01T00:00:00+08:00",
                                            "to": "2026-11-30T00:00:00+08:00", "multiplier": "0.5"}]}}
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s", "100.00"))], config)
    assert run.net() == {("o1", "s", "D", 1): D("5.00"), ("o1", "s", "C", 2): D("2.50"), ("o1", "s", "B", 3): D("1.00")}


def test_refused_second_payment_by_another_customer_moves_no_money():
    """A refused (dead-lettered) second order.paid must change nothing; its customer's late bind re-routes o1 to P2."""
    run = Run([joined("P1"), joined("P2"), bound("u", "P1", ts(2)),
               paid("o1", "u", ts(3), item("s", "100.00")),
               paid("o1", "v", ts(4), item("s", "100.00")),   # refused: already paid by u
               bound("v", "P2", ts(2))])                       # v's bind: must not touch u's order
    assert any("paid twice" in r for r in run.reasons())
    assert run.net() == {("o1", "s", "P1", 1): D("10.00")}  # actual: {P2: 10.00}


def test_ban_holds_the_banned_promoters_unsettled_commission():
    """§1.1 promoter.banned: 'their unsettled commission is held'; D's 10.00 from before the ban ends up confirmed instead."""
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s", "100.00")),
                       banned("D", ts(4)), completed("o1", ts(5))], {"hold_days": 7})
    assert run.by_status("D") == {"held": D("10.00")}  # actual: {"confirmed": 10.00}
    assert run.by_status("C") == {"confirmed": D("5.00")}  # the other levels are unaffected


def test_refused_loop_join_keeps_the_previous_parent():
    """§2 a looping promoter.joined is refused, so A keeps parent X: X must earn level 3 (2.00); engine makes A a root."""
    run = Run([joined("X"), joined("A", "X"), joined("B", "A"), joined("C", "B"), joined("D", "C"),
               at(5, joined("A", "D")),   # closes A → D → C → B → A: refused
               bound("u", "B", ts(6)), paid("o1", "u", ts(7), item("s", "100.00"))])
    assert any("loop back" in r for r in run.reasons())
    assert run.net() == {("o1", "s", "B", 1): D("10.00"), ("o1", "s", "A", 2): D("5.00"), ("o1", "s", "X", 3): D("2.00")}


def test_chain_change_behind_a_cut_loop_is_arrival_order_independent():
    """§1.2 same events, any order, same net: C's re-join arriving after the order leaves D's level 3 (2.00) unpaid."""
    base = [joined("A"), joined("B", "A"), joined("C", "B"), joined("D", "C"), joined("X"),
            at(5, joined("A", "D")),        # loop at day 5: A's join is cut
            bound("u", "B", ts(2))]
    order = [paid("o1", "u", ts(7), item("s", "100.00"))]
    rejoin = [at(6, joined("C", "X"))]      # from day 6 the loop is gone: B → A → D → C → X
    early, late = both_orders(base + rejoin, order)
    assert early == late  # early: B 10, A 5, D 2; late: B 10, A 5


def test_a_refused_join_never_takes_effect_later():
    """§2 a join that would loop is refused (dead-lettered); once B moves away, A's refused parent B earns 5.00 on A's sales."""
    run = Run([joined("A"), joined("B", "A"),
               at(5, joined("A", "B")),           # loop at day 5: refused
               at(6, joined("B")),                # B becomes top-level
               bound("u", "A", ts(6)), paid("o1", "u", ts(7), item("s", "100.00"))])
    assert any("loop back" in r for r in run.reasons())
    assert run.net() == {("o1", "s", "A", 1): D("10.00")}  # actual: also ("o1", "s", "B", 2): 5.00


def test_refund_id_seen_twice_is_arrival_order_independent():
    """§1.2 same events, any order, same net: two deliveries of refund r1 (new event_id) give 9.00 or 7.00 for D."""
    base = with_ids(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s", "100.00"))])
    a, b = with_ids([refunded("o1", "r1", ts(4), amount="10.00")]), with_ids([refunded("o1", "r1", ts(5), amount="30.00")])
    ab, ba = Run(base + a + b).net(), Run(base + b + a).net()
    assert ab == ba  # a first: D 9.00 / C 4.50 / B 1.80; b first: D 7.00 / C 3.50 / B 1.40


def test_order_fully_refunded_in_two_steps_leaves_zero_commission():
    """§3 a full refund leaves exactly zero: a (50) refunded per item, then the remaining 50 at order level; b keeps 2.50/1.25/0.50."""
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("a", "50.00"), item("b", "50.00")),
                       refunded("o1", "r1", ts(4), items=[("a", "50.00")]),
                       refunded("o1", "r2", ts(5), amount="50.00")])   # the buyer now has all 100.00 back
    assert run.net() == {}


@pytest.mark.parametrize("customer, explicit", [("D", "D"), ("B", "D")])
def test_explicit_promoter_never_pays_the_customer_for_their_own_purchase(customer, explicit):
    """§2 no promoter is paid for their own purchase; D buying with promoter_id=D earns 10.00 (B via downline D: 2.00)."""
    run = Run(CHAIN + [paid("o1", customer, ts(3), item("s", "100.00"), promoter=explicit)])
    assert customer not in {who for (_o, _s, who, _l) in run.net()}


def test_customer_never_earns_on_own_purchase_after_a_rejoin():
    """§2 the downline rule exists so no one is paid for their own purchase; C earns level 2 (5.00) on C's own order."""
    run = Run([joined("C"), joined("P"), bound("C", "P", ts(2)),
               at(5, joined("P", "C")),           # P re-joins under the customer C
               paid("o1", "C", ts(6), item("s", "100.00"))])
    assert "C" not in {who for (_o, _s, who, _l) in run.net()}  # actual: ("o1", "s", "C", 2): 5.00


@pytest.mark.parametrize("sku, eid", [("a\x1fb", "e-paid"), ("s", "e\x1fpaid")])
def test_separator_in_ids_does_not_crash_a_correction(sku, eid):
    """§1 ids are any 1–200 char strings and processing goes on; a late bind on such an order raises ValueError."""
    run = Run(CHAIN + [bound("u", "D", ts(4)), {**paid("o1", "u", ts(5), item(sku, "100.00")), "event_id": eid}])
    run.feed([bound("u", "B", ts(2))])   # late bind: D's rows are reversed
    assert run.net() == {("o1", sku, "B", 1): D("10.00"), ("o1", sku, "A", 2): D("5.00")}


def test_huge_line_is_refused_by_validation_and_processing_goes_on():
    """§1 an event is processed or dead-lettered; a line too large for the ledger is refused, naming it."""
    with pytest.raises(InvalidEvent, match=r"items\[0\]: .*price × qty"):
        validate_event(with_ids([paid("o1", "u", ts(3), item("s", "9999999999999.99", qty=10**6))])[0])
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o2", "u", ts(3), item("s", "9999999999999.99"))])
    assert run.net()[("o2", "s", "D", 1)] == D("1000000000000.00")


def test_refunds_past_the_paid_amount_in_total_are_named():
    """design §Refunds: amounts past the paid amount are named in dead_letters; 30 + 30 of a 50.00 item names nothing."""
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s", "50.00")),
                       refunded("o1", "r1", ts(4), items=[("s", "30.00")]),
                       refunded("o1", "r2", ts(5), items=[("s", "30.00")])])
    assert run.net() == {}
    assert any("r2" in r and "exceeds" in r for r in run.reasons())


def test_refunds_at_equal_ts_are_ordered_by_refund_id():
    """design §Refunds: order (ts, refund_id): r-a (first) reverses 60% = 6.00, r-b the rest 4.00; engine swaps them."""
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s", "100.00")),
                       {**refunded("o1", "r-a", ts(4), items=[("s", "60.00")]), "event_id": "z2"},
                       {**refunded("o1", "r-b", ts(4), items=[("s", "60.00")]), "event_id": "z1"}])
    steps = run.engine.store.tables["orders"]["o1"]["steps"]   # step key: [sku, who, level, kind, cause, bucket]
    by_refund = {parse_step_key(k)[4]: D(v[0]) for k, v in steps.items() if parse_step_key(k)[:4] == ["s", "D", 1, "reverse"]}
    assert by_refund == {"z2": D("-6.00"), "z1": D("-4.00")}  # actual: z2 (r-a) -4.00, z1 (r-b) -6.00


# ---------------------------------------------------------------------------------------------
# Section 2: tricky cases that pass today (regression guards)
# ---------------------------------------------------------------------------------------------

def test_every_event_of_an_order_in_reverse_arrival_gives_same_net_and_status():
    """§1.2: completed/refund/cancel before paid, any order, same net and same status buckets."""
    events = with_ids(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("a", "99.99", 3), item("b", "0.01")),
                               refunded("o1", "r1", ts(4), amount="33.33"), completed("o1", ts(5)),
                               refunded("o1", "r2", ts(12), items=[("a", "100.00")]),   # exactly at confirmation
                               refunded("o1", "r3", ts(13), items=[("a", "999.00")])])  # past paid: capped
    fwd, rev = Run(events), Run(list(reversed(events)))
    assert fwd.net() == rev.net()
    for who in "DCB":
        assert fwd.by_status(who) == rev.by_status(who)
    assert fwd.net() == {}


def test_same_refund_delivered_with_a_new_event_id_counts_once():
    """A refund retried with a new event_id but the same refund_id reverses once."""
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s", "100.00")),
                       refunded("o1", "r1", ts(4), amount="10.00"), refunded("o1", "r1", ts(4), amount="10.00")])
    assert run.net()[("o1", "s", "D", 1)] == D("9.00")
    assert run.out.duplicates == 1


def test_zero_price_items_and_zero_refunds_pay_and_reverse_nothing():
    """price 0.00 (even under a fixed rule) accrues 0 and is capped to 0; a 0.00 refund changes nothing."""
    config = {"commission": {"rules": [{"id": "fx", "when": {"sku": "f"}, "fixed": ["5.00", "2.00"]}]}}
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("f", "0.00", 7), item("g", "10.00")),
                       refunded("o1", "r1", ts(4), items=[("f", "0.00"), ("g", "0.00")]),
                       refunded("o1", "r2", ts(5), amount="5.00")], config)
    assert run.net() == {("o1", "g", "D", 1): D("0.50"), ("o1", "g", "C", 2): D("0.25"), ("o1", "g", "B", 3): D("0.10")}


def test_rounding_cap_trims_a_cent_on_tiny_items():
    """§2 payout cap never exceeded even when half-up rounding of each level would pass it."""
    config = {"commission": {"levels": ["0.15", "0.10", "0.05"]}}
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s", "0.15"), item("t", "0.05"))], config)
    per_item: dict = defaultdict(Decimal)
    for (_o, sku, _w, _l), v in run.net().items():
        per_item[sku] += v
    assert per_item["s"] <= D("0.045") and per_item["t"] <= D("0.015")


def test_last_click_to_a_promoter_who_joins_late_any_order():
    """last_click: a click to a not-yet-joined promoter counts once they join, whatever arrives first."""
    config = {"attribution": "last_click"}
    events = with_ids([joined("P1"), click("P1", "u", ts(2)), click("X", "u", ts(3)),
                       paid("o1", "u", ts(4), item("s", "100.00")), joined("X", day=1)])
    assert Run(events, config).net() == Run(list(reversed(events)), config).net() == {("o1", "s", "X", 1): D("10.00")}


def test_new_customer_only_with_an_earlier_order_arriving_late():
    """new_customer_only: an earlier order arriving after a bind makes that bind void, in any arrival order."""
    config = {"binding": {"mode": "new_customer_only"}}
    events = with_ids([joined("P1"), joined("P2"), bound("u", "P1", ts(3)),
                       paid("o2", "u", ts(5), item("s", "100.00")),
                       paid("o1", "u", ts(2), item("s", "100.00"), promoter="P2")])
    assert Run(events, config).net() == Run(list(reversed(events)), config).net() == {("o1", "s", "P2", 1): D("10.00")}


def test_late_ban_and_late_rejoin_any_order():
    """A re-join (day 6) and a ban of C (day 4) arriving after the orders: o1 (day 3) keeps C, o2 (day 8) goes D → Y."""
    events = with_ids(CHAIN + [joined("Y"), bound("u", "D", ts(2)),
                               paid("o1", "u", ts(3), item("s", "100.00")), paid("o2", "u", ts(8), item("s", "100.00")),
                               at(6, joined("D", "Y")), banned("C", ts(4))])
    fwd, rev = Run(events).net(), Run(list(reversed(events))).net()
    assert fwd == rev == {("o1", "s", "D", 1): D("10.00"), ("o1", "s", "C", 2): D("5.00"), ("o1", "s", "B", 3): D("2.00"),
                          ("o2", "s", "D", 1): D("10.00"), ("o2", "s", "Y", 2): D("5.00")}


def test_unusual_but_separator_free_ids():
    """ids with '|', non-ASCII and spaces work and give deterministic entry ids."""
    ids = {"P": "推客|1", "u": "顾客 ü", "o": "单|001"}
    events = with_ids([joined(ids["P"]), bound(ids["u"], ids["P"], ts(2)), paid(ids["o"], ids["u"], ts(3), item("商品|x", "100.00"))])
    a, b = Run(events), Run(events)
    assert a.net() == {(ids["o"], "商品|x", ids["P"], 1): D("10.00")}
    assert [e.entry_id for e in a.entries] == [e.entry_id for e in b.entries]


def test_orders_with_identical_lines_do_not_share_state_lists():
    """State values of two orders with identical lines must be distinct objects (no aliasing across keys)."""
    run = Run(CHAIN + [bound("u", "D", ts(2)), paid("o1", "u", ts(3), item("s", "100.00")),
                       paid("o2", "u", ts(3), item("s", "100.00"))])
    orders = run.engine.store.tables["orders"]
    t1, t2 = orders["o1"]["terms"]["s"], orders["o2"]["terms"]["s"]
    assert t1 == t2 and t1 is not t2 and all(x is not y for x, y in zip(t1, t2))
    t1[0][1] = "999.00"   # corrupting one order's state must not change the other
    assert orders["o2"]["terms"]["s"][0][1] == "10.00"


def test_binding_exactly_at_valid_days_in_override_mode():
    """override + valid_days: the latest bind holds until exactly valid_days after it, then nothing."""
    config = {"binding": {"mode": "override", "valid_days": 2}}
    run = Run([joined("P1"), joined("P2"), bound("u", "P1", ts(1)), bound("u", "P2", ts(2)),
               paid("o1", "u", ts(4, 11, 59, 59), item("s", "10.00")),
               paid("o2", "u", ts(4, 12), item("s", "10.00"))], config)
    assert run.net() == {("o1", "s", "P2", 1): D("1.00")}


def test_cancel_before_paid_then_paid_reverses_everything():
    """A cancel that arrives before its payment leaves zero when the payment comes."""
    run = Run(CHAIN + [bound("u", "D", ts(2)), cancelled("o1", ts(4)), completed("o1", ts(5)),
                       paid("o1", "u", ts(3), item("s", "100.00"))])
    assert run.net() == {} and run.by_status() == {} and run.out.parked == 0
