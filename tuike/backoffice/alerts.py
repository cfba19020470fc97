"""Fund-flow monitoring (资金流监控): alerts raised when a period is settled.

- ``payout_jump``: a payee's net payout is more than ``settlement.alert_jump`` times the median
  of their own earlier payouts (at least 3 of them) — an account taken over, or a sudden scheme;
- ``payout_share``: the period's payouts (before tax) exceed ``settlement.alert_share`` of the
  GMV attributed to promoters in the period — the rules, or the fraud screen, are leaking;
- ``shared_account``: one payout account is named by several promoters' agreements
  (``promoter.agreed``) — one person behind several promoters collects several levels; raised
  once, in the first period settled after it appears.

Each alert is one row of the ``alerts`` table, with an id derived from (period, kind, subject),
so settling again raises nothing twice. Pure but for the rows it returns.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from statistics import median
from typing import Iterable, Mapping, Sequence

from engine.config import Config
from schemas.ledger_entry import entry_id
from engine.money import ZERO, cents
from engine.settlement import PAID, Settlement
from engine.tax import MonthIncome

MIN_HISTORY = 3


def fund_flow_alerts(period: str, settlements: Sequence[Settlement], history: Mapping[str, list[MonthIncome]],
                     attributed_gmv: Decimal, config: Config, ts: datetime,
                     shared_accounts: Iterable[tuple[str, list[str]]] = ()) -> list[dict]:
    out = []

    def alert(kind: str, subject: str, detail: str, amount: Decimal) -> None:
        out.append({"alert_id": entry_id("alert", period, kind, subject), "period": period, "kind": kind,
                    "subject": subject, "detail": detail, "amount": amount, "ts": ts})

    paid = [s for s in settlements if s.status == PAID]
    for s in paid:
        before = [m.income - m.withheld for m in history.get(s.payee, [])
                  if f"{m.year:04d}-{m.month:02d}" < period]
        if len(before) >= MIN_HISTORY:
            usual = median(before)
            if usual > 0 and s.net > config.alert_jump * usual:
                alert("payout_jump", s.payee, f"net payout {s.net} is {cents(s.net / usual)}× the median of their "
                      f"{len(before)} earlier payouts ({cents(usual)})", s.net)
    gross = sum((s.gross for s in paid), ZERO)
    if gross > 0 and (attributed_gmv <= 0 or gross > config.alert_share * attributed_gmv):
        share = "no attributed GMV" if attributed_gmv <= 0 else f"{cents(gross / attributed_gmv * 100)}%"
        alert("payout_share", period, f"payouts before tax {gross} are {share} of the period's attributed GMV "
              f"({attributed_gmv}); the limit is {config.alert_share * 100}%", gross)
    for account, promoters in shared_accounts:
        alert("shared_account", account, f"payout account shared by {len(promoters)} promoters: "
              f"{', '.join(sorted(promoters))}", ZERO)
    return out
