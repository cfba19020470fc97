"""`tuike settle --period YYYY-MM`: close a month for every payee (the I/O around
:mod:`engine.settlement`).

Reads the ledger as of the period's end (a calendar month in the configured timezone), settles
each payee, and writes, in this order so that a crash anywhere is finished by running the
command again:

1. one statement per payee (``statements/YYYY-MM/<payee>.json`` and ``.csv``: the ledger rows
   behind the balance, the tier, the tax computation line by line), the withholding export for
   filing (``tax/YYYY-MM-withholding.csv``, 扣缴申报) and each paid payee's year-to-date tax
   certificate data (``tax/certificates/YYYY/<payee>.json``, 完税证明);
2. the ``settlements`` rows (every figure, and each statement's SHA-256), the order lines each
   payment paid (``settled_lines``) and the fund-flow alerts: from here on the period's figures
   are fixed;
3. the ``bonus``, ``tax`` and ``settle`` ledger rows, derived from the ``settlements`` rows, in
   generation :data:`~schemas.analytics.SETTLEMENT_GENERATION` (a replay of the events keeps them);
4. one ``order.settled`` event per order with paid lines (from the ``settled_lines`` rows
   recorded in step 2), handed to ``tell``: the engine that keeps the orders' state (the
   embedded state, or the Kafka input the workers read). Paid money is settled, and a ban or
   fraud hold dated later holds only what is still unpaid;
5. the statements' and the export's SHA-256 into the evidence log (:mod:`tuike.backoffice.evidence`), and a
   ``settlement_run`` record: the period is closed.

A run that stopped after step 2 is finished from the recorded rows, whatever reached the ledger
since (the same ledger rows, ids and evidence); one that stopped before computes everything
again. Periods close one after the other, once over. A closed period is not settled again:
money that arrives late for it (a refund of a settled order, a late confirmation) is in the
next period's balance.
"""
from __future__ import annotations

import csv
import hashlib
import io
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

import orjson

from engine.config import Config
from schemas.ledger_entry import entry_id
from engine.money import ZERO, cents
from engine.settlement import NOTHING, PAID, PayeeMonth, Settlement, settle_payee, settlement_entries
from engine.tax import MonthIncome
from schemas.facts import FACT_COLUMNS
from schemas.analytics import SETTLEMENT_GENERATION
from sinks import Batch

from tuike.backoffice.alerts import fund_flow_alerts
from tuike.backoffice.evidence import EvidenceLog, evidence_path, sha256_file


