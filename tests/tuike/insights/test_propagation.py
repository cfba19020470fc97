"""Propagation analytics (tuike/insights/cascade.py, tuike/insights/forecast.py, tuike/insights/hotnodes.py): exact
statistics of a small tree, the same cascades whatever the order records arrive in, a
Galton–Watson forecast recovering a known offspring mean, hot nodes on a small graph, and the
real-data evaluation (tuike/lab/eval_propagation.py) beating its naive baseline."""
from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuike.insights.cascade import CascadeIndex, CascadeStats, NodeStats, build_cascades, first_contacts
from tuike.insights.forecast import Early, fit_growth_ratio, fit_loglinear, galton_watson, observe
from tuike.insights.hotnodes import degree_ranking, hot_nodes, reversed_pagerank

#      r(0)                 x(6)
#     /    \
#   a(1)   b(2)
#   /  \
# a1(3) a2(4)
#        |
#      a21(5)
TREE = [
    ("r", None, 0.0),
    ("a", "r", 1.0),
    ("b", "r", 2.0, False, Decimal("0.30")),
    ("a1", "a", 3.0, True, Decimal("1.10")),
    ("a2", "a", 4.0),
    ("a21", "a2", 5.0, True, Decimal("2.205")),
    ("x", None, 6.0),
]


def snapshot(index: CascadeIndex) -> tuple:
    return (index.all_stats(), [index.node_stats(n) for n in index.nodes()],
            [(n, index.parent_of(n), index.root_of(n)) for n in index.nodes()])


def test_cascade_stats_of_a_small_tree():
    index = build_cascades(TREE)
    assert index.roots() == ["r", "x"]
    assert index.stats("r") == CascadeStats(root="r", size=6, depth=3, breadth=2, conversions=2,
                                            commission=Decimal("3.605"), start=0.0, end=5.0)
    assert index.stats("x") == CascadeStats("x", 1, 0, 1, 0, Decimal(0), 6.0, 6.0)
    assert [index.node_stats(n) for n in ("r", "a", "a2", "a21", "b", "x")] == [
        NodeStats("r", 5, 2), NodeStats("a", 3, 2), NodeStats("a2", 1, 1), NodeStats("a21", 0, 0),
        NodeStats("b", 0, 0), NodeStats("x", 0, 0)]
    assert [m.depth for m in index.members("r")] == [0, 1, 1, 2, 2, 3]
    assert index.root_of("a21") == "r"
    assert index.edges() == [("a", "a1"), ("a", "a2"), ("a2", "a21"), ("r", "a"), ("r", "b")]


def test_commission_sums_exactly():
    index = build_cascades([("r", None, 0, True, Decimal("0.10")), ("c1", "r", 1, True, Decimal("0.20")),
                            ("c2", "r", 2, False, Decimal("19.999"))])
    total = index.stats("r").commission
    assert total == Decimal("20.299") and isinstance(total, Decimal)
    assert str(total) == "20.299"  # no float on the way (0.1 + 0.2 would not be 0.3)


def test_child_before_parent_waits_then_attaches():
    index = CascadeIndex()
    index.add(*TREE[5])  # a21, under a2
    assert index.roots() == ["a21"]  # its parent is unknown: a cascade of its own for now
    index.add(*TREE[4])  # a2, under a
    assert index.roots() == ["a2"] and index.node_stats("a2") == NodeStats("a2", 1, 1)
    for rec in TREE:
        index.add(*rec)  # a21 and a2 again: the same records, no-ops
    assert index.roots() == ["r", "x"]
    assert index.stats("r").size == 6 and index.node_stats("r") == NodeStats("r", 5, 2)


def test_redelivery_is_a_no_op_and_bad_links_are_refused():
    index = build_cascades(TREE)
    before = snapshot(index)
    index.add("a1", "a", 3.0, True, Decimal("1.10"))  # the same record again
    assert snapshot(index) == before
    with pytest.raises(ValueError, match="already recorded"):
        index.add("a1", "b", 3.0)
    with pytest.raises(ValueError, match="own parent"):
        index.add("z", "z", 1.0)
    loop = CascadeIndex()
    loop.add("p", "q", 1.0)
    loop.add("q", "s", 2.0)
    with pytest.raises(ValueError, match="loop"):
        loop.add("s", "p", 3.0)


