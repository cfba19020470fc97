"""Fraud scores: the signals an order shows, weighed into one score in [0, 1]. Pure.

Evidence is gathered by the risk processor (:mod:`engine.risk`), keyed by what it counts
(device, IP, IP /24 prefix, promoter, all promoters), and by the order processor (a refund).
Each piece of evidence is a *signal*: a numbered reason code that fired at an event time. An
order's score is a noisy-OR of the weights of the signals it carries,

    score = 1 − Π (1 − weight_i),

so independent pieces of evidence each remove part of the doubt, one strong signal is enough
and several weak ones add up. The score is rounded half-up to 4 decimals (Decimal throughout:
the same evidence gives the same score on every machine).

Signals carry their event time, and the hold starts at the earliest time the signals known by
then reach ``hold_score``: the same set of signals gives the same hold whatever order they
arrived in (a late flag from a device farm that grew later does not move an earlier hold).
Scores decide *when* money is payable (holds), never how much (contract §1.2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Mapping


@dataclass(frozen=True)
class Signal:
    code: str
    name: str
    weight: Decimal  # default weight (fraud.weights.<code> overrides it)
    what: str  # when it fires, in words (the README's table is generated from these)


SIGNALS: tuple[Signal, ...] = (
    Signal("F01", "device_click_velocity", Decimal("0.5"),
           "the order's device made ≥ `device_clicks` clicks within `window_minutes` (ever)"),
    Signal("F02", "ip_click_velocity", Decimal("0.4"),
           "the order's IP made ≥ `ip_clicks` clicks within `window_minutes` (ever)"),
    Signal("F03", "prefix_click_velocity", Decimal("0.3"),
           "the order's IP /24 (IPv6 /48) made ≥ `prefix_clicks` clicks within `window_minutes` (ever)"),
    Signal("F04", "device_many_promoters", Decimal("0.5"),
           "the order's device clicked links of ≥ `device_promoters` promoters within 24 h"),
    Signal("F05", "click_spam", Decimal("0.9"),
           "the level-1 promoter's links got ≥ `spam_clicks` clicks within 24 h, at least `bot_share` of them "
           "by automation agents, and orders for at most `spam_conversion` of them (a burst that never converts)"),
    Signal("F06", "automation_agent", Decimal("0.4"),
           "at least `bot_share` of the device's clicks had no user agent or an automation one (curl, "
           "python-requests, HeadlessChrome, …)"),
    Signal("F07", "self_purchase", Decimal("0.9"),
           "the order's device or IP is one the level-1 promoter registered with or clicked from"),
    Signal("F08", "device_farm_accounts", Decimal("0.8"),
           "≥ `farm_accounts` customer accounts ordered from the order's device"),
    Signal("F09", "device_farm_ip", Decimal("0.5"),
           "≥ `farm_devices` devices ordered or clicked behind the order's IP"),
    Signal("F10", "too_fast", Decimal("0.7"),
           "the order was paid ≤ `fast_seconds` after the last click from its device"),
    Signal("F11", "value_outlier", Decimal("0.4"),
           "the order's value is ≥ `value_z` robust z-scores above the level-1 promoter's last 50 orders "
           "(log scale; the shop's last 500 orders while the promoter has fewer than `value_min_orders`)"),
    Signal("F12", "refund_abuse", Decimal("0.7"),
           "a new account (first seen ≤ `new_account_hours` before the order) refunded its first order in "
           "full within `refund_hours`"),
    Signal("F13", "peer_refund_rate", Decimal("0.6"),
           "the level-1 promoter's refund rate is ≥ `peer_z` robust z-scores above their peers' "
           "(≥ `peer_min_orders` orders)"),
    Signal("F14", "peer_conversion_rate", Decimal("0.4"),
           "the level-1 promoter's click-to-order conversion is ≥ `peer_z` robust z-scores above their "
           "peers' (≥ `peer_min_orders` orders)"),
    Signal("F15", "repeat_offender", Decimal("0.6"),
           "≥ `repeat_orders` of the level-1 promoter's orders carry an order-level signal of their own "
           "(F07, F08, F10 or F12)"),
)
SIGNAL = {s.code: s for s in SIGNALS}
OWN_SIGNALS = ("F07", "F08", "F10", "F12")  # what an order shows by itself; several on one promoter's orders: F15

THRESHOLDS: dict[str, Decimal] = {
    "window_minutes": Decimal(60),
    "device_clicks": Decimal(20),
    "ip_clicks": Decimal(40),
    "prefix_clicks": Decimal(120),
    "device_promoters": Decimal(4),
    "spam_clicks": Decimal(100),
    "spam_conversion": Decimal("0.01"),
    "bot_share": Decimal("0.5"),
    "farm_accounts": Decimal(3),
    "farm_devices": Decimal(4),
    "fast_seconds": Decimal(30),
    "repeat_orders": Decimal(3),
    "value_z": Decimal("3.5"),
    "value_min_orders": Decimal(8),
    "new_account_hours": Decimal(24),
    "refund_hours": Decimal(24),
    "peer_z": Decimal("3.5"),
    "peer_min_orders": Decimal(5),
}
QUANTUM = Decimal("0.0001")
ONE = Decimal(1)


@dataclass(frozen=True)
class FraudRules:
    """The configuration's ``fraud`` section."""
    enabled: bool = True
    hold_score: Decimal = Decimal("0.8")
    weights: Mapping[str, Decimal] = field(default_factory=lambda: {s.code: s.weight for s in SIGNALS})
    limits: Mapping[str, Decimal] = field(default_factory=lambda: dict(THRESHOLDS))
    peer_groups: int = 1  # promoters compared with their group's peers (F13, F14): engine/risk.py peers_key

    def limit(self, name: str) -> Decimal:
        return self.limits[name]

    def seconds(self, name: str, unit: int) -> int:
        """A window threshold in milliseconds (``unit``: seconds per unit of the setting)."""
        return int(self.limits[name] * unit * 1000)