class SettleError(ValueError):
    """The period cannot be settled as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class Period:
    name: str  # YYYY-MM
    start_s: int  # first second, UTC epoch
    end_s: int  # first second of the next period

    @property
    def year(self) -> int:
        return int(self.name[:4])


def period_of(text: str, tz: str) -> Period:
    try:
        year, month = (int(x) for x in text.split("-"))
        start = datetime(year, month, 1, tzinfo=ZoneInfo(tz))
    except ValueError:
        raise SettleError(f"--period {text!r}: expected YYYY-MM, e.g. 2026-11") from None
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=ZoneInfo(tz))
    return Period(f"{year:04d}-{month:02d}", int(start.timestamp()), int(end.timestamp()))


@dataclass
class Outcome:
    period: Period
    payees: int  # settled (paid or carried)
    already: bool  # the period had been closed: nothing was written
    rows: int  # ledger rows written
    alerts: int


Tell = Callable[[list[dict]], None]


def settle(ledger: Any, config: Config, period_text: str, data_dir: Path, now: float | None = None,
           tell: Tell | None = None) -> Outcome:
    """Settle one period (see the module doc); ``now`` (epoch seconds) refuses a period not over yet;
    ``tell`` hands the ``order.settled`` events to the engine (None: only the ledger is settled,
    for a ledger no engine keeps state for)."""
    period = period_of(period_text, config.timezone)
    evidence = EvidenceLog(evidence_path(data_dir))
    closed = _closed_periods(evidence)
    _log_agreements(ledger, evidence)
    if period.name in closed:  # nothing to write; telling the engine again is counted once
        if tell is not None:
            tell(settled_events(period, _recorded_lines(ledger, period)))
        return Outcome(period, 0, True, 0, 0)
    _check_order(period, closed, config.timezone, time.time() if now is None else now)
    settled_at = datetime.fromtimestamp(period.end_s - 1, timezone.utc)
    recorded = _recorded(ledger, period)
    if recorded:  # a run that stopped after recording its figures: finish it from them, not from the ledger
        rows, alerts = recorded, []
    else:
        history = _history(ledger, config)
        settlements = [s for s in (settle_payee(p, period.name, config.tiers, config.tax_method, config.min_payout)
                                   for p in _payee_months(ledger, period, history)) if s.status != NOTHING]
        lines = _statement_lines(ledger, period, closed, config.timezone)
        out = data_dir / "statements" / period.name
        out.mkdir(parents=True, exist_ok=True)
        rows = [_settlement_row(s, config, _write_statement(out, s, lines.get(s.payee, []), config), settled_at)
                for s in settlements]
        _write_tax_files(data_dir, period, settlements, history, config)
        alerts = fund_flow_alerts(period.name, settlements, history, _attributed_gmv(ledger, period),
                                  config, settled_at, _shared_accounts(ledger))
        paid = _paid_lines(ledger, period, {s.payee for s in settlements if s.status == PAID})
        # the figures, recorded first (the lines before the settlements: a resumed run finds both)
        ledger.write(Batch([], {"settled_lines": paid, "settlements": rows, "alerts": alerts}, []))
    entries = [e for r in rows for e in settlement_entries(r, period.end_s * 1000, config.currency)]
    ledger.write(Batch(entries, {}, [], generation=SETTLEMENT_GENERATION))
    if tell is not None:
        tell(settled_events(period, _recorded_lines(ledger, period)))
    export = data_dir / "tax" / f"{period.name}-withholding.csv"
    evidence.append_many([
        *(("statement", f"statement/{period.name}/{r['payee']}",
           {"file": f"statements/{period.name}/{payee_file_name(r['payee'])}.json", "sha256": r["statement_sha256"]})
          for r in rows),
        ("tax_export", f"tax_export/{period.name}", {"file": f"tax/{export.name}", "sha256": sha256_file(export)}),
        ("settlement_run", f"settlement_run/{period.name}", {
            "payees": len(rows), "paid": sum(1 for r in rows if r["status"] == PAID),
            "net": str(sum((r["net"] for r in rows), ZERO)), "tax": str(sum((r["tax"] for r in rows), ZERO))})])
    return Outcome(period, len(rows), False, len(entries), len(alerts))


def _check_order(period: Period, closed: set[str], tz: str, now: float) -> None:
    """Periods close one after the other, once they are over: a skipped month would lose its tier
    bonus, and a month settled before its end would miss its last days."""
    if period.end_s > now:
        raise SettleError(f"{period.name} is not over yet: it ends {datetime.fromtimestamp(period.end_s, ZoneInfo(tz))}")
    if closed:
        last = max(closed)
        after = period_of(last, tz)
        expected = datetime.fromtimestamp(after.end_s, ZoneInfo(tz)).strftime("%Y-%m")
        if period.name != expected:
            raise SettleError(f"{period.name} cannot be settled now: periods close in order, and the next one "
                              f"after {last} is {expected}")


# --- reading the ledger -------------------------------------------------------------------------

def _q(ledger: Any, sql: str) -> list:
    return ledger.query(sql).rows


def _closed_periods(evidence: EvidenceLog) -> set[str]:
    """Periods whose settlement finished: the evidence log's run records (a month with nothing
    to pay is closed too, or the next month could never be settled)."""
    return {ref.split("/", 1)[1] for ref in evidence.refs("settlement_run/")}


def _recorded(ledger: Any, period: Period) -> list[dict]:
    """The period's ``settlements`` rows, if a run recorded them."""
    cols = FACT_COLUMNS["settlements"]
    rows = _q(ledger, f"SELECT {', '.join(cols)} FROM settlements WHERE period = '{period.name}' ORDER BY payee")
    return [dict(zip(cols, r)) for r in rows]


def _paid_lines(ledger: Any, period: Period, payees: set[str]) -> list[dict]:
    """The order lines a payment pays: a paid payee's lines with money confirmed by the period's
    end that no earlier settlement paid."""
    if not payees:
        return []
    rows = _q(ledger, (
        "SELECT order_id, item_sku, beneficiary_id, level, sum(amount) AS a FROM commission_ledger "
        f"WHERE status_after = 'confirmed' AND order_id != '' AND toUInt32(ts) < {period.end_s} "
        "AND (order_id, item_sku, beneficiary_id, level) NOT IN "
        "(SELECT order_id, sku, beneficiary_id, level FROM settled_lines) "
        "GROUP BY order_id, item_sku, beneficiary_id, level HAVING a > 0"))
    return [{"period": period.name, "order_id": o, "sku": sku, "beneficiary_id": b, "level": int(level),
             "amount": Decimal(a)} for o, sku, b, level, a in rows if b in payees]