@settings(max_examples=200, deadline=None)
@given(st.permutations(TREE))
def test_small_tree_is_the_same_in_any_order(records):
    assert snapshot(build_cascades(records)) == snapshot(build_cascades(TREE))


@st.composite
def forests(draw):
    """A random forest: node i's parent is an earlier node, nobody, or an id never recorded."""
    n = draw(st.integers(1, 25))
    records = []
    for i in range(n):
        parent = draw(st.one_of(st.none(), st.just("ghost"), st.integers(0, i - 1).map(str)) if i else st.none())
        records.append((str(i), parent, float(draw(st.integers(0, 9))), draw(st.booleans()),
                        Decimal(draw(st.integers(0, 999))) / 100))
    return records, draw(st.permutations(records))


@settings(max_examples=200, deadline=None)
@given(forests())
def test_random_forests_are_the_same_in_any_order(data):
    records, shuffled = data
    a, b = build_cascades(records), build_cascades(shuffled)
    assert snapshot(a) == snapshot(b)
    # the incremental downstream counts equal a recount from the finished trees
    for root in a.roots():
        members = a.members(root)
        assert sum(1 for _ in members) == a.node_stats(root).reach + 1
        assert sum(m.converted for m in members[1:]) == a.node_stats(root).conversions


def test_first_contacts():
    messages = [("a", "b", 1), ("b", "c", 2), ("c", "a", 3), ("d", "b", 4), ("e", "e", 5), ("c", "f", 6),
                ("g", "h", 0), ("h", "g", 0.5)]
    assert first_contacts(messages) == [
        ("g", None, 0), ("h", "g", 0),  # h→g later: g was already in, reaches nobody
        ("a", None, 1), ("b", "a", 1), ("c", "b", 2),  # c→a: a was in already
        ("d", None, 4),  # d enters as a sender: a root; b was reached before
        ("f", "c", 6),  # e only wrote to itself: never enters
    ]


# ---- forecast ----

def test_observe_keeps_the_early_window():
    index = build_cascades(TREE)
    early = observe(index.members("r"), 4.0)
    assert early == Early(size=5, depth=2, root_children=2, first_reshare=1.0, span=4.0, window=4.0,
                          generations=(1, 2, 2), offspring=(2, 2, 0))
    alone = observe(index.members("r"), 0.5)
    assert (alone.size, alone.depth, alone.first_reshare, alone.offspring) == (1, 0, None, ())


def galton_watson_tree(m: float, seed: int, generations: int = 60, cap: int = 20_000) -> list[tuple]:
    """Poisson(m) offspring; generation g enters at time g."""
    rng = np.random.default_rng(seed)
    records, level, i = [("0", None, 0.0)], ["0"], 1
    for g in range(1, generations + 1):
        nxt = []
        for parent in level:
            for _ in range(rng.poisson(m)):
                records.append((str(i), parent, float(g)))
                nxt.append(str(i))
                i += 1
        level = nxt
        if not level or i > cap:
            break
    return records


def test_galton_watson_recovers_the_offspring_mean():
    estimates = []
    for seed in range(20):
        members = build_cascades(galton_watson_tree(2.0, seed, generations=8)).members("0")
        f = galton_watson(observe(members, 7.5))  # generations 0-7; 0-6 are interior
        if f.k_factor > 0:  # the root had children (survived the first generation)
            estimates.append(f.k_factor)
    assert len(estimates) >= 15
    assert abs(float(np.mean(estimates)) - 2.0) < 0.15


def test_galton_watson_intervals_contain_the_truth_for_most_seeds():
    m, sizes, ks = 0.9, [], []
    for seed in range(100):
        members = build_cascades(galton_watson_tree(m, seed)).members("0")
        f = galton_watson(observe(members, 3.5), level=0.8)  # generations 0-3 seen
        assert f.low <= f.size <= f.high and f.k_low <= f.k_factor <= f.k_high
        sizes.append(f.low <= len(members) <= f.high)
        ks.append(f.k_low <= m <= f.k_high)
    assert np.mean(sizes) >= 0.8  # nominal 80%: the final size, future randomness included
    assert np.mean(ks) >= 0.6  # the delta-method interval of m runs a little narrow on small trees


