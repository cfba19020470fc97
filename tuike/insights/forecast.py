"""Viral forecast (裂变预测): a cascade's final size and K-factor from its early life.

What is known at forecast time is an :class:`Early` view: the cascade's nodes that entered
within ``window`` seconds of the root's time (their times, depths and parents), and ``window``
itself. Nothing after the cutoff is used. Which window is honest is the caller's choice: a fixed
number of hours after the root is known for a live cascade; "the first 10% of its lifetime"
needs the final lifetime, which is only known afterwards (the evaluation reports both, see
:mod:`tuike.lab.eval_propagation`). The features below read the early nodes only, never ``window``,
so the lifetime does not leak through a feature.

Methods (each returns a :class:`Forecast` with an interval at ``level``, default 80%):

- :func:`fit_loglinear`: least squares of log(final size) on features of the early view (log
  early size, early depth, the root's early children, early growth rate), fitted on training
  cascades; the feature set is chosen by leave-one-out error on the training cascades, and the
  interval is the leave-one-out residual quantiles (so it is calibrated on cascades the fit did
  not see). Assumes the held-out cascades come from the same process as the training ones and
  that log-size errors do not depend on the features (one residual spread for all).
- :func:`galton_watson`: a branching process whose nodes have i.i.d. offspring with mean m.
  m is the Harris estimate (children of interior nodes ÷ interior nodes, interior = above the
  deepest observed generation, whose offspring are taken as complete); each frontier node (the
  deepest generation) is expected to add m/(1-m) descendants. The interval combines the
  delta-method spread of m (sample offspring variance ÷ interior nodes) with the process spread
  of the future total progeny (variance σ²/(1-m)³ per frontier node), normal approximations.
  m ≥ 1 (supercritical) has no finite expected size: m is capped at ``m_max`` for the point and
  the upper bound is infinite.
- :func:`fit_growth_ratio`: the naive baseline, final = early size × the training median ratio.

K-factor (mean offspring per node): a finished tree of n nodes has n-1 links, so its K is
1 - 1/n, the offspring mean m of a one-root branching process with expected size 1/(1-m). The
log-linear and baseline forecasts report the K of the forecast final tree (and its interval from
the size interval); the Galton–Watson forecast reports its estimate of m.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

from tuike.insights.cascade import Member


@dataclass(frozen=True)
class Forecast:
    size: float
    low: float
    high: float
    k_factor: float
    k_low: float
    k_high: float
    method: str


@dataclass(frozen=True)
class Early:
    """What is known at the cutoff: the nodes within ``window`` seconds of the root."""

    size: int
    depth: int
    root_children: int
    first_reshare: float | None  # seconds from the root to its first child, None: none yet
    span: float  # seconds from the root to the last early node
    window: float
    generations: tuple[int, ...]  # nodes at depth 0, 1, …
    offspring: tuple[int, ...]  # children of each interior node (depth < the deepest)


def observe(members: Sequence[Member], window: float) -> Early:
    """The early view of one cascade (``CascadeIndex.members`` order: by depth, then time).

    A node is kept when it entered at most ``window`` after the root and its parent was kept.
    """
    root = members[0]
    cutoff = root.ts + window
    kept: dict[str, Member] = {}
    for m in members:
        if m.ts <= cutoff and (m.parent is None or m.parent in kept):
            kept[m.node] = m
    depth = max(m.depth for m in kept.values())
    generations = [0] * (depth + 1)
    children: dict[str, int] = {n: 0 for n in kept}
    for m in kept.values():
        generations[m.depth] += 1
        if m.parent is not None:
            children[m.parent] += 1
    firsts = [m.ts - root.ts for m in kept.values() if m.depth == 1]
    return Early(
        size=len(kept),
        depth=depth,
        root_children=children[root.node],
        first_reshare=min(firsts) if firsts else None,
        span=max(m.ts for m in kept.values()) - root.ts,
        window=window,
        generations=tuple(generations),
        offspring=tuple(children[m.node] for m in kept.values() if m.depth < depth),
    )


def _k(size: float) -> float:
    return 1.0 - 1.0 / size if size > 0 else 0.0


# -- Galton–Watson ---------------------------------------------------------------------------

def galton_watson(early: Early, level: float = 0.8, m_max: float = 0.95) -> Forecast:
    """Branching-process forecast from the early generations (see the module docstring)."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    n, frontier = early.size, early.generations[-1]
    kids = np.asarray(early.offspring, dtype=float)
    if kids.size == 0:  # the root alone: no offspring observed, nothing to estimate m from
        return Forecast(n, n, math.inf, 0.0, 0.0, math.inf, "galton-watson")
    m = float(kids.mean())
    var = float(kids.var(ddof=1)) if kids.size > 1 else m  # one parent: Poisson's var = mean
    se = math.sqrt(max(var, 0.0) / kids.size)
    m_lo, m_hi = max(0.0, m - z * se), m + z * se

    def future(mm: float) -> tuple[float, float]:
        """Mean and sd of the descendants still to come below the frontier."""
        mm = min(mm, m_max)
        return frontier * mm / (1 - mm), math.sqrt(frontier * var / (1 - mm) ** 3)

    mean, _ = future(m)
    lo_mean, lo_sd = future(m_lo)
    hi_mean, hi_sd = future(m_hi)
    low = n + max(0.0, lo_mean - z * lo_sd)
    high = math.inf if m_hi >= 1 else n + hi_mean + z * hi_sd
    return Forecast(n + mean, low, high, m, m_lo, m_hi, "galton-watson")