def _recorded_lines(ledger: Any, period: Period) -> list[tuple]:
    return _q(ledger, "SELECT order_id, sku, beneficiary_id, level FROM settled_lines "
                      f"WHERE period = '{period.name}' ORDER BY order_id, sku, beneficiary_id, level")


def settled_events(period: Period, lines: Iterable[tuple]) -> list[dict]:
    """One ``order.settled`` event per order, dated the period's last millisecond (the cutoff the
    settlement read the ledger at), with an id derived from (period, order): telling again is
    counted once."""
    cutoff = datetime.fromtimestamp(period.end_s - 0.001, timezone.utc).isoformat(timespec="milliseconds")
    by_order: dict[str, list[dict]] = defaultdict(list)
    for order, sku, who, level in lines:
        by_order[order].append({"sku": sku, "beneficiary_id": who, "level": int(level)})
    return [{"type": "order.settled", "event_id": f"settled:{period.name}:{order}", "ts": cutoff,
             "order_id": order, "period": period.name, "lines": paid} for order, paid in by_order.items()]


def _own_rows(period: Period) -> str:
    """Leave the period's own settlement rows out: a resumed run must see what the first saw."""
    return f"event_id != 'settle:{period.name}'"


def _payee_months(ledger: Any, period: Period, history: dict[str, list[MonthIncome]]) -> list[PayeeMonth]:
    balances = {b: Decimal(a) for b, a in _q(ledger, (
        "SELECT beneficiary_id, sum(amount) FROM commission_ledger WHERE status_after = 'confirmed' "
        f"AND toUInt32(ts) < {period.end_s} AND {_own_rows(period)} GROUP BY beneficiary_id"))}
    gmv = _own_gmv(ledger, period)
    payees = sorted(set(balances) | set(gmv))
    return [PayeeMonth(p, balances.get(p, ZERO), gmv.get(p, ZERO), tuple(history.get(p, ()))) for p in payees]


def _own_gmv(ledger: Any, period: Period) -> dict[str, Decimal]:
    """Each promoter's own level-1 GMV confirmed in the period: the items whose commission last
    moved into ``confirmed`` within it (so an item counts once, in the month it became payable
    for good — a hold and a later release count it in the release's month), each at its paid
    amount × the share of its commission still confirmed at the period's end (refunded and held
    money does not count)."""
    into = "kind IN ('confirm', 'release') AND status_after = 'confirmed' AND amount > 0"
    orders = (f"(SELECT order_id FROM commission_ledger WHERE level = 1 AND {into} "
              f"AND toUInt32(ts) >= {period.start_s} AND toUInt32(ts) < {period.end_s})")
    # one query, filtered where it is read: only the items that count come back, with their paid
    # amount (two queries brought back every item of the orders, once from each table, to be matched)
    rows = _q(ledger, (
        "SELECT beneficiary_id, confirmed, accrued, item_paid FROM ("
        f"SELECT beneficiary_id, order_id, item_sku, maxIf(toUInt32(ts), {into}) AS last_in, "
        "sumIf(amount, status_after = 'confirmed') AS confirmed, "
        "sumIf(amount, kind = 'accrue' AND amount > 0) AS accrued "
        f"FROM commission_ledger WHERE level = 1 AND toUInt32(ts) < {period.end_s} AND order_id IN {orders} "
        "GROUP BY beneficiary_id, order_id, item_sku "
        f"HAVING last_in >= {period.start_s} AND confirmed > 0 AND accrued > 0"
        ") AS l ANY INNER JOIN (SELECT order_id, sku AS item_sku, max(paid_amount) AS item_paid FROM order_items "
        f"WHERE order_id IN {orders} GROUP BY order_id, sku) AS i USING order_id, item_sku"))
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for b, confirmed, accrued, item in rows:
        if item:
            out[b] += min(item, cents(item * min(confirmed, accrued) / accrued))
    return dict(out)


def _history(ledger: Any, config: Config) -> dict[str, list[MonthIncome]]:
    """Earlier paid settlements by this payer, per payee (cumulative tax, payout history)."""
    out: dict[str, list[MonthIncome]] = defaultdict(list)
    for payee, period, income, tax in _q(ledger, (
            f"SELECT payee, period, income, tax FROM settlements WHERE payer = '{_sql(config.payer)}' "
            "AND status = 'paid' ORDER BY payee, period")):
        out[payee].append(MonthIncome(int(period[:4]), int(period[5:7]), Decimal(income), Decimal(tax)))
    return out


