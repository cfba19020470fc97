"""Promoter chains versioned by event time, and loops cut the same way whatever arrives first."""
from __future__ import annotations

from engine.chain import ChainView, walk_up
from tests.support.shop import D, Run, bound, item, joined, paid, ts, with_ids


def facts(*joins):
    table = {}
    for pid, parent, t, eid in joins:
        table.setdefault(pid, {"joins": [], "bans": [], "v": 0})["joins"].append([t, eid, parent])
    for f in table.values():
        f["joins"].sort()
        f["v"] = len(f["joins"])
    return lambda: ChainView(table.get)


def test_walk_follows_parents_at_the_given_time():
    view = facts(("A", None, 0, "a"), ("B", "A", 0, "b"), ("C", "B", 0, "c"), ("C", "A", 100, "c2"))
    assert walk_up("C", 50, view()).nodes == ["C", "B", "A"]
    assert walk_up("C", 100, view()).nodes == ["C", "A"]
    assert walk_up("C", -5, view()).nodes == ["C"]  # before their first join a promoter has no parent


def test_unknown_parent_stops_the_walk_and_is_named():
    walk = walk_up("C", 0, facts(("C", "X", 0, "c"))())
    assert walk.nodes == ["C", "X"] and walk.unknown == "X"


def test_the_join_that_closes_a_loop_at_its_time_is_refused():
    view = facts(("A", "C", 30, "a"), ("B", "A", 10, "b"), ("C", "B", 20, "c"))
    assert walk_up("B", 40, view()).nodes == ["B", "A"]  # A's join (ts 30) closed the loop: A stays a root
    assert walk_up("C", 40, view()).nodes == ["C", "B", "A"]
    v = view()
    assert not v.valid("A", [30, "a", "C"]) and v.valid("C", [20, "c", "B"])


def test_rejoin_moves_a_promoter_from_its_event_time_on():
    events = with_ids([joined("A"), joined("B"), joined("P", "A"), bound("u", "P", ts(2)),
                       paid("o1", "u", ts(5), item("s", "100.00")),
                       {**joined("P", "B"), "ts": ts(10)},
                       paid("o2", "u", ts(12), item("s", "100.00"))])
    net = Run(events).net()
    assert net[("o1", "s", "A", 2)] == D("5.00") and net[("o2", "s", "B", 2)] == D("5.00")
    assert ("o2", "s", "A", 2) not in net
    assert Run(list(reversed(events))).net() == net
