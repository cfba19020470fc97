"""A payee's monthly settlement, computed from what the ledger holds for them (pure).

Inputs, per payee, as of the period's end: the **balance** — the net of every ledger row whose
amount sits in ``confirmed`` (commission confirmed and not yet settled, minus anything clawed
back after an earlier settlement, so a carried negative is simply a negative balance) — and
the month's **own level-1 confirmed GMV** (contract §2 ``tiers``: own sales only, never the
downline's). Out:

- ``bonus`` = the highest tier reached × that GMV, rounded half-up;
- ``gross`` = balance + bonus, the income paid this month;
- ``tax`` withheld on the gross (:mod:`engine.tax`), per payer and payee;
- ``net`` = gross − tax, paid out — unless it is below the minimum payout, or the gross is not
  positive: then nothing is paid, no tax is withheld and the balance carries into next month.

Ledger rows (contract §4), dated the last second of the period, ids derived from (period, payee),
derived from the recorded ``settlements`` row so a resumed run writes the same rows: ``bonus`` (+bonus into ``confirmed``), ``tax`` (−tax out of
``confirmed``), and the ``settle`` move (−net out of ``confirmed``, +net into ``settled``). After
a payment the payee's confirmed balance is exactly zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from engine.config import Tier
from schemas.ledger_entry import LedgerEntry, entry_id
from engine.money import ZERO, cents
from engine.tax import MonthIncome, Withholding, withhold

PAID, CARRIED, NOTHING = "paid", "carried", "nothing"


@dataclass(frozen=True)
class PayeeMonth:
    payee: str
    balance: Decimal  # confirmed and not settled as of the period's end (negative: carried)
    gmv: Decimal  # own level-1 GMV confirmed within the month
    history: tuple[MonthIncome, ...] = ()  # earlier settlements by the same payer (for tax)


@dataclass(frozen=True)
class Settlement:
    period: str  # YYYY-MM
    payee: str
    balance: Decimal
    gmv: Decimal
    tier: Tier | None
    bonus: Decimal
    gross: Decimal
    withholding: Withholding | None  # None: nothing paid, nothing withheld
    net: Decimal  # paid out
    status: str  # paid | carried (below the minimum, or negative) | nothing

    @property
    def tax(self) -> Decimal:
        return self.withholding.tax if self.withholding else ZERO

    @property
    def carried(self) -> Decimal:
        """What stays in ``confirmed`` for next month."""
        return self.gross if self.status != PAID else ZERO


def tier_for(gmv: Decimal, tiers: Sequence[Tier]) -> Tier | None:
    """The highest tier whose ``min_gmv`` the month's own GMV reached."""
    reached = [t for t in tiers if gmv >= t.min_gmv]
    return max(reached, key=lambda t: t.min_gmv) if reached else None


def settle_payee(p: PayeeMonth, period: str, tiers: Sequence[Tier], method: str, min_payout: Decimal) -> Settlement:
    year, month = (int(x) for x in period.split("-"))
    tier = tier_for(p.gmv, tiers) if p.gmv > 0 else None
    bonus = cents(tier.bonus * p.gmv) if tier else ZERO
    gross = p.balance + bonus
    if gross <= 0:  # nothing to pay; a bonus still counts (it reduces what is carried)
        return Settlement(period, p.payee, p.balance, p.gmv, tier, bonus, gross, None, ZERO,
                          CARRIED if gross < 0 or bonus else NOTHING)
    tax = withhold(method, year, month, gross, p.history)
    net = gross - tax.tax
    if net < min_payout:
        return Settlement(period, p.payee, p.balance, p.gmv, tier, bonus, gross, None, ZERO, CARRIED)
    return Settlement(period, p.payee, p.balance, p.gmv, tier, bonus, gross, tax, net, PAID)


def settlement_entries(s: dict, period_end_ms: int, currency: str) -> list[LedgerEntry]:
    """The ledger rows of one settlement, from its ``settlements`` row (so that a resumed run
    derives them from what was recorded, not from a ledger that may have grown since), dated the
    last second of the period."""
    ts = period_end_ms - 1000
    cause = f"settle:{s['period']}"

    def row(kind: str, part: str, amount: Decimal, status: str, rate: Decimal, rule: str) -> LedgerEntry:
        return LedgerEntry(entry_id("settlement", s["period"], s["payee"], kind, part), cause, ts, "", "", "",
                           s["payee"], 0, kind, amount, rate, rule, currency, status)

    rows = []
    if s["bonus"]:
        rows.append(row("bonus", "", s["bonus"], "confirmed", s["bonus_rate"], f"tier:{s['tier']}"))
    if s["status"] == PAID:
        if s["tax"]:
            rows.append(row("tax", "", -s["tax"], "confirmed", s["rate"], s["table_version"]))
        rows.append(row("settle", "out", -s["net"], "confirmed", Decimal(0), s["table_version"]))
        rows.append(row("settle", "in", s["net"], "settled", Decimal(0), s["table_version"]))
    return rows
