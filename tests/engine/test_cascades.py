"""Share cascades in the engine (engine/propagation.py): exact statistics of a small cascade, the
same rows whatever the order clicks arrive in, and, on a generated shop in chDB, cascade_stats
equal to a recomputation straight from the clicks and orders tables."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from sinks import open_ledger
from sinks import Batch
from tuike.insights.shares import ForecastError, forecast_all, forecast_cascade, hottest
from tests.support.shop import Run, bound, click, item, joined, paid, ts, with_ids
from tuike.lab.generate import generate_shop, write_events
from schemas.records import read_records
from topologies.embedded import run_events
from engine.config import parse_config


def share(cid: str, parent: str | None, at: str, promoter: str = "p1", campaign: str = "c") -> dict:
    ev = {**click(promoter, None, at, cid), "campaign": campaign, "visitor_id": f"v-{cid}"}
    ev.pop("customer_id", None)
    if parent:
        ev["parent_click_id"] = parent
    return ev


EVENTS = with_ids([
    joined("p1"), share("r", None, ts(1, 10)), share("a", "r", ts(1, 11)), share("b", "r", ts(1, 12)),
    share("a1", "a", ts(2, 9)), share("a2", "a", ts(2, 10)), share("a21", "a2", ts(3, 8)),
    share("x", None, ts(4, 8)),  # another cascade
    bound("c1", "p1", ts(2, 11)), {**paid("o1", "c1", ts(2, 12), item("s", "80.00")), "click_id": "a1"},
])


def latest(run: Run) -> tuple[dict, dict]:
    """The latest cascade_stats row per root and every cascade_nodes row, from the engine's facts."""
    stats: dict = {}
    nodes: dict = {}
    for table, row in run.out.facts:
        if table == "cascade_stats" and row["version"] >= stats.get(row["root_id"], {}).get("version", -1):
            stats[row["root_id"]] = row
        elif table == "cascade_nodes":
            nodes[row["click_id"]] = (row["root_id"], row["parent_click_id"], row["depth"])
    return stats, nodes


def test_a_small_cascade_has_exact_statistics():
    stats, nodes = latest(Run(EVENTS))
    r = stats["r"]
    # r ── a ── a1 (converted: o1, 80.00)
    #  │    └── a2 ── a21
    #  └── b
    assert (r["reach"], r["depth"], r["breadth"], r["conversions"], r["gmv"]) == (6, 3, 2, 1, Decimal("80.00"))
    assert (r["first_ts"].isoformat(), r["last_ts"].isoformat()) == ("2026-11-01T02:00:00+00:00",
                                                                      "2026-11-03T00:00:00+00:00")
    assert (stats["x"]["reach"], stats["x"]["depth"], stats["x"]["conversions"]) == (1, 0, 0)
    assert nodes["a21"] == ("r", "a2", 3) and nodes["b"] == ("r", "r", 1) and nodes["x"] == ("x", "", 0)


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(EVENTS))
def test_any_arrival_order_gives_the_same_cascades(order):
    want_stats, want_nodes = latest(Run(EVENTS))
    stats, nodes = latest(Run(list(order)))
    assert nodes == want_nodes
    assert stats == want_stats


def test_a_click_whose_parent_never_arrives_stays_unplaced_and_a_redelivery_changes_nothing():
    run = Run(EVENTS + [share("orphan", "missing", ts(5))] + EVENTS[1:4])
    stats, nodes = latest(run)
    assert "orphan" not in nodes and stats["r"]["reach"] == 6
    assert sum(1 for t, _ in run.out.facts if t == "cascade_nodes") == 7  # each of the 7 placed clicks once


def ancestors(parent: dict, click: str) -> list:
    chain, node = [], parent.get(click)
    while node and node not in chain and len(chain) < 100:
        chain.append(node)
        node = parent.get(node)
    return chain