def _log_agreements(ledger: Any, evidence: EvidenceLog) -> None:
    """Every signed agreement (promoter.agreed, from the agreements table) into the evidence log,
    in event-time order; one already logged is not logged again."""
    signed = [(f"agreement/{promoter}/{version}/{event_id}",  # every signature, a re-signed version too
               {"event_id": event_id, "promoter_id": promoter, "version": version, "text_sha256": digest,
                "payout_account": account, "ts": ts.isoformat() if hasattr(ts, "isoformat") else str(ts)})
              for event_id, ts, promoter, version, digest, account in _q(ledger, (
                  "SELECT event_id, ts, promoter_id, agreement_version, text_sha256, payout_account FROM agreements "
                  "ORDER BY ts, event_id"))]
    evidence.append_many(("agreement", ref, data) for ref, data in signed if not evidence.has(ref))


def _shared_accounts(ledger: Any) -> list[tuple[str, list[str]]]:
    """Payout accounts named by more than one promoter's agreements, not alerted before."""
    raised = {a for (a,) in _q(ledger, "SELECT subject FROM alerts WHERE kind = 'shared_account'")}
    by_account: dict[str, set[str]] = defaultdict(set)
    for account, promoter in _q(ledger, "SELECT DISTINCT payout_account, promoter_id FROM agreements "
                                        "WHERE payout_account != ''"):
        by_account[account].add(promoter)
    return sorted((a, sorted(p)) for a, p in by_account.items() if len(p) > 1 and a not in raised)


def _attributed_gmv(ledger: Any, period: Period) -> Decimal:
    rows = _q(ledger, (
        "SELECT sum(paid_amount) FROM order_items WHERE order_id IN (SELECT order_id FROM commission_ledger "
        f"WHERE level = 1 AND kind = 'accrue') AND toUInt32(ts) >= {period.start_s} AND toUInt32(ts) < {period.end_s}"))
    return Decimal(rows[0][0] or 0) if rows else ZERO


def _statement_lines(ledger: Any, period: Period, closed: set[str], tz: str) -> dict[str, list[tuple]]:
    """The confirmed-money rows dated since the last closed period, per payee (rows dated earlier
    that arrived after it was closed show as ``carried_in``)."""
    since = max((period_of(p, tz).end_s for p in closed), default=0)
    out: dict[str, list[tuple]] = defaultdict(list)
    for row in _q(ledger, (
            "SELECT beneficiary_id, order_id, item_sku, level, kind, amount, rate, rule_id, toUInt32(ts) "
            f"FROM commission_ledger WHERE status_after = 'confirmed' AND toUInt32(ts) >= {since} "
            f"AND toUInt32(ts) < {period.end_s} AND {_own_rows(period)} "
            "ORDER BY beneficiary_id, ts, order_id, item_sku, level, kind, amount")):
        out[row[0]].append(row[1:])
    return out