def score(codes: Iterable[str], rules: FraudRules) -> Decimal:
    """Noisy-OR of the weights of the signals that fired."""
    doubt = ONE
    for code in set(codes):
        doubt *= ONE - rules.weights.get(code, Decimal(0))
    return (ONE - doubt).quantize(QUANTUM, ROUND_HALF_UP)


def hold_at(signals: Mapping[str, list], rules: FraudRules) -> list | None:
    """The ``[ts_ms, cause]`` at which the signals known by then first reach ``hold_score``.

    ``signals`` maps a code to ``[ts_ms, cause]``: the earliest time it applied to the order."""
    known: list[str] = []
    for code, (ts, cause) in sorted(signals.items(), key=lambda kv: (kv[1][0], kv[0])):
        known.append(code)
        if score(known, rules) >= rules.hold_score:
            return [ts, cause]
    return None


STAT = Decimal("0.000001")


def spread(population: list[Decimal]) -> list[str] | None:
    """``[median, scaled MAD]`` of a population, to 6 places as strings (kept in state), or None
    when empty; for :func:`robust_z`. Decimal like every figure derived from money."""
    if not population:
        return None
    median = _median(population)
    mad = _median([abs(x - median) for x in population]) * Decimal("1.4826")
    return [str(median.quantize(STAT, ROUND_HALF_UP)), str(mad.quantize(STAT, ROUND_HALF_UP))]


def robust_z(value: Decimal, stats: list[str] | None, floor: Decimal) -> Decimal:
    """How many scaled median absolute deviations ``value`` lies above the population's median
    (``stats`` from :func:`spread`; the MAD is floored so that a population of equal values does
    not make every change huge), to 2 places."""
    if stats is None:
        return Decimal("0.00")
    median, mad = (Decimal(x) for x in stats)
    return ((value - median) / max(mad, floor)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _median(values: list[Decimal]) -> Decimal:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


AUTOMATION_MARKERS = ("curl/", "python-requests", "headlesschrome", "okhttp", "wget/", "scrapy", "phantomjs",
                      "go-http-client", "java/", "httpclient", "selenium", "puppeteer", "bot", "spider", "crawler")


def automation_agent(user_agent: str | None) -> bool:
    """A click with no user agent, or one that names an HTTP library or a headless browser."""
    if not user_agent or not user_agent.strip():
        return True
    ua = user_agent.lower()
    return any(m in ua for m in AUTOMATION_MARKERS)


def ip_prefix(ip: str) -> str:
    """The network an address belongs to for velocity: IPv4 /24, IPv6 /48."""
    if ":" in ip:
        return ":".join(ip.split(":")[:3]) + "::/48"
    parts = ip.split(".")
    return ".".join(parts[:3]) + ".0/24" if len(parts) == 4 else ip
