"""`tuike fraud eval`: the labelled fraud benchmark.

A generated shop with labelled fraud of each pattern mixed into honest traffic
(:mod:`tuike.lab.fraud_shop`) runs through the engine (in memory: the scores do not depend on
where the ledger goes); an order counts as held when its final score reaches ``hold_score``.

- recall of a pattern: its labelled orders held / its labelled orders;
- precision of a pattern: of the holds its own signals took part in (``SIGNATURES``), the share
  that were fraud; overall: fraud orders held / orders held;
- false-hold rate: honest orders held / honest orders.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from engine.config import Config
from engine.dataflow import Output
from engine.runner import Engine
from engine.store import MemoryStore
from schemas.events import validate_event

from tuike.lab.fraud_shop import PATTERNS, labelled_shop

SIGNATURES = {  # the reason codes that describe each pattern (for per-pattern precision)
    "self_purchase": {"F07"},
    "device_farm": {"F08", "F09"},
    "click_spam": {"F01", "F02", "F03", "F04", "F05", "F06"},
    "refund_abuse": {"F12", "F13"},
    "fake_orders": {"F10", "F11", "F14"},
}


@dataclass(frozen=True)
class Line:
    name: str
    orders: int
    held: int
    precision: float | None
    recall: float | None


@dataclass(frozen=True)
class Report:
    seed: int
    lines: list[Line]
    honest: int
    false_holds: int
    precision: float
    recall: float
    false_hold_rate: float
    events: int
    seconds: float


def final_scores(events: list[dict], config: Config) -> dict[str, dict]:
    """Each scored order's last ``fraud_scores`` row (its signals only grow)."""
    engine = Engine(config, MemoryStore())
    out = Output()
    for raw in events:
        engine.feed(validate_event(raw), out)
        out.entries.clear()
    last: dict[str, dict] = {}
    for table, row in out.facts:
        if table == "fraud_scores":
            last[row["order_id"]] = row
    return last


def evaluate(seed: int, config: Config) -> Report:
    shop = labelled_shop(seed)
    started = time.perf_counter()
    rows = final_scores(shop.events, config)
    seconds = time.perf_counter() - started
    orders = [e["order_id"] for e in shop.events if e["type"] == "order.paid"]
    held = {o for o, r in rows.items() if r["held"]}
    reasons = {o: set(r["reasons"].split(",")) - {""} for o, r in rows.items()}
    lines = []
    for pattern in PATTERNS:
        mine = [o for o in orders if shop.labels.get(o) == pattern]
        caught = [o for o in mine if o in held]
        by_signature = [o for o in held if reasons[o] & SIGNATURES[pattern]]
        true = [o for o in by_signature if o in shop.labels]
        lines.append(Line(pattern, len(mine), len(caught), _ratio(len(true), len(by_signature)),
                          _ratio(len(caught), len(mine))))
    fraud = [o for o in orders if o in shop.labels]
    honest = [o for o in orders if o not in shop.labels]
    false_holds = sum(1 for o in honest if o in held)
    fraud_held = sum(1 for o in fraud if o in held)
    return Report(seed, lines, len(honest), false_holds,
                  _ratio(fraud_held, fraud_held + false_holds) or 0.0, _ratio(fraud_held, len(fraud)) or 0.0,
                  _ratio(false_holds, len(honest)) or 0.0, len(shop.events), seconds)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_report(r: Report, out: TextIO) -> None:
    out.write(f"fraud eval, seed {r.seed}: {r.events:,} events scored in {r.seconds:.1f} s\n")
    out.write(f"{'pattern':<16}{'orders':>8}{'held':>7}{'precision':>11}{'recall':>9}\n")
    for line in r.lines:
        out.write(f"{line.name:<16}{line.orders:>8}{line.held:>7}{_fmt(line.precision):>11}{_fmt(line.recall):>9}\n")
    out.write(f"{'honest':<16}{r.honest:>8}{r.false_holds:>7}{'':>11}{'':>9}"
              f"   false-hold rate {r.false_hold_rate:.4f}\n")
    out.write(f"overall precision={r.precision:.3f} recall={r.recall:.3f} false_hold_rate={r.false_hold_rate:.4f}\n")
