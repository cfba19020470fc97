"""Hot nodes and viral forecasts of a shop's share cascades, read from the ledger (the I/O around
tuike/insights/cascade.py, tuike/insights/hotnodes.py and tuike/insights/forecast.py).

The cascades are the engine's own (``cascade_nodes``, kept up to date as clicks stream in by
engine/propagation.py); a conversion is an order paid through a click (``orders.click_id``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tuike.insights.cascade import CascadeIndex
from tuike.insights.forecast import Early, Forecast, fit_loglinear, observe
from tuike.insights.hotnodes import hot_nodes
from schemas.analytics import quote

MIN_TRAINING = 5  # cascades the forecast needs to learn from
MIN_SIZE = 3  # nodes a finished cascade needs to teach the forecast anything


def share_index(ledger: Any, campaign: str | None = None) -> CascadeIndex:
    """Every placed click of the shop (or of one campaign) with its conversions and commission."""
    where = f"WHERE campaign = {quote(campaign)}" if campaign else ""
    conv = {c: (int(n), Decimal(x)) for c, n, x in ledger.query(
        "SELECT o.click_id, count(), sum(net) FROM (SELECT order_id, click_id FROM orders WHERE click_id != '') AS o "
        "ANY LEFT JOIN (SELECT order_id, sum(amount) AS net FROM commission_ledger WHERE level > 0 GROUP BY order_id) "
        "AS l USING order_id GROUP BY o.click_id").rows}
    index = CascadeIndex()
    for click_id, parent, ts in ledger.query(
            f"SELECT click_id, parent_click_id, toUInt32(ts) FROM cascade_nodes {where} ORDER BY ts, click_id").rows:
        n, commission = conv.get(click_id, (0, Decimal(0)))
        index.add(click_id, parent or None, float(ts), converted=n > 0, commission=commission)
    return index


@dataclass(frozen=True)
class Hot:
    click_id: str
    visitor: str  # who shared onwards: the click's customer, else its visitor
    promoter: str
    campaign: str
    reach: int
    conversions: int
    pagerank: float
    score: float


def hottest(ledger: Any, campaign: str | None = None, top: int = 20) -> list[Hot]:
    """The top propagators (热点节点): clicks whose shares reached most, converted most and sit
    most centrally in the share graph; a click inside a listed one's downline is not listed."""
    index = share_index(ledger, campaign)
    ranked = [h for h in hot_nodes(index) if h.shadowed_by is None][:top]
    if not ranked:
        return []
    ids = ", ".join(quote(h.node) for h in ranked)
    who = {c: (cust or vis, p, cp) for c, cust, vis, p, cp in ledger.query(
        f"SELECT click_id, customer_id, visitor_id, promoter_id, campaign FROM clicks WHERE click_id IN ({ids})").rows}
    return [Hot(h.node, *who.get(h.node, ("", "", "")), h.reach, h.conversions, h.pagerank, h.score) for h in ranked]


@dataclass(frozen=True)
class CascadeForecast:
    root: str
    early: Early
    forecast: Forecast
    trained_on: int  # finished cascades the model learnt from
    size_now: int


class ForecastError(ValueError):
    """The forecast cannot be made (unknown cascade, too little history); the message says why."""


def forecast_cascade(ledger: Any, root: str, window_hours: float = 24.0) -> CascadeForecast:
    """Final size and K-factor of cascade ``root`` from its first ``window_hours`` after the root
    (what a live cascade knows), by a log-linear model fitted on the shop's other cascades whose
    roots are older than that window before this one's last click (they have had time to finish)."""
    index = share_index(ledger)
    if root not in index or index.root_of(root) != root:
        raise ForecastError(f"{root!r} is not the root of a cascade (tuike query \"SELECT root_id, reach FROM "
                            "cascade_stats ORDER BY reach DESC LIMIT 10\" lists some)")
    return _forecasts(index, [root], window_hours)[0]


def forecast_all(ledger: Any, window_hours: float, made_at: datetime) -> list[dict]:
    """A ``cascade_forecasts`` row for every cascade still within twice the window of the shop's
    last click (the live ones), by one model fitted on the finished ones."""
    index = share_index(ledger)
    roots = index.roots()
    if not roots:
        return []
    latest = max(m.ts for r in roots for m in index.members(r))
    live = [r for r in roots if index.members(r)[0].ts + 2 * window_hours * 3600 > latest]
    if not live:
        return []
    return [{"root_id": fc.root, "window_hours": Decimal(str(window_hours)), "made_at": made_at,
             "size_now": fc.size_now, "early_size": fc.early.size, "trained_on": fc.trained_on,
             "size": _d(fc.forecast.size), "low": _d(fc.forecast.low), "high": _d(fc.forecast.high),
             "k_factor": _d(fc.forecast.k_factor), "k_low": _d(fc.forecast.k_low), "k_high": _d(fc.forecast.k_high),
             "method": fc.forecast.method} for fc in _forecasts(index, live, window_hours)]


def _d(x: float) -> Decimal:
    return Decimal(str(round(x, 6))) if x != float("inf") else Decimal("999999999.999999")


def _forecasts(index: CascadeIndex, roots: list[str], window_hours: float) -> list[CascadeForecast]:
    window = window_hours * 3600
    latest = max(max(m.ts for m in index.members(r)) for r in roots) if roots else 0.0
    wanted = set(roots)
    training = []
    for other in index.roots():
        if other in wanted:
            continue
        them = index.members(other)
        if len(them) >= MIN_SIZE and them[0].ts + 2 * window <= latest:
            training.append((observe(them, window), len(them)))
    if len(training) < MIN_TRAINING:
        raise ForecastError(f"only {len(training)} finished cascades of {MIN_SIZE}+ clicks to learn from (needs "
                            f"{MIN_TRAINING}); try a shorter --window-hours")
    model = fit_loglinear(training)
    out = []
    for root in roots:
        members = index.members(root)
        early = observe(members, window)
        out.append(CascadeForecast(root, early, model.predict(early), len(training), len(members)))
    return out
