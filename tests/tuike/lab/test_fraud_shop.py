"""The labelled fraud shop: valid, deterministic, every pattern present at a realistic share."""
from __future__ import annotations

from collections import Counter
from datetime import datetime

import orjson
import pytest

from schemas.events import validate_event
from tuike.lab.fraud_shop import PATTERNS, labelled_shop
from tuike.lab.generate import generate_shop

SMALL = dict(orders=2000, promoters=100, customers=1400)


@pytest.fixture(scope="module")
def shop():
    return labelled_shop(3)


def _is_fraud(ev: dict) -> bool:
    return ev["event_id"].startswith("f")


def _total(order: dict) -> int:
    return sum(int(it["price"].replace(".", "")) * it["qty"] for it in order["items"])


def test_every_event_validates(shop):
    for ev in shop.events:
        validate_event(ev)
    assert len({ev["event_id"] for ev in shop.events}) == len(shop.events)


def test_same_seed_same_bytes():
    a, b, c = labelled_shop(5, **SMALL), labelled_shop(5, **SMALL), labelled_shop(6, **SMALL)
    assert orjson.dumps(a.events) == orjson.dumps(b.events) and a.labels == b.labels
    assert orjson.dumps(a.events) != orjson.dumps(c.events)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_share_and_patterns(seed):
    s = labelled_shop(seed)
    n_orders = sum(ev["type"] == "order.paid" for ev in s.events)
    assert s.fraud_share == pytest.approx(len(s.labels) / n_orders)
    assert 0.01 <= s.fraud_share <= 0.05
    per_pattern = Counter(s.labels.values())
    assert set(per_pattern) == set(PATTERNS) and min(per_pattern.values()) >= 8


def test_labels_point_at_fraud_orders_in_the_honest_weeks(shop):
    paid = {ev["order_id"]: ev for ev in shop.events if ev["type"] == "order.paid"}
    assert set(shop.labels) <= set(paid)
    assert {oid for oid, ev in paid.items() if _is_fraud(ev)} == set(shop.labels)
    honest_ts = [ev["ts"] for ev in paid.values() if not _is_fraud(ev)]
    assert all(min(honest_ts) <= paid[oid]["ts"] <= max(honest_ts) for oid in shop.labels)


def test_fraud_ids_do_not_collide_with_honest_ones(shop):
    keys = ("promoter_id", "customer_id", "order_id", "click_id", "refund_id", "visitor_id", "device_id")
    honest = {ev[k] for ev in shop.events if not _is_fraud(ev) for k in keys if k in ev and k != "promoter_id"}
    honest |= {ev["promoter_id"] for ev in shop.events if ev["type"] == "promoter.joined" and not _is_fraud(ev)}
    for ev in shop.events:
        if _is_fraud(ev):
            own = {ev[k] for k in ("customer_id", "order_id", "click_id", "refund_id", "visitor_id", "device_id") if k in ev}
            if ev["type"] == "promoter.joined":
                own.add(ev["promoter_id"])
            assert not own & honest, ev


def test_arrival_order_is_roughly_event_time(shop):
    inversions = sum(a["ts"] > b["ts"] for a, b in zip(shop.events, shop.events[1:]))
    assert inversions < len(shop.events) * 0.3
    joined = set()
    for ev in shop.events:  # the injected promoters join before they are anyone's parent
        if ev["type"] == "promoter.joined":
            assert ev["parent_id"] is None or ev["parent_id"] in joined
            joined.add(ev["promoter_id"])


def test_the_patterns_look_like_themselves(shop):
    ev_by = {ev.get("click_id"): ev for ev in shop.events if ev["type"] == "click"}
    promoter_device = {ev["promoter_id"]: ev["device_id"] for ev in shop.events if ev["type"] == "promoter.joined"}
    bound = {ev["customer_id"]: ev for ev in shop.events if ev["type"] == "customer.bound"}
    refunded = {ev["order_id"]: ev for ev in shop.events if ev["type"] == "order.refunded"}
    paid = {ev["order_id"]: ev for ev in shop.events if ev["type"] == "order.paid"}
    secs = lambda ts: datetime.fromisoformat(ts).timestamp()  # noqa: E731
    for oid, pattern in shop.labels.items():
        order = paid[oid]
        promoter = bound[order["customer_id"]]["promoter_id"]
        click = ev_by[bound[order["customer_id"]]["click_id"]]
        if pattern == "self_purchase":
            assert click["ip"] == order["ip"]
        elif pattern == "refund_abuse":
            assert refunded[oid]["amount"] == f"{_total(order) // 100}.{_total(order) % 100:02d}"
        elif pattern == "fake_orders":
            assert 3 <= secs(order["ts"]) - secs(click["ts"]) <= 25 and order["click_id"] == click["click_id"]
        elif pattern == "device_farm":
            assert 300 <= secs(order["ts"]) - secs(click["ts"]) <= 5400 and order["device_id"] == click["device_id"]
        assert promoter.startswith("FP") and click["promoter_id"] == promoter
    self_orders = [o for o, p in shop.labels.items() if p == "self_purchase"]
    own_device = sum(paid[o]["device_id"] == promoter_device[bound[paid[o]["customer_id"]]["promoter_id"]] for o in self_orders)
    assert 0.3 < own_device / len(self_orders) < 0.9
    bots = [ev for ev in shop.events if ev["type"] == "click" and ev.get("user_agent", "curl").split("/")[0]
            in ("curl", "python-requests", "okhttp")]
    assert len(bots) > 100 and not any("customer_id" in ev for ev in bots)
    fake_totals = sorted(_total(paid[o]) for o, p in shop.labels.items() if p == "fake_orders")
    honest_totals = sorted(_total(o) for o in paid.values() if not _is_fraud(o))
    assert fake_totals[len(fake_totals) // 2] > honest_totals[int(len(honest_totals) * 0.9)]


def test_honest_part_has_no_orders_from_a_promoters_device():
    events = list(generate_shop(3, bad_lines=0, duplicates=0, reviews=False, fraud_ring=False, **SMALL))
    devices = {ev["device_id"]: ev["promoter_id"] for ev in events if ev["type"] == "promoter.joined"}
    promoters = set(devices.values())
    # a promoter buying for themselves on their own phone is not fraud; someone else on it would be
    assert not [ev for ev in events if ev["type"] == "order.paid" and ev["device_id"] in devices
                and ev["customer_id"] not in promoters]
    with_ring = list(generate_shop(3, bad_lines=0, duplicates=0, reviews=False, **SMALL))
    assert any(ev["type"] == "order.paid" and ev["device_id"] in devices and ev["customer_id"] not in promoters
               for ev in with_ring)
