"""`tuike eval recommend`: a time-split evaluation of the material recommender
(:mod:`tuike.insights.recommend`) on real retail orders, and `recommend_for_promoter`, what
`tuike recommend --promoter P` calls.

Data: ``orders/uci_online_retail_30k_sample.csv`` of the project's shared real data
(``../shared/realdata/SOURCES.md``): 30,000 random rows of the UCI "Online Retail" data set
(Daqing Chen, 2012; CC BY 4.0), via linumolk/Customer-Segmentation-RFM-Analysis-using-SQL-and-
Power-BI @ e3e33a131adc5b74947943f5fa164cb5833766a5 : OnlineRetail.csv.

Protocol:

- users are CustomerIDs; rows without one, and cancellations (InvoiceNo "C…" or Quantity ≤ 0),
  are dropped; an interaction is (customer, StockCode, Quantity);
- the cutoff is the 80 % quantile of the distinct invoices' dates; train = rows before it;
- a user's relevant items are those bought at or after the cutoff that they had not bought
  before it; users with ≥ 1 train item and ≥ 1 relevant item are evaluated;
- each model (and the popularity baseline) is fitted on train only and recommends 10 items,
  excluding those the user already bought in train;
- hit-rate@10: share of users with ≥ 1 relevant item in the 10; recall@10: relevant items in
  the 10 / relevant items; NDCG@10: binary relevance, DCG = Σ 1/log2(rank+1) over hits, divided
  by the ideal DCG over min(10, |relevant|) hits. All three are averaged over users;
- the report adds 95 % paired-bootstrap intervals (2,000 resamples of users, seed 0) of each
  method's gain over popularity. ``--sweep`` first shows the same protocol inside the training
  period only (a validation split): that is where EASE's λ and item-kNN's shrinkage were chosen,
  so the test period played no part in picking them.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from tuike.insights.recommend import Model, fit, recommend, recommend_many

from tuike.lab.realdata import realdata_file

CSV_NAME = "uci_online_retail_30k_sample.csv"
K = 10


def default_csv() -> Path:
    return realdata_file(f"orders/{CSV_NAME}")


# ---- metrics (binary relevance) ----

def hit_rate(ranked: Sequence, relevant: set, k: int = K) -> float:
    return 1.0 if any(i in relevant for i in ranked[:k]) else 0.0


def recall(ranked: Sequence, relevant: set, k: int = K) -> float:
    return sum(1 for i in ranked[:k] if i in relevant) / len(relevant) if relevant else 0.0


def ndcg(ranked: Sequence, relevant: set, k: int = K) -> float:
    dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


# ---- the data ----

Row = tuple  # (customer, stock code, quantity, invoice date, invoice number)


@dataclass(frozen=True)
class Split:
    cutoff: datetime
    train: list[tuple[str, str, float]]       # (customer, stock code, quantity) before the cutoff
    history: dict[str, dict[str, float]]      # customer -> item -> quantity, train only
    relevant: dict[str, set[str]]             # evaluated customer -> new items after the cutoff
    rows: int                                 # rows split


def load_rows(path: Path | str | None = None) -> list[Row]:
    """The customers' purchase rows: no guest rows, no cancellations."""
    rows = []
    with open(path or default_csv(), newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            customer = r["CustomerID"].strip()
            qty = float(r["Quantity"])
            if not customer or r["InvoiceNo"].startswith("C") or qty <= 0:
                continue
            rows.append((customer.removesuffix(".0"), r["StockCode"].strip(), qty,
                         datetime.fromisoformat(r["InvoiceDate"]), r["InvoiceNo"]))
    return rows


def split_rows(rows: list[Row], quantile: float = 0.8) -> Split:
    dates = sorted({(d, inv) for _, _, _, d, inv in rows})
    cutoff = dates[min(len(dates) - 1, int(quantile * len(dates)))][0]
    train = [(c, s, q) for c, s, q, d, _ in rows if d < cutoff]
    history: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for c, s, q in train:
        history[c][s] += q
    later: dict[str, set[str]] = defaultdict(set)
    for c, s, _, d, _ in rows:
        if d >= cutoff and c in history and s not in history[c]:
            later[c].add(s)
    return Split(cutoff, train, {c: dict(v) for c, v in history.items()}, dict(later), len(rows))


def load_split(path: Path | str | None = None, quantile: float = 0.8) -> Split:
    return split_rows(load_rows(path), quantile)


def validation_split(test: Split, rows: list[Row], quantile: float = 0.8) -> Split:
    """The same protocol inside the training period only (for choosing λ and shrink)."""
    return split_rows([r for r in rows if r[3] < test.cutoff], quantile)


# ---- the evaluation ----

Config = tuple[str, str, dict]  # (name, method, fit keyword arguments)
CONFIGS: list[Config] = [("ease", "ease", {}), ("itemknn-cosine", "itemknn", {})]


@dataclass(frozen=True)
class Result:
    name: str
    hit_rate: float
    ndcg: float
    recall: float
    fit_seconds: float
    recommend_seconds: float
    per_user: np.ndarray  # users × (hit, ndcg, recall), users in sorted order


def score(name: str, model: Model, split: Split, fit_seconds: float = 0.0, k: int = K) -> Result:
    started = time.perf_counter()
    users = sorted(split.relevant)
    lists = recommend_many(model, [split.history[u] for u in users], k)
    per_user = np.array([[f([i for i, _ in ranked], split.relevant[u], k) for f in (hit_rate, ndcg, recall)]
                         for u, ranked in zip(users, lists)]).reshape(-1, 3)
    mean = per_user.mean(axis=0) if len(users) else np.zeros(3)
    return Result(name, *map(float, mean), fit_seconds, time.perf_counter() - started, per_user)


def evaluate(split: Split, configs: Sequence[Config] = CONFIGS) -> list[Result]:
    """One Result per config; the popularity baseline is always the first."""
    out = []
    for name, method, kwargs in [("popularity", "popularity", {}), *configs]:
        started = time.perf_counter()
        model = fit(split.train, method, **kwargs)
        out.append(score(name, model, split, time.perf_counter() - started))
    return out


def bootstrap_difference(a: Result, b: Result, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """95 % paired-bootstrap intervals of mean(a) − mean(b) over users: rows HR, NDCG, recall;
    columns low, high."""
    diff = a.per_user - b.per_user
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[picks].mean(axis=1)
    return np.percentile(means, [2.5, 97.5], axis=0).T


def _table(results: list[Result], out: TextIO) -> None:
    out.write(f"{'method':<22}{'HR@10':>8}{'NDCG@10':>9}{'recall@10':>11}{'fit s':>8}{'rec s':>8}\n")
    for r in results:
        out.write(f"{r.name:<22}{r.hit_rate:>8.4f}{r.ndcg:>9.4f}{r.recall:>11.4f}"
                  f"{r.fit_seconds:>8.2f}{r.recommend_seconds:>8.2f}\n")


def _describe(split: Split, label: str, out: TextIO) -> None:
    out.write(f"{label}: {split.rows:,} purchase rows, cutoff {split.cutoff:%Y-%m-%d %H:%M} "
              f"(80% of invoices before); train {len(split.train):,} rows, {len(split.history):,} customers; "
              f"evaluated {len(split.relevant):,} customers, {sum(map(len, split.relevant.values())):,} new items\n")


def print_report(split: Split, results: list[Result], out: TextIO, seconds: float) -> None:
    pop, best = results[0], results[1]
    _describe(split, "recommend eval, UCI Online Retail 30k sample", out)
    _table(results, out)
    for r in results[1:]:
        ci = bootstrap_difference(r, pop)
        out.write(f"{r.name} - popularity, 95% paired bootstrap: "
                  + ", ".join(f"{m} {d:+.4f} [{lo:+.4f}, {hi:+.4f}]" for m, d, (lo, hi) in
                              zip(("HR", "NDCG", "recall"), (r.hit_rate - pop.hit_rate, r.ndcg - pop.ndcg,
                                                             r.recall - pop.recall), ci)) + "\n")
    out.write(f"total {seconds:.1f} s\n")
    out.write(f"overall hit_rate@10={best.hit_rate:.4f} ndcg@10={best.ndcg:.4f} "
              f"popularity_hit_rate@10={pop.hit_rate:.4f} popularity_ndcg@10={pop.ndcg:.4f}\n")


SWEEP: list[Config] = ([(f"ease l2={v:g}", "ease", {"l2": v}) for v in (25, 50, 100, 200, 500, 1000)]
                       + [(f"itemknn shrink={v:g}", "itemknn", {"shrink": v}) for v in (0, 20, 50, 100, 200)]
                       + [("ease log1p(qty)", "ease", {"weighting": "log"})])


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    p = argparse.ArgumentParser(prog="tuike eval recommend",
                                description="time-split evaluation of the material recommender")
    p.add_argument("--csv", type=Path, default=None, help=f"the orders file (default: {CSV_NAME} of shared/realdata)")
    p.add_argument("--sweep", action="store_true",
                   help="first show the hyper-parameter sweep on a validation split of the training period")
    args = p.parse_args(argv)
    out = out or sys.stdout
    started = time.perf_counter()
    rows = load_rows(args.csv)
    split = split_rows(rows)
    if args.sweep:
        valid = validation_split(split, rows)
        _describe(valid, "validation (training period only)", out)
        _table(evaluate(valid, SWEEP), out)
        out.write("\n")
    results = evaluate(split)
    print_report(split, results, out, time.perf_counter() - started)
    return 0


# ---- promoters ----

def recommend_for_promoter(sales: Iterable[tuple[Hashable, Hashable, float]], promoter: str,
                           top: int = 10) -> list[tuple[Hashable, float]]:
    """Fit on every promoter's ``(promoter, sku, qty)`` sales and recommend ``top`` SKUs that
    ``promoter`` has not sold yet (popularity for a promoter with no sales)."""
    sales = list(sales)
    mine: dict[Hashable, float] = defaultdict(float)
    for who, sku, qty in sales:
        if who == promoter and float(qty) > 0:
            mine[sku] += float(qty)
    return recommend(fit(sales), mine, top)


if __name__ == "__main__":
    raise SystemExit(main())
