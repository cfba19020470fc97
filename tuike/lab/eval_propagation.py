"""`tuike eval propagation`: cascade forecasting and hot nodes on real message data.

Data: ``graphs/snap_CollegeMsg.txt`` of the project's shared real data
(``../shared/realdata/SOURCES.md``): SNAP CollegeMsg, 59,835 timestamped private messages among
1,899 users of a UC Irvine online community (Panzarasa, Opsahl & Carley 2009, "Patterns and
dynamics of users' behavior and interaction: Network analysis of an online community", JASIST
60(5)), via advaithhl/temporal_graph_clustering @ 1c0aafaf5de167981649228e5953779afed6126b.

Cascades (:func:`tuike.insights.cascade.first_contacts`): messages by time; a user enters at their first
message: reached by the sender if they first appear as a recipient (the first contact u→v is the
link "u reached v"), a root if they first appear as a sender. A user who has already written to
someone is not "reached" by a later message to them; without that rule the links form loops
(u→v first, later v→u): on CollegeMsg the chains of 1,854 of the 1,899 users would end in a loop,
and only the 37 users who never receive a message would be roots.

Forecast protocol:

- cascades with at least ``MIN_SIZE`` nodes are evaluated; they are ordered by root time and
  the earliest 70% train, the rest are held out. (Splitting all cascades first would leave only
  a handful of held-out cascades of that size: later roots find most users already reached.)
- lifetime = last node's time − root's time. "10% lifetime" (the issue's protocol): each
  cascade is observed up to 10% of its own lifetime — which needs the final lifetime, unknown
  at forecast time, so the window itself carries information about the future (the forecasters
  never read it, but the choice of the early nodes does). "fixed window" (what a live forecast
  knows): every cascade is observed for T = the training median of 10% lifetimes.
- the log-linear model, the growth-ratio baseline and the interval quantiles are fitted on the
  training cascades under the same protocol; the Galton–Watson forecast has nothing to fit.
- MdAPE = median |forecast − final| / final; MdALE = median |log forecast − log final|;
  coverage = share of held-out cascades whose final size is in [low, high] (80% intervals);
  width = median high/low. The paired bootstrap (``seed``) resamples held-out cascades and gives
  a 95% interval of baseline MdAPE − method MdAPE.

Hot nodes: split time at the midpoint of the message span; nodes are ranked on the cascades of
the first half only (the first-contact forest is causal, so that is the full forest cut at the
midpoint); reach captured by a top-k list = the share of the users reached (entered with a
parent) in the second half who are in the downline (in the full forest) of a listed node.
The baseline lists nodes by first-half out-degree (users reached directly). The split at the
median entry time (half of the users on each side) is shown too.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TextIO

import numpy as np

from tuike.insights.cascade import CascadeIndex, Member, build_cascades, first_contacts
from tuike.insights.forecast import Early, Forecast, fit_growth_ratio, fit_loglinear, galton_watson, observe
from tuike.insights.hotnodes import degree_ranking, hot_nodes

from tuike.lab.realdata import realdata_file

FILE_NAME = "snap_CollegeMsg.txt"
SOURCE = ("SNAP CollegeMsg (Panzarasa, Opsahl & Carley 2009, JASIST 60(5)) via advaithhl/temporal_graph_clustering"
          " @ 1c0aafaf5de167981649228e5953779afed6126b; shared/realdata/SOURCES.md")
MIN_SIZE = 5
TRAIN_SHARE = 0.7
EARLY_SHARE = 0.1
LEVEL = 0.8
KS = (10, 50, 100)
BOOTSTRAP = 2000


def default_path() -> Path:
    return realdata_file(f"graphs/{FILE_NAME}")


def load_messages(path: Path | str) -> list[tuple[str, str, float]]:
    """``src dst unix_time`` lines after the header."""
    out = []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            if line.strip():
                src, dst, ts = line.split()
                out.append((src, dst, float(ts)))
    return out


@dataclass(frozen=True)
class MethodRow:
    protocol: str
    method: str
    mdape: float
    mdale: float
    coverage: float
    width: float  # median high / low


@dataclass(frozen=True)
class ProtocolResult:
    name: str
    window_hours: float | None  # the fixed window; None: 10% of each cascade's own lifetime
    features: tuple[str, ...]  # chosen by leave-one-out on the training cascades
    loo_mdale: float  # the chosen model's leave-one-out MdALE on the training cascades
    rows: list[MethodRow]
    gain_ci: tuple[float, float]  # 95% bootstrap interval of baseline MdAPE − log-linear MdAPE
    wins: float  # share of bootstrap resamples where the log-linear MdAPE is lower


@dataclass(frozen=True)
class HotRow:
    split: str
    k: int
    hot: float
    degree: float


@dataclass(frozen=True)
class Report:
    source: str
    messages: int
    users: int
    cascades: int
    evaluated: int
    train: int
    test: int
    test_if_split_first: int  # held-out cascades ≥ MIN_SIZE had all cascades been split first
    protocols: list[ProtocolResult]
    hot: list[HotRow]
    seconds: dict[str, float]

    def headline(self) -> tuple[float, float, float, float, float]:
        """mdape, baseline mdape, coverage (10% lifetime protocol), top-50 reach: hot, degree."""
        rows = {r.method.split("(")[0]: r for r in self.protocols[0].rows}
        hot50 = next(h for h in self.hot if h.k == 50)
        return rows["loglinear"].mdape, rows["growth-ratio"].mdape, rows["loglinear"].coverage, hot50.hot, hot50.degree


# ---- forecasting ----

def _metrics(protocol: str, method: str, forecasts: Sequence[Forecast], truth: np.ndarray) -> MethodRow:
    size = np.array([f.size for f in forecasts])
    low = np.array([f.low for f in forecasts])
    high = np.array([f.high for f in forecasts])
    return MethodRow(protocol, method,
                     mdape=float(np.median(np.abs(size - truth) / truth)),
                     mdale=float(np.median(np.abs(np.log(size / truth)))),
                     coverage=float(np.mean((low <= truth) & (truth <= high))),
                     width=float(np.median(high / low)))


def _forecast_protocol(name: str, train: list[list[Member]], test: list[list[Member]],
                       window: Callable[[list[Member]], float], fixed_hours: float | None,
                       rng: np.random.Generator) -> ProtocolResult:
    def views(cascades: list[list[Member]]) -> list[tuple[Early, int]]:
        return [(observe(c, window(c)), len(c)) for c in cascades]

    training, held = views(train), views(test)
    truth = np.array([float(final) for _, final in held])
    loglinear = fit_loglinear(training, level=LEVEL)
    baseline = fit_growth_ratio(training, level=LEVEL)
    ours = [loglinear.predict(e) for e, _ in held]
    naive = [baseline.predict(e) for e, _ in held]
    gw = [galton_watson(e, level=LEVEL) for e, _ in held]
    rows = [_metrics(name, loglinear.method, ours, truth), _metrics(name, baseline.method, naive, truth),
            _metrics(name, "galton-watson", gw, truth)]
    ape_ours = np.abs(np.array([f.size for f in ours]) - truth) / truth
    ape_naive = np.abs(np.array([f.size for f in naive]) - truth) / truth
    idx = rng.integers(0, len(truth), size=(BOOTSTRAP, len(truth)))
    gain = np.median(ape_naive[idx], axis=1) - np.median(ape_ours[idx], axis=1)
    lo, hi = np.quantile(gain, [0.025, 0.975])
    return ProtocolResult(name, fixed_hours, loglinear.features, loglinear.loo_mdale, rows, (float(lo), float(hi)),
                          float(np.mean(gain > 0)))


# ---- hot nodes ----

def _reach_captured(full: CascadeIndex, late: list[str], top: Sequence[str]) -> float:
    listed = set(top)
    hit = 0
    for node in late:
        up = full.parent_of(node)
        while up is not None and up not in listed:
            up = full.parent_of(up)
        hit += up is not None
    return hit / len(late) if late else 0.0


def _hot_split(name: str, records: list[tuple[str, str | None, float]], full: CascadeIndex,
               cut: float) -> list[HotRow]:
    early = build_cascades(r for r in records if r[2] < cut)
    late = [r[0] for r in records if r[2] >= cut and r[1] is not None]
    hot = [h.node for h in hot_nodes(early)]
    degree = degree_ranking(early)
    return [HotRow(name, k, _reach_captured(full, late, hot[:k]), _reach_captured(full, late, degree[:k]))
            for k in KS]


# ---- the evaluation ----

def evaluate(path: Path | str | None = None, seed: int = 0) -> Report:
    rng = np.random.default_rng(seed)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    messages = load_messages(path or default_path())
    records = first_contacts(messages)
    index = build_cascades(records)
    roots = index.roots()  # by root time, then id
    cascades = [index.members(r) for r in roots]
    seconds["cascades"] = time.perf_counter() - started

    started = time.perf_counter()
    big = [c for c in cascades if len(c) >= MIN_SIZE]
    n_train = round(TRAIN_SHARE * len(big))
    train, test = big[:n_train], big[n_train:]
    split_first = sum(len(c) >= MIN_SIZE for c in cascades[round(TRAIN_SHARE * len(cascades)):])

    def lifetime(c: list[Member]) -> float:
        return max(m.ts for m in c) - c[0].ts

    fixed = float(np.median([EARLY_SHARE * lifetime(c) for c in train]))
    protocols = [
        _forecast_protocol("10% lifetime", train, test, lambda c: EARLY_SHARE * lifetime(c), None, rng),
        _forecast_protocol("fixed window", train, test, lambda c: fixed, fixed / 3600, rng),
    ]
    seconds["forecast"] = time.perf_counter() - started

    started = time.perf_counter()
    t0, t1 = min(m[2] for m in messages), max(m[2] for m in messages)
    entries = sorted(r[2] for r in records)
    hot = (_hot_split("time midpoint", records, index, (t0 + t1) / 2)
           + _hot_split("median entry", records, index, entries[len(entries) // 2]))
    seconds["hot nodes"] = time.perf_counter() - started
    return Report(SOURCE, len(messages), len(index), len(roots), len(big), len(train), len(test), split_first,
                  protocols, hot, seconds)


def format_report(report: Report) -> str:
    lines = [
        f"propagation evaluation on {report.source}",
        f"{report.messages} messages, {report.users} users, {report.cascades} first-contact cascades; "
        f"{report.evaluated} with ≥{MIN_SIZE} nodes: {report.train} train (earliest roots), {report.test} held out "
        f"(splitting all cascades first would hold out {report.test_if_split_first})",
        "",
        f"final size forecast, {LEVEL:.0%} intervals",
        f"{'protocol':<14}{'method':<44}{'MdAPE':>7}{'MdALE':>7}{'cover':>7}{'width':>7}",
    ]
    for p in report.protocols:
        for r in p.rows:
            lines.append(f"{r.protocol:<14}{r.method:<44}{r.mdape:>7.3f}{r.mdale:>7.3f}{r.coverage:>7.2f}{r.width:>7.2f}")
    for p in report.protocols:
        window = "10% of each cascade's lifetime" if p.window_hours is None else f"first {p.window_hours:.1f} h"
        lines.append(f"{p.name}: window {window}; training leave-one-out MdALE {p.loo_mdale:.3f}; "
                     f"baseline − log-linear MdAPE, 95% bootstrap [{p.gain_ci[0]:+.3f}, {p.gain_ci[1]:+.3f}], "
                     f"log-linear lower in {p.wins:.0%} of resamples")
    lines += ["", "hot nodes: share of second-half reached users in the downline of the top k (ranked on the first half)",
              f"{'split':<16}{'k':>5}{'hot score':>11}{'degree':>9}"]
    for h in report.hot:
        lines.append(f"{h.split:<16}{h.k:>5}{h.hot:>11.3f}{h.degree:>9.3f}")
    lines.append("")
    lines.append("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in report.seconds.items()))
    mdape, base, cover, hot50, deg50 = report.headline()
    lines.append(f"overall mdape={mdape:.3f} baseline_mdape={base:.3f} coverage={cover:.2f} "
                 f"hot_top50_reach={hot50:.3f} degree_top50_reach={deg50:.3f}")
    return "\n".join(lines)


def print_report(report: Report, out: TextIO) -> None:
    print(format_report(report), file=out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    p = argparse.ArgumentParser(prog="tuike eval propagation",
                                description="Cascade size forecast and hot nodes on SNAP CollegeMsg.")
    p.add_argument("--path", type=Path, default=None, help=f"the {FILE_NAME} file (default: the shared real data)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = p.parse_args(argv)
    print_report(evaluate(args.path, args.seed), out or sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
