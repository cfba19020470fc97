"""What one order item pays at each level: rules, campaigns and the payout cap (contract §2–§3).

The result (:class:`LevelTerm` per level) is frozen into the order's state the first time the
order is computed, so later refunds reverse at the rate in force when the money accrued.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.config import Config
from engine.money import CENT, ZERO, cents

RATE_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class LevelTerm:
    level: int
    amount: Decimal  # commission accrued for the item at this level
    rate: Decimal  # rate applied (× campaign multiplier); for fixed amounts, the share of the paid amount
    rule_id: str  # "default", a rule id, "…*campaign" when a campaign applied, "…+capped" when the cap cut it


def item_terms(sku: str, category: str, price: Decimal, qty: int, ts_ms: int, config: Config) -> list[LevelTerm]:
    """Commission per level for one item line at event time ``ts_ms``; levels paying 0 are omitted."""
    paid = price * qty
    rule = config.rule_for(sku, category)
    rule_id = rule.id if rule else "default"
    if rule is not None and rule.fixed is not None:
        exact = [f * qty for f in rule.fixed[: config.max_levels]]
        rates: list[Decimal] | None = None
    else:
        mult, campaign = config.multiplier_at(ts_ms)
        rates = [r * mult for r in (rule.levels if rule and rule.levels else config.levels)[: config.max_levels]]
        exact = [paid * r for r in rates]
        if campaign:
            rule_id += f"*{campaign}"
    cap = paid * config.payout_cap
    capped = False
    total = sum(exact, Decimal(0))
    if rates is None and total > cap:  # fixed amounts do not depend on the price: scale them down
        exact = [e * cap / total for e in exact]
        capped = True
    amounts = [cents(e) for e in exact]
    excess = sum(amounts, ZERO) - cap
    for i in reversed(range(len(amounts))):  # rounding up may pass the cap by a cent: trim from the top level
        if excess <= 0:
            break
        cut = min(amounts[i], max(excess, CENT).quantize(CENT, rounding="ROUND_UP"))
        amounts[i] -= cut
        excess -= cut
        capped = True
    if capped:
        rule_id += "+capped"
    out = []
    for i, amount in enumerate(amounts):
        if amount <= 0:
            continue
        rate = rates[i] if rates is not None else (amount / paid).quantize(RATE_PLACES)
        out.append(LevelTerm(i + 1, amount, rate, rule_id))
    return out