def _sql(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


# --- writing -----------------------------------------------------------------------------------

def _money(x: Decimal) -> str:
    return f"{x:.2f}"


def _write_statement(out: Path, s: Settlement, lines: list[tuple], config: Config) -> str:
    """The payee's statement as JSON (the record) and CSV (for a spreadsheet); the JSON's SHA-256."""
    listed = sum((r[4] for r in lines), ZERO)
    w = s.withholding
    doc = {
        "payee": s.payee, "period": s.period, "payer": config.payer, "currency": config.currency,
        "status": s.status,
        "carried_in": _money(s.balance - listed),
        "rows": [{"order_id": o, "sku": sku, "level": int(lv), "kind": k, "amount": _money(a),
                  "rate": str(r), "rule_id": rule, "ts": _local(t, config.timezone)}
                 for o, sku, lv, k, a, r, rule, t in lines],
        "balance": _money(s.balance),
        "own_level1_gmv": _money(s.gmv),
        "tier": None if s.tier is None else {"min_gmv": str(s.tier.min_gmv), "bonus": str(s.tier.bonus)},
        "bonus": _money(s.bonus),
        "gross": _money(s.gross),
        "tax": None if w is None else {
            "method": w.method, "table_version": w.table_version, "income": _money(w.income),
            "taxable": _money(w.taxable), "rate": str(w.rate), "quick_deduction": _money(w.quick_deduction),
            "tax": _money(w.tax), "computation": [[line.label, _money(line.amount)] for line in w.lines]},
        "net_paid": _money(s.net),
        "carried_out": _money(s.carried),
    }
    record = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    name = payee_file_name(s.payee)
    (out / f"{name}.json").write_bytes(record)
    buf = io.StringIO()
    csv_out = csv.writer(buf)
    csv_out.writerow(["section", "order_id", "sku", "level", "kind", "amount", "rate", "rule_id", "ts"])
    csv_out.writerow(["carried_in", "", "", "", "", doc["carried_in"], "", "", ""])
    for r in doc["rows"]:
        csv_out.writerow(["row", _cell(r["order_id"]), _cell(r["sku"]), r["level"], r["kind"], r["amount"], r["rate"],
                          _cell(r["rule_id"]), r["ts"]])
    for label in ("balance", "bonus", "gross"):
        csv_out.writerow([label, "", "", "", "", doc[label], "", "", ""])
    for label, amount in (doc["tax"] or {}).get("computation", []):
        csv_out.writerow(["tax", "", "", "", label, amount, "", "", ""])
    for label in ("net_paid", "carried_out"):
        csv_out.writerow([label, "", "", "", "", doc[label], "", "", ""])
    (out / f"{name}.csv").write_text(buf.getvalue(), encoding="utf-8")
    return hashlib.sha256(record).hexdigest()  # of the bytes written: reading the file back cost a read per payee


def _local(epoch_s: int, tz: str) -> str:
    """A ledger time (epoch seconds) as the shop reads it: in the configured timezone, like the period."""
    return datetime.fromtimestamp(epoch_s, ZoneInfo(tz)).isoformat()


def _cell(text: str) -> str:
    """An id as a CSV cell a spreadsheet shows as text: ids are free text, and one starting with
    = + - @ would be run as a formula when finance opens the file."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def payee_file_name(payee: str) -> str:
    """A payee id as a file name (ids are free text: keep it readable, never a path)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in payee)
    return safe if safe == payee and safe not in (".", "..") else f"{safe}-{entry_id('payee', payee)[:8]}"


def _settlement_row(s: Settlement, config: Config, digest: str, settled_at: datetime) -> dict:
    w = s.withholding
    return {"period": s.period, "payee": s.payee, "payer": config.payer, "balance": s.balance, "gmv": s.gmv,
            "tier": "" if s.tier is None else str(s.tier.min_gmv),
            "bonus_rate": s.tier.bonus if s.tier else Decimal(0), "bonus": s.bonus, "income": s.gross if w else ZERO,
            "taxable": cents(w.taxable) if w else ZERO, "rate": w.rate if w else Decimal(0),
            "quick_deduction": w.quick_deduction if w else ZERO, "tax": s.tax, "net": s.net, "carried": s.carried,
            "status": s.status, "method": w.method if w else config.tax_method,
            "table_version": w.table_version if w else "", "statement_sha256": digest, "settled_at": settled_at}


def _write_tax_files(data_dir: Path, period: Period, settlements: Iterable[Settlement],
                     history: dict[str, list[MonthIncome]], config: Config) -> Path:
    """The withholding export for filing (扣缴申报) and the year-to-date certificate data of each
    paid payee (完税证明)."""
    tax_dir = data_dir / "tax"
    tax_dir.mkdir(parents=True, exist_ok=True)
    export = tax_dir / f"{period.name}-withholding.csv"
    paid = [s for s in settlements if s.status == PAID]
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["payer", "payee", "period", "method", "table_version", "income", "taxable", "rate",
                  "quick_deduction", "tax"])
    for s in paid:
        w = s.withholding
        assert w is not None
        out.writerow([_cell(config.payer), _cell(s.payee), s.period, w.method, w.table_version, _money(w.income), _money(w.taxable),
                      str(w.rate), _money(w.quick_deduction), _money(w.tax)])
    export.write_text(buf.getvalue(), encoding="utf-8")
    certs = tax_dir / "certificates" / str(period.year)
    certs.mkdir(parents=True, exist_ok=True)
    for s in paid:
        months = [m for m in history.get(s.payee, []) if m.year == period.year and f"{m.year:04d}-{m.month:02d}" < s.period]
        months.append(MonthIncome(period.year, int(s.period[5:]), s.gross, s.tax))
        doc = {"payer": config.payer, "payee": s.payee, "year": period.year, "currency": config.currency,
               "months": [{"period": f"{m.year:04d}-{m.month:02d}", "income": _money(m.income), "tax": _money(m.withheld)}
                          for m in months],
               "income": _money(sum((m.income for m in months), ZERO)),
               "tax_withheld": _money(sum((m.withheld for m in months), ZERO)),
               "through": s.period}
        (certs / f"{payee_file_name(s.payee)}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
    return export