def recompute(ledger) -> set:
    """Cascades straight from the clicks and orders tables: roots, depths, reach, breadth, conversions."""
    parent = {c: p for c, p in ledger.query("SELECT click_id, parent_click_id FROM clicks").rows}
    root_of: dict[str, tuple[str, int] | None] = {}

    def place(c: str) -> tuple[str, int] | None:
        if c in root_of:
            return root_of[c]
        chain, node = [], c
        while True:
            if node not in parent:
                found = None
                break
            if node in root_of:
                found = root_of[node]
                break
            if node in chain:
                found = None  # a loop
                break
            chain.append(node)
            p = parent[node]
            if not p or p == node:
                found = (node, -1)
                break
            node = p
        for i, n in enumerate(reversed(chain)):
            root_of[n] = None if found is None else (found[0], found[1] + 1 + i)
        return root_of[c]

    members: dict[str, list[int]] = {}
    for c in parent:
        placed = place(c)
        if placed:
            members.setdefault(placed[0], []).append(placed[1])
    conv: dict[str, list] = {}
    for order, click_id, amount in ledger.query("SELECT order_id, click_id, paid_amount FROM orders "
                                                "WHERE click_id != ''").rows:
        placed = root_of.get(click_id)
        if placed:
            conv.setdefault(placed[0], []).append(Decimal(amount))
    out = set()
    for root, depths in members.items():
        per = {d: depths.count(d) for d in set(depths)}
        gmv = sum(conv.get(root, []), Decimal("0.00"))
        out.add((root, len(depths), max(depths), max(per.values()), len(conv.get(root, [])), gmv))
    return out


def test_cascade_stats_in_clickhouse_equal_a_recomputation_from_the_clicks(tmp_path):
    shop = tmp_path / "shop.jsonl"
    write_events(generate_shop(8, promoters=60, customers=500, orders=1200), shop)
    ledger = open_ledger(None, tmp_path)
    try:
        run_events(read_records(shop), config=parse_config({}), data_dir=tmp_path, ledger=ledger)
        stored = {(r, int(n), int(d), int(b), int(c), Decimal(g)) for r, n, d, b, c, g in ledger.query(
            "SELECT root_id, reach, depth, breadth, conversions, gmv FROM cascade_stats").rows}
        assert stored == recompute(ledger)
        assert max(s[2] for s in stored) >= 2 and sum(s[4] for s in stored) > 0  # real shares and conversions
        hot = hottest(ledger, top=10)
        assert len(hot) == 10 and [h.score for h in hot] == sorted((h.score for h in hot), reverse=True)
        parent = dict(ledger.query("SELECT click_id, parent_click_id FROM clicks").rows)
        for h in hot:  # reach = the clicks downstream of it, straight from the clicks table
            below = sum(1 for c in parent if c != h.click_id and h.click_id in ancestors(parent, c))
            assert h.reach == below, h
        reach = {r: n for r, n, *_ in stored}
        biggest = max(stored, key=lambda r: (r[1], r[0]))[0]
        fc = forecast_cascade(ledger, biggest, window_hours=1)
        assert fc.size_now == reach[biggest] and fc.early.size <= fc.forecast.size and fc.forecast.low <= fc.forecast.high
        with pytest.raises(ForecastError, match="not the root of a cascade"):
            forecast_cascade(ledger, "no-such-click")
        rows = forecast_all(ledger, 24, datetime(2026, 12, 1, tzinfo=timezone.utc))
        ledger.write(Batch([], {"cascade_forecasts": rows}, []))
        view = ledger.query("SELECT root_id, early_size, size, low, high FROM cascade_forecasts").rows
        assert len(view) == len(rows) > 0
        assert all(e <= lo <= sz <= hi for _r, e, sz, lo, hi in view)
    finally:
        ledger.close()


def test_the_eval_commands_print_their_summary_line_and_refuse_a_missing_file(capsys):
    from tuike.cli import main

    assert main(["eval", "propagation"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    figures = dict(kv.split("=") for kv in last.split()[1:])
    assert last.startswith("overall mdape=") and float(figures["mdape"]) < float(figures["baseline_mdape"])
    assert main(["eval", "recommend", "--path", "/no/such/file.csv"]) == 2
    assert "no such file" in capsys.readouterr().err