# -- log-linear regression -------------------------------------------------------------------

FEATURES: dict[str, Callable[[Early], float]] = {
    "log_size": lambda e: math.log(e.size),
    "depth": lambda e: float(e.depth),
    "log_root_children": lambda e: math.log1p(e.root_children),
    # nodes per hour over the observed span (an hour at least: one burst is not a rate)
    "log_growth": lambda e: math.log1p((e.size - 1) / max(e.span / 3600, 1.0)),
}

CANDIDATES: tuple[tuple[str, ...], ...] = (  # small on purpose: tens of training cascades
    ("log_size",),
    ("log_size", "depth"),
    ("log_size", "log_root_children"),
    ("log_size", "log_growth"),
    ("log_size", "depth", "log_root_children"),
    ("log_size", "depth", "log_growth"),
)


@dataclass(frozen=True)
class LogLinear:
    features: tuple[str, ...]
    coef: tuple[float, ...]  # intercept first
    q_low: float  # leave-one-out residual quantiles of log(final size)
    q_high: float
    loo_mdale: float  # leave-one-out median |log error| on the training cascades
    level: float

    @property
    def method(self) -> str:
        return "loglinear(" + "+".join(self.features) + ")"

    def predict(self, early: Early) -> Forecast:
        """Point and interval; never below the early size (those nodes are already there)."""
        mu = float(np.dot(self.coef, _row(early, self.features)))
        size, low, high = (max(math.exp(mu + d), early.size) for d in (0.0, self.q_low, self.q_high))
        return Forecast(size, low, high, _k(size), _k(low), _k(high), self.method)


def _row(early: Early, features: Sequence[str]) -> list[float]:
    return [1.0] + [FEATURES[f](early) for f in features]


def _loo_residuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out residuals of least squares, exactly, through the hat matrix: e_i / (1 - h_ii)."""
    pinv = np.linalg.pinv(x)
    resid = y - x @ (pinv @ y)
    h = np.einsum("ij,ji->i", x, pinv)
    return resid / np.maximum(1.0 - h, 1e-9)


def fit_loglinear(examples: Sequence[tuple[Early, int]], features: Sequence[str] | None = None,
                  level: float = 0.8) -> LogLinear:
    """Fit on (early view, final size) pairs; ``features`` None: the CANDIDATES set with the
    smallest leave-one-out median |log error| (the first on ties)."""
    y = np.log([float(final) for _, final in examples])
    choices = [tuple(features)] if features is not None else list(CANDIDATES)
    best: tuple[float, tuple[str, ...], np.ndarray, np.ndarray] | None = None
    for names in choices:
        x = np.array([_row(e, names) for e, _ in examples])
        loo = _loo_residuals(x, y)
        score = float(np.median(np.abs(loo)))
        if best is None or score < best[0]:
            best = (score, names, x, loo)
    assert best is not None
    score, names, x, loo = best
    coef = np.linalg.pinv(x) @ y
    # residual = truth - fit, so the interval is fit + quantiles of it
    q_low, q_high = np.quantile(loo, [(1 - level) / 2, (1 + level) / 2])
    return LogLinear(names, tuple(float(c) for c in coef), float(q_low), float(q_high), score, level)


# -- the naive baseline ----------------------------------------------------------------------

@dataclass(frozen=True)
class GrowthRatio:
    ratio: float  # training median of final / early size
    q_low: float  # quantiles of log(final / forecast) on the training cascades
    q_high: float

    method = "growth-ratio"

    def predict(self, early: Early) -> Forecast:
        size = early.size * self.ratio
        low = max(size * math.exp(self.q_low), early.size)
        high = max(size * math.exp(self.q_high), early.size)
        return Forecast(size, low, high, _k(size), _k(low), _k(high), self.method)


def fit_growth_ratio(examples: Sequence[tuple[Early, int]], level: float = 0.8) -> GrowthRatio:
    logs = np.log([final / e.size for e, final in examples])
    ratio = float(np.exp(np.median(logs)))
    q_low, q_high = np.quantile(logs - math.log(ratio), [(1 - level) / 2, (1 + level) / 2])
    return GrowthRatio(ratio, float(q_low), float(q_high))
