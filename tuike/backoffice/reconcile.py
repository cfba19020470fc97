"""`tuike reconcile --period YYYY-MM`: orders vs accrued commission vs settlements vs payouts.

Every check is one query on the ledger (the SQL subset of ClickHouse 18.16 and chDB) or one
look at a statement file, and every mismatch is one line that names what to look at:

- a paid order of the period attributed to a promoter in good standing (named on the order, or
  its fraud score's level-1 promoter; joined, never banned, not the buyer) with no ledger row;
- ledger rows dated in the period for an order the ``orders`` table does not know;
- the period was not settled (no closed settlement run in the evidence log);
- a settlement whose ``settle``/``tax``/``bonus`` rows in the ledger do not match it, or a paid
  payee whose confirmed balance after settlement is not zero (settled ≠ confirmed);
- a payee with a negative confirmed balance at the period's end (clawed back after settlement);
- an order line a settlement up to the period paid (``settled_lines``) with money held: paid
  money must never be held (the engine was not told what was paid: ``tuike settle`` tells it again);
- a settlement without its statement file, or with a statement whose SHA-256 changed.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.money import ZERO

from tuike.backoffice.evidence import EvidenceLog, evidence_path, sha256_file
from tuike.backoffice.settle import Period, payee_file_name


def reconcile(ledger: Any, config: Config, period: Period, data_dir: Path) -> list[str]:
    q = lambda sql: ledger.query(sql).rows  # noqa: E731
    p, s, e = period.name, period.start_s, period.end_s
    problems = []
    # attributed: a promoter named on the order or scored as its level 1, who joined, was never
    # banned and is not the buyer (those orders rightly earn nothing)
    for (order_id,) in q(
            "SELECT order_id FROM orders WHERE toUInt32(ts) >= {s} AND toUInt32(ts) < {e} "
            "AND ((promoter_id != '' AND promoter_id != customer_id AND promoter_id IN ({ok})) "
            "OR order_id IN (SELECT order_id FROM fraud_scores WHERE promoter_id IN ({ok}))) "
            "AND order_id NOT IN (SELECT order_id FROM commission_ledger) GROUP BY order_id ORDER BY order_id"
            .format(s=s, e=e, ok="SELECT promoter_id FROM promoters WHERE type = 'promoter.joined' AND promoter_id "
                                 "NOT IN (SELECT promoter_id FROM promoters WHERE type = 'promoter.banned')")):
        problems.append(f"order {order_id}: paid in {p} and attributed to a promoter, but no ledger row "
                        "(is its processing parked or dead-lettered? tuike query \"SELECT reason FROM dead_letters "
                        f"WHERE key = '{order_id}'\")")
    for (order_id, n) in q("SELECT order_id, count() FROM commission_ledger WHERE order_id != '' "
                           f"AND toUInt32(ts) >= {s} AND toUInt32(ts) < {e} AND order_id NOT IN "
                           "(SELECT order_id FROM orders) GROUP BY order_id ORDER BY order_id"):
        problems.append(f"order {order_id}: {n} ledger rows but no order.paid in the orders table")
    settled = {r[0]: r[1:] for r in q(
        f"SELECT payee, status, bonus, tax, net, carried, statement_sha256 FROM settlements WHERE period = '{p}'")}
    if not EvidenceLog(evidence_path(data_dir)).has(f"settlement_run/{p}"):
        problems.append(f"{p} has no settlement: run tuike settle --period {p}")
    moved: dict[tuple[str, str, str], Decimal] = {(b, k, st): Decimal(a) for b, k, st, a in q(
        "SELECT beneficiary_id, kind, status_after, sum(amount) FROM commission_ledger "
        f"WHERE event_id = 'settle:{p}' GROUP BY beneficiary_id, kind, status_after")}
    balances = {b: Decimal(a) for b, a in q(
        "SELECT beneficiary_id, sum(amount) FROM commission_ledger WHERE status_after = 'confirmed' "
        f"AND toUInt32(ts) < {e} GROUP BY beneficiary_id")}
    statements = data_dir / "statements" / p
    for payee in sorted({b for b, _k, _s in moved} - settled.keys()):
        problems.append(f"payee {payee}: settlement rows for {p} in the ledger but no settlement recorded")
    for payee, (status, bonus, tax, net, carried, digest) in sorted(settled.items()):
        want = {("bonus", "confirmed"): Decimal(bonus), ("tax", "confirmed"): -Decimal(tax),
                ("settle", "settled"): Decimal(net)}
        for (kind, bucket), amount in want.items():
            have = moved.get((payee, kind, bucket), ZERO)
            if have != amount:
                problems.append(f"payee {payee}: settlement {p} says {kind} {amount}, the ledger holds {have}")
        if status == "paid" and balances.get(payee, ZERO) != 0:
            problems.append(f"payee {payee}: settled in {p} but {balances[payee]} is still confirmed at its end "
                            "(settled ≠ confirmed)")
        if status == "carried" and balances.get(payee, ZERO) != Decimal(carried):
            problems.append(f"payee {payee}: settlement {p} carried {carried} but {balances.get(payee, ZERO)} is "
                            "confirmed at its end")
        path = statements / f"{payee_file_name(payee)}.json"
        if not path.exists():
            problems.append(f"payee {payee}: settlement {p} has no statement ({path} is missing)")
        elif sha256_file(path) != digest:
            problems.append(f"payee {payee}: the statement {path} was changed after settlement (SHA-256 differs)")
    paid_in = {(o, sku, b, int(lv)): when for o, sku, b, lv, when in q(
        "SELECT order_id, sku, beneficiary_id, level, min(period) FROM settled_lines WHERE order_id IN "
        "(SELECT order_id FROM commission_ledger WHERE status_after = 'held') "
        f"AND period <= '{p}' GROUP BY order_id, sku, beneficiary_id, level")}
    for order_id, sku, payee, level, amount in q(
            "SELECT order_id, item_sku, beneficiary_id, level, sum(amount) AS a FROM commission_ledger "
            "WHERE status_after = 'held' GROUP BY order_id, item_sku, beneficiary_id, level HAVING a != 0 "
            "ORDER BY order_id, item_sku, level"):
        when = paid_in.get((order_id, sku, payee, int(level)))
        if when:
            problems.append(f"order {order_id} item {sku}: {amount} of level {level} ({payee}) is held but the "
                            f"{when} settlement paid it (tell the engine again: tuike settle --period {when})")
    for payee, amount in sorted(balances.items()):
        if amount < 0:
            problems.append(f"payee {payee}: negative confirmed balance {amount} at the end of {p} "
                            "(clawed back after settlement; carried into the next settlement)")
    return problems
