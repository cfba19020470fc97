"""The shop generator: deterministic, realistic in the ways the engine cares about, valid."""
from __future__ import annotations

import gzip
from collections import Counter

import orjson
import pytest

from schemas.events import EVENT_MODELS, InvalidEvent, validate_event
from tuike.lab.generate import CATALOGUE, generate_shop, write_events

SMALL = dict(promoters=40, customers=400, orders=600)


@pytest.fixture(scope="module")
def shop() -> list:
    return list(generate_shop(11, bad_lines=12, **SMALL))


@pytest.fixture(scope="module")
def good(shop) -> list[dict]:
    return [e for e in shop if isinstance(e, dict)]


def _chain_depths(good: list[dict]) -> dict[str, int]:
    parent = {e["promoter_id"]: e["parent_id"] for e in good if e["type"] == "promoter.joined"}
    depth = {}
    for p in parent:
        d, q = 0, p
        while parent.get(q):
            q, d = parent[q], d + 1
            assert d < 50, "the recruiting network loops"
        depth[p] = d
    return depth


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    write_events(generate_shop(5, bad_lines=3, **SMALL), a)
    write_events(generate_shop(5, bad_lines=3, **SMALL), b)
    write_events(generate_shop(6, bad_lines=3, **SMALL), c)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_gzip_output_is_deterministic_and_readable(tmp_path):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    n = write_events(generate_shop(5, **SMALL), a)
    write_events(generate_shop(5, **SMALL), b)
    assert a.read_bytes() == b.read_bytes()
    lines = gzip.decompress(a.read_bytes()).splitlines()
    assert len(lines) == n
    assert orjson.loads(lines[0])["type"] == "promoter.joined"


def test_every_good_line_validates(good):
    for e in good:
        validate_event(e)  # raises InvalidEvent with the field named


def test_every_event_type_present(good):
    types = Counter(e["type"] for e in good)
    shop_types = set(EVENT_MODELS) - {"order.settled"}  # written by tuike settle, never by a shop
    assert set(types) == shop_types, shop_types - set(types)
    assert 1 <= types["promoter.banned"] <= 2
    n_paid = types["order.paid"]
    assert 0.5 < types["order.completed"] / n_paid < 0.7
    assert 0.02 < types["order.cancelled"] / n_paid < 0.07


def test_network_is_deep_but_mostly_shallow(good):
    depth = _chain_depths(good)
    counts = Counter(depth.values())
    assert counts[0] <= len(depth) * 0.1  # a few top-level promoters
    assert max(depth.values()) == 4  # a chain five promoters long: level 4 exists
    assert counts[3] + counts[4] < len(depth) / 2
    # promoters join before their recruits
    seen = set()
    for e in good:
        if e["type"] == "promoter.joined":
            assert e["parent_id"] is None or e["parent_id"] in seen
            seen.add(e["promoter_id"])


def test_an_order_reaches_a_level4_ancestor(good):
    depth = _chain_depths(good)
    bound = {}
    for e in good:
        if e["type"] == "customer.bound":
            bound.setdefault(e["customer_id"], e["promoter_id"])
    assert any(e["type"] == "order.paid" and depth.get(bound.get(e["customer_id"]), 0) >= 3 for e in good)


def test_the_awkward_cases_are_there(good):
    promoters = {e["promoter_id"]: e["parent_id"] for e in good if e["type"] == "promoter.joined"}
    binds = [e for e in good if e["type"] == "customer.bound"]
    assert any(b["customer_id"] == b["promoter_id"] for b in binds)  # self-bind
    assert any(promoters.get(b["customer_id"]) == b["promoter_id"] for b in binds)  # to own upline
    assert any(promoters.get(b["promoter_id"]) == b["customer_id"] for b in binds)  # to own downline
    assert Counter(b.get("via") for b in binds).keys() >= {"link", "qr", "coupon"}
    per_customer = Counter(b["customer_id"] for b in binds)
    assert any(n > 1 for n in per_customer.values())  # re-binds
    # a refund in the file before its order.paid, and a bind that arrives after a later order
    paid, early = set(), 0
    orders_by_customer: dict[str, list[str]] = {}
    late = 0
    for e in good:
        if e["type"] == "order.paid":
            paid.add(e["order_id"])
            orders_by_customer.setdefault(e["customer_id"], []).append(e["ts"])
        elif e["type"] == "order.refunded" and e["order_id"] not in paid:
            early += 1
        elif e["type"] == "customer.bound" and any(ts > e["ts"] for ts in orders_by_customer.get(e["customer_id"], [])):
            late += 1
    assert early >= 1 and late >= 1
    # duplicate deliveries keep their event_id
    ids = Counter(e["event_id"] for e in good)
    assert ids.most_common(1)[0][1] == 2


def test_orders_and_refunds_look_real(good):
    skus = {sku: cat for sku, cat, _ in CATALOGUE}
    assert len(skus) == 200 and skus["SKU-0001"] and "digital" in skus.values()
    paid = {e["order_id"]: e for e in good if e["type"] == "order.paid"}
    cats = Counter()
    for o in paid.values():
        assert 1 <= len(o["items"]) <= 5
        for it in o["items"]:
            assert skus[it["sku"]] == it["category"] and 1 <= it["qty"] <= 3
            assert it["price"].count(".") == 1 and len(it["price"].split(".")[1]) == 2
            cats[it["category"]] += 1
    assert cats["digital"] and any(it["sku"] == "SKU-0001" for o in paid.values() for it in o["items"])
    assert any("promoter_id" in o for o in paid.values())
    refunded: dict[str, int] = Counter()
    kinds = set()
    for e in good:
        if e["type"] == "order.refunded":
            kinds.add("items" if "items" in e else "amount")
            cents = sum(int(i["amount"].replace(".", "")) for i in e["items"]) if "items" in e else int(e["amount"].replace(".", ""))
            refunded[e["order_id"]] += cents
    assert kinds == {"items", "amount"}
    full = partial = 0
    for oid, cents in refunded.items():
        total = sum(int(i["price"].replace(".", "")) * i["qty"] for i in paid[oid]["items"])
        assert 0 < cents <= total
        full += cents == total
        partial += cents < total
    assert full and partial


def test_double_11_burst(good):
    per_day = Counter(e["ts"][:10] for e in good if e["type"] == "order.paid")
    normal = sorted(per_day.values())[len(per_day) // 2]
    assert per_day["2026-11-11"] > 3 * normal
    assert all(e["ts"].endswith("+08:00") for e in good)


def test_arrival_order_is_shuffled_but_roughly_in_time(good):
    inversions = sum(1 for a, b in zip(good, good[1:]) if a["ts"] > b["ts"])
    assert 0 < inversions < len(good) * 0.3


def test_bad_lines_are_mixed_in_and_all_rejected(shop):
    bad = [e for e in shop if isinstance(e, str)]
    assert len(bad) == 12
    reasons = set()
    for line in bad:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            reasons.add("json")
            continue
        with pytest.raises(InvalidEvent) as exc:
            validate_event(obj)
        reasons.add(str(exc.value).split(":")[0])
    assert "json" in reasons and len(reasons) >= 4
    assert isinstance(shop[0], dict) and any(isinstance(e, str) for e in shop[len(shop) // 4:])


def test_events_target_is_exact():
    items = list(generate_shop(3, events=5_000, bad_lines=2))
    assert sum(isinstance(e, dict) for e in items) == 5_000
    assert sum(isinstance(e, str) for e in items) == 2