def early_view(size: int, depth: int = 1, root_children: int = 1, span: float = 3600.0) -> Early:
    return Early(size, depth, root_children, 60.0, span, 7200.0, (1, size - 1), (size - 1,))


def test_loglinear_recovers_an_exact_law_and_clips_at_the_early_size():
    examples = [(early_view(n), round(2 * n ** 0.8 * 1000)) for n in (2, 3, 5, 8, 13, 21, 34)]
    # final = 2000 n^0.8 up to rounding: log final = log 2000 + 0.8 log n
    model = fit_loglinear(examples, features=("log_size",))
    assert model.coef[0] == pytest.approx(math.log(2000), abs=1e-3)
    assert model.coef[1] == pytest.approx(0.8, abs=1e-3)
    f = model.predict(early_view(10))
    assert f.size == pytest.approx(2000 * 10 ** 0.8, rel=1e-3)
    assert f.low <= f.size <= f.high and f.high / f.low < 1.01
    assert f.k_factor == pytest.approx(1 - 1 / f.size)
    shrink = fit_loglinear([(early_view(n), 1) for n in (2, 4)], features=("log_size",))  # final < early
    assert shrink.predict(early_view(9)).size == 9  # never below what is already there


def test_loglinear_chooses_features_by_leave_one_out():
    # final depends on the root's early children only: that feature set must win
    examples = [(early_view(n, root_children=c), round(50 * (1 + c) ** 1.5))
                for n in (3, 6, 9, 12) for c in (1, 2, 4, 8)]
    model = fit_loglinear(examples)
    assert model.features == ("log_size", "log_root_children")
    assert model.loo_mdale < 0.01


def test_growth_ratio_baseline():
    model = fit_growth_ratio([(early_view(2), 6), (early_view(4), 8), (early_view(5), 50)])
    assert model.ratio == pytest.approx(3.0)  # median of 3, 2 and 10
    assert model.predict(early_view(3)).size == pytest.approx(9.0)


# ---- hot nodes ----

#     r          x
#   /   \        |
#  a     b       y
# /|\    |
# a1 a2 a3 b1
GRAPH = [("r", None, 0), ("a", "r", 1), ("b", "r", 2), ("a1", "a", 3), ("a2", "a", 4), ("a3", "a", 5),
         ("b1", "b", 6, True), ("x", None, 7), ("y", "x", 8)]


def test_reversed_pagerank_sends_rank_to_the_sources():
    pr = reversed_pagerank(build_cascades(GRAPH))
    assert sum(pr.values()) == pytest.approx(1.0)
    assert max(pr, key=pr.get) == "r"
    assert pr["a"] > pr["b"] > pr["a1"] and pr["x"] > pr["y"]
    assert pr["a1"] == pytest.approx(pr["y"])  # leaves are alike


def test_hot_nodes_rank_distinct_lines_first():
    ranked = hot_nodes(build_cascades(GRAPH))
    order = [(h.node, h.shadowed_by) for h in ranked]
    # r's line first, then x's; inside r's line b (reach 1 and the one conversion) before a (reach 3)
    assert order[:4] == [("r", None), ("x", None), ("b", "r"), ("a", "r")]
    assert [h.rank for h in ranked] == list(range(1, 10))
    r = ranked[0]
    assert (r.reach, r.conversions) == (6, 1)
    assert r.score == pytest.approx(3.0)  # the largest of each signal
    by_conversions = hot_nodes(build_cascades(GRAPH), weights=(0.0, 1.0, 0.0))
    assert {h.node for h in by_conversions if h.score > 0} == {"r", "b"}


def test_degree_ranking():
    assert degree_ranking(build_cascades(GRAPH)) == ["a", "r", "b", "x", "a1", "a2", "a3", "b1", "y"]


# ---- the real data ----

def test_real_data_evaluation_beats_the_baseline():
    from tuike.lab.eval_propagation import default_path, evaluate, format_report
    try:
        path = default_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    report = evaluate(path, seed=0)  # the whole evaluation: about a second
    mdape, baseline, coverage, hot50, degree50 = report.headline()
    assert mdape < baseline
    assert 0.0 <= coverage <= 1.0 and 0.0 <= degree50 <= hot50 <= 1.0
    assert (report.users, report.cascades, report.evaluated) == (1899, 603, 72)
    assert format_report(report).splitlines()[-1].startswith(f"overall mdape={mdape:.3f} ")
