"""`tuike settle`, `tuike reconcile` and the evidence they leave, on a real chDB ledger fed by the
embedded pipeline (tuike/backoffice/settle.py, engine/settlement.py, tuike/backoffice/reconcile.py)."""
from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from engine.config import parse_config
from sinks import open_ledger
from tests.support.shop import banned, bound, completed, item, joined, paid, refunded, reviewed, ts, with_ids
from tuike.backoffice.evidence import evidence_path, verify
from schemas.records import read_records, records_of
from topologies.embedded import run_events
from tuike.lab.generate import write_events
from tuike.backoffice.reconcile import reconcile
from tuike.backoffice.settle import SettleError, period_of, settle

D = Decimal
RULES = {"commission": {"levels": ["0.10", "0.05", "0.02"]}, "tiers": [{"min_gmv": "1000", "bonus": "0.01"}],
         "settlement": {"min_payout": "50.00"}}


class Books:
    """A data dir with a chDB ledger: feed events, settle, query."""

    def __init__(self, root: Path, rules: dict):
        self.dir = root
        self.config = parse_config(rules)
        self.ledger = open_ledger(None, root)
        self.n = 0
        self.told: list[dict] = []

    def feed(self, events: list[dict]) -> "Books":
        self.n += 1
        path = self.dir / f"events{self.n}.jsonl"
        write_events(with_ids(events), path)
        run_events(read_records(path), config=self.config, data_dir=self.dir, ledger=self.ledger)
        return self

    def settle(self, period: str):
        # every period of these tests is over; the engine is told what was paid, as by `tuike settle`
        return settle(self.ledger, self.config, period, self.dir, now=4e9, tell=self.tell)

    def tell(self, events: list[dict]) -> None:
        self.told.extend(events)
        stats = run_events(records_of(events, "settle"), config=self.config, data_dir=self.dir, ledger=self.ledger)
        assert stats.rejected == 0, stats.rejected_reasons

    def held(self, payee: str) -> Decimal:
        rows = self.one(f"SELECT sum(amount) FROM commission_ledger WHERE beneficiary_id = '{payee}' "
                        "AND status_after = 'held'")
        return D(rows[0][0] or 0)

    def one(self, sql: str):
        return self.ledger.query(sql).rows

    def settlement(self, period: str, payee: str) -> dict:
        cols = ["status", "balance", "gmv", "bonus", "income", "tax", "net", "carried"]
        rows = self.one(f"SELECT {', '.join(cols)} FROM settlements WHERE period = '{period}' AND payee = '{payee}'")
        return dict(zip(cols, rows[0])) if rows else {}

    def confirmed(self, payee: str, before: str) -> Decimal:
        end = period_of(before, self.config.timezone).end_s
        rows = self.one(f"SELECT sum(amount) FROM commission_ledger WHERE beneficiary_id = '{payee}' "
                        f"AND status_after = 'confirmed' AND toUInt32(ts) < {end}")
        return D(rows[0][0] or 0)

    def count(self) -> int:
        return int(self.one("SELECT count() FROM commission_ledger")[0][0])


@pytest.fixture
def books(tmp_path):
    b = Books(tmp_path, RULES)
    yield b
    b.ledger.close()


def sale(order, customer, promoter, price, paid_at, done_at):
    return [bound(customer, promoter, paid_at), paid(order, customer, paid_at, item(f"S-{order}", price)),
            completed(order, done_at)]


def october(b: Books) -> Books:
    events = [joined("P1"), joined("P2", day=1), joined("P3", day=1)]
    events += sale("O1", "C1", "P1", "2000.00", ts(2, month=10), ts(3, month=10))  # 200.00, confirmed Oct 10
    events += sale("O2", "C2", "P1", "300.00", ts(5, month=10), ts(6, month=10))  # 30.00, confirmed Oct 13
    events += sale("O3", "C3", "P2", "100.00", ts(5, month=10), ts(6, month=10))  # 10.00: below the minimum
    events += sale("O4", "C4", "P3", "40000.00", ts(5, month=10), ts(6, month=10))  # 4,000.00: taxed
    for e in events:
        if e["type"] == "promoter.joined":
            e["ts"] = ts(1, 0, month=10)
    return b.feed(events)


def test_a_month_settles_bonus_tax_minimum_and_carried_balances(books):
    october(books)
    outcome = books.settle("2026-10")
    assert not outcome.already
    p1 = books.settlement("2026-10", "P1")
    # own level-1 GMV 2,300.00 confirmed in October reaches the 1,000 tier: 1% bonus = 23.00
    assert (p1["status"], p1["balance"], p1["gmv"], p1["bonus"], p1["tax"], p1["net"]) == \
        ("paid", D("230.00"), D("2300.00"), D("23.00"), D("0.00"), D("253.00"))
    assert books.confirmed("P1", "2026-10") == 0  # paid out: nothing left confirmed
    # 4,000.00 of income: taxable 4,000 − 800 = 3,200 × 20% = 640.00 (劳务报酬 per payment); GMV 40,000: bonus 400
    p3 = books.settlement("2026-10", "P3")
    assert (p3["income"], p3["tax"], p3["net"]) == (D("4400.00"), D("704.00"), D("3696.00"))  # 4,400 × 80% × 20%
    p2 = books.settlement("2026-10", "P2")
    assert (p2["status"], p2["net"], p2["carried"]) == ("carried", D("0.00"), D("10.00"))  # below 50.00
    assert books.confirmed("P2", "2026-10") == D("10.00")
    kinds = books.one("SELECT kind, status_after, sum(amount) FROM commission_ledger WHERE event_id = 'settle:2026-10' "
                      "AND beneficiary_id = 'P3' GROUP BY kind, status_after ORDER BY kind, status_after")
    assert [tuple(r) for r in kinds] == [("bonus", "confirmed", D("400.00")), ("settle", "confirmed", D("-3696.00")),
                                         ("settle", "settled", D("3696.00")), ("tax", "confirmed", D("-704.00"))]
    statement = orjson.loads((books.dir / "statements" / "2026-10" / "P3.json").read_bytes())
    assert statement["tax"]["method"] == "per_payment" and statement["net_paid"] == "3696.00"
    assert sum(D(r["amount"]) for r in statement["rows"]) + D(statement["carried_in"]) == D(statement["balance"])
    export = (books.dir / "tax" / "2026-10-withholding.csv").read_text().splitlines()
    assert export[0].startswith("payer,payee,period,method") and len(export) == 3  # P1 and P3 paid
    assert reconcile(books.ledger, books.config, period_of("2026-10", "Asia/Shanghai"), books.dir) == []


def test_settling_again_changes_nothing_and_periods_close_in_order(books):
    october(books)
    books.settle("2026-10")
    rows, files = books.count(), sorted((books.dir / "statements").rglob("*.json"))
    digests = [f.read_bytes() for f in files]
    records = verify(evidence_path(books.dir)).records
    again = books.settle("2026-10")
    assert again.already and books.count() == rows
    assert [f.read_bytes() for f in sorted((books.dir / "statements").rglob("*.json"))] == digests
    assert verify(evidence_path(books.dir)).records == records
    books.settle("2026-11")
    with pytest.raises(SettleError, match="close in order"):
        books.settle("2026-09")


def test_a_crash_before_the_period_closed_is_resumed_with_the_same_rows(books):
    october(books)
    books.settle("2026-10")
    rows = books.count()
    # the run record is the last thing written: without it the period is not closed, and a new run
    # computes the same rows (the period's own rows are left out of its balances)
    log = evidence_path(books.dir)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))
    assert not books.settle("2026-10").already
    assert books.count() == rows and books.settlement("2026-10", "P1")["net"] == D("253.00")


def test_small_balances_accumulate_and_a_refund_after_settlement_is_carried_negative(books):
    october(books)
    books.settle("2026-10")
    november = sale("O5", "C5", "P2", "450.00", ts(2), ts(3))  # P2: 10.00 carried + 45.00 = 55.00 ≥ 50
    november.append(refunded("O1", "R1", ts(5), amount="1000.00"))  # settled in October: −100.00 for P1
    books.feed(november)
    books.settle("2026-11")
    assert books.settlement("2026-11", "P2")["net"] == D("55.00")
    p1 = books.settlement("2026-11", "P1")
    assert (p1["status"], p1["balance"], p1["carried"], p1["tax"]) == ("carried", D("-100.00"), D("-100.00"), D("0.00"))
    problems = reconcile(books.ledger, books.config, period_of("2026-11", "Asia/Shanghai"), books.dir)
    assert problems == ["payee P1: negative confirmed balance -100.00 at the end of 2026-11 (clawed back after "
                        "settlement; carried into the next settlement)"]
    books.feed(sale("O6", "C6", "P1", "3000.00", ts(1, month=12), ts(2, month=12)))  # 300.00 in December
    books.settle("2026-12")
    december = books.settlement("2026-12", "P1")
    assert (december["balance"], december["bonus"], december["net"]) == (D("200.00"), D("30.00"), D("230.00"))


def test_cumulative_platform_tax_across_months(tmp_path):
    books = Books(tmp_path, {**RULES, "tiers": [], "tax": {"method": "cumulative_platform"}})
    try:
        events = [{**joined("P4"), "ts": ts(1, 0, month=9)}]
        for month in (10, 11, 12):  # 100,000.00 × 10% = 10,000.00 confirmed each month
            events += sale(f"O{month}", f"C{month}", "P4", "100000.00", ts(1, month=month), ts(2, month=month))
        books.feed(events)
        for period in ("2026-10", "2026-11", "2026-12"):
            books.settle(period)
            s = books.settlement(period, "P4")
            assert (s["income"], s["tax"], s["net"]) == (D("10000.00"), D("90.00"), D("9910.00")), period
        cert = orjson.loads((tmp_path / "tax" / "certificates" / "2026" / "P4.json").read_bytes())
        assert (cert["income"], cert["tax_withheld"], len(cert["months"])) == ("30000.00", "270.00", 3)
    finally:
        books.ledger.close()


def test_reconcile_finds_each_kind_of_planted_mismatch(books):
    from schemas.ledger_entry import LedgerEntry
    from sinks import Batch
    from datetime import datetime, timezone

    october(books)
    books.settle("2026-10")
    period = period_of("2026-10", "Asia/Shanghai")
    assert reconcile(books.ledger, books.config, period, books.dir) == []
    oct_ts = datetime(2026, 10, 20, tzinfo=timezone.utc)
    books.ledger.write(Batch(
        [LedgerEntry("planted-1", "x", int(oct_ts.timestamp() * 1000), "GHOST", "S", "C", "P1", 1, "accrue",
                     D("5.00"), D("0.10"), "", "CNY", "confirmed"),
         LedgerEntry("planted-2", "x", int(oct_ts.timestamp() * 1000), "O4", "S-O4", "C4", "P3", 1, "hold",
                     D("100.00"), D("0.10"), "", "CNY", "held")],
        {"orders": [{"event_id": "planted-o", "order_id": "LOST", "ts": oct_ts, "customer_id": "C9", "currency": "CNY",
                     "shop_id": "", "promoter_id": "P1", "click_id": "", "device_id": "", "ip": "", "item_count": 1,
                     "paid_amount": D("10.00"), "sealed": ""}]}, []))
    (books.dir / "statements" / "2026-10" / "P2.json").unlink()
    with open(books.dir / "statements" / "2026-10" / "P3.json", "ab") as f:
        f.write(b" ")
    problems = reconcile(books.ledger, books.config, period, books.dir)
    expected = ["order LOST: paid in 2026-10 and attributed to a promoter, but no ledger row",
                "order GHOST: 1 ledger rows but no order.paid in the orders table",
                "payee P1: settled in 2026-10 but 5.00 is still confirmed at its end (settled ≠ confirmed)",
                "payee P2: settlement 2026-10 has no statement",
                "payee P3: the statement", "was changed after settlement",
                "order O4 item S-O4: 100.00 of level 1 (P3) is held but the 2026-10 settlement paid it"]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert len(problems) == 6, problems
    assert reconcile(books.ledger, books.config, period_of("2026-11", "Asia/Shanghai"), books.dir) == \
        ["2026-11 has no settlement: run tuike settle --period 2026-11",
         "order O4 item S-O4: 100.00 of level 1 (P3) is held but the 2026-10 settlement paid it (tell the engine "
         "again: tuike settle --period 2026-10)"]


def test_settle_on_the_command_line(tmp_path):
    import subprocess
    import sys

    events = tmp_path / "e.jsonl"
    shop = [{**joined("P1"), "ts": ts(1, 0, month=10)}, *sale("O1", "C1", "P1", "2000.00", ts(2, month=10), ts(3, month=10))]
    write_events(with_ids(shop), events)
    cfg = tmp_path / "tuike.yaml"
    cfg.write_text('tiers: [{min_gmv: "1000", bonus: "0.01"}]\n', encoding="utf-8")

    def tuike(*args):
        return subprocess.run([sys.executable, "-m", "tuike.cli", *args, "--data-dir", str(tmp_path / "d"),
                               "--config", str(cfg)], capture_output=True, text=True, cwd=tmp_path, timeout=300)

    assert tuike("run", "--events", str(events)).returncode == 0
    first = tuike("settle", "--period", "2026-10")
    assert first.returncode == 0 and "settled 2026-10" in first.stdout and "220.00" in first.stdout, first
    assert "settled before: nothing changed" in tuike("settle", "--period", "2026-10").stdout
    bad = tuike("settle", "--period", "2026-13")
    assert bad.returncode == 2 and "expected YYYY-MM" in bad.stderr, bad
    assert tuike("reconcile", "--period", "2026-10").returncode == 0
    ok = tuike("evidence", "verify")
    assert ok.returncode == 0 and "evidence log OK" in ok.stdout
    log = tmp_path / "d" / "evidence" / "evidence.jsonl"
    log.write_bytes(log.read_bytes().replace(b"220.00", b"990.00", 1))
    broken = tuike("evidence", "verify")
    assert broken.returncode == 1 and "was altered" in broken.stdout, broken
    shutil.rmtree(tmp_path / "d" / "statements")
    assert tuike("reconcile", "--period", "2026-10").returncode == 1


def test_the_server_settles_the_same_as_chdb(tmp_path, clickhouse_url):
    """ClickHouse 18.16 runs every settlement and reconcile query, with the same results."""
    results = []
    for name, url in (("chdb", None), ("server", clickhouse_url)):
        root = tmp_path / name
        root.mkdir()
        b = Books(root, RULES)
        if url:
            b.ledger.close()
            b.ledger = open_ledger(url, root)
        try:
            october(b)
            b.feed(sale("O5", "C5", "P2", "450.00", ts(2), ts(3)) + [refunded("O1", "R1", ts(5), amount="1000.00")])
            for period in ("2026-10", "2026-11"):
                b.settle(period)
            rows = b.one("SELECT period, payee, status, balance, gmv, bonus, income, tax, net, carried, statement_sha256 "
                         "FROM settlements ORDER BY period, payee")
            problems = reconcile(b.ledger, b.config, period_of("2026-11", "Asia/Shanghai"), b.dir)
            results.append(([tuple(r) for r in rows], problems))
        finally:
            b.ledger.close()
    assert results[0] == results[1] and len(results[0][0]) == 5  # October P1-P3, November P1 (negative), P2


def test_fund_flow_alerts(books):
    """A payout far above the payee's history, payouts above the share of GMV, a shared account."""
    config = parse_config({**RULES, "settlement": {"min_payout": "1.00", "alert_share": "0.05"}})
    books.config = config
    events = [{**joined("P1"), "ts": ts(1, 0, month=6)}, {**joined("P2"), "ts": ts(1, 0, month=6)}]
    events += [{"type": "promoter.agreed", "ts": ts(1, 1, month=6), "promoter_id": p, "agreement_version": "v1",
                "text_sha256": "a" * 64, "payout_account": "alipay:same"} for p in ("P1", "P2")]
    for month in (6, 7, 8, 9):
        events += sale(f"O{month}", f"C{month}", "P1", "100.00", ts(1, month=month), ts(2, month=month))
    events += sale("O10", "C10", "P1", "9000.00", ts(1, month=10), ts(2, month=10))
    books.feed(events)
    for period in ("2026-06", "2026-07", "2026-08", "2026-09", "2026-10"):
        books.settle(period)
    alerts = {(p, k, s) for p, k, s in books.one("SELECT period, kind, subject FROM alerts")}
    assert ("2026-10", "payout_jump", "P1") in alerts  # 900 + bonus 90 vs a median of 10
    assert ("2026-10", "payout_share", "2026-10") in alerts  # 10% of GMV paid, above the 5% set here
    assert ("2026-06", "shared_account", "alipay:same") in alerts
    assert not [a for a in alerts if a[1] == "payout_jump" and a[0] != "2026-10"]
    agreements = [r for r in orjson.loads(b"[" + b",".join(evidence_path(books.dir).read_bytes().splitlines()) + b"]")
                  if r["kind"] == "agreement"]
    assert sorted(a["ref"].rsplit("/", 1)[0] for a in agreements) == ["agreement/P1/v1", "agreement/P2/v1"]


def test_a_run_stopped_after_recording_its_figures_is_finished_from_them(books, monkeypatch):
    """Late money for the period arriving between the crash and the resume changes nothing of it."""
    october(books)
    real_write = books.ledger.write
    calls = []

    def crash_on_ledger_rows(batch):
        calls.append(batch)
        if batch.entries:
            raise RuntimeError("killed")
        return real_write(batch)

    monkeypatch.setattr(books.ledger, "write", crash_on_ledger_rows)
    with pytest.raises(RuntimeError):
        books.settle("2026-10")
    monkeypatch.setattr(books.ledger, "write", real_write)
    books.feed([refunded("O2", "R2", ts(31, 10, month=10), amount="300.00")])  # late: dated in October
    assert not books.settle("2026-10").already
    assert books.settlement("2026-10", "P1")["net"] == D("253.00")  # as recorded before the crash
    assert books.confirmed("P1", "2026-10") == D("-30.00")  # the late refund is carried into November
    assert sorted(e["order_id"] for e in books.told) == ["O1", "O2", "O4"]  # the lines recorded before the crash
    assert verify(evidence_path(books.dir)).ok


def test_periods_close_once_over_and_one_after_the_other(books):
    october(books)
    with pytest.raises(SettleError, match="not over yet"):
        settle(books.ledger, books.config, "2026-10", books.dir, now=period_of("2026-10", "Asia/Shanghai").end_s - 60)
    books.settle("2026-10")
    with pytest.raises(SettleError, match="next one after 2026-10 is 2026-11"):
        books.settle("2026-12")


def test_settlement_rows_stay_in_the_ledger_when_a_replay_goes_live(books):
    """A streaming replay derives generation N+1 from the events; payouts are not events, so the
    view shows them in every generation (else every payout would be paid again)."""
    october(books)
    books.settle("2026-10")
    books.ledger.query("INSERT INTO ledger_generations SELECT 1, now()")  # generation 1 live, no rows yet
    kinds = {k for (k,) in books.one("SELECT DISTINCT kind FROM commission_ledger")}
    assert kinds == {"bonus", "tax", "settle"}
    assert books.one("SELECT sum(amount) FROM commission_ledger WHERE kind = 'settle' AND status_after = 'settled'")[0][0] \
        == D("253.00") + D("3696.00")


def test_csv_cells_of_free_text_ids_are_not_formulas(tmp_path):
    books = Books(tmp_path, RULES)
    try:
        events = [{**joined("=HYPERLINK(1)"), "ts": ts(1, 0, month=10)}]
        events += sale("@SUM", "C1", "=HYPERLINK(1)", "2000.00", ts(2, month=10), ts(3, month=10))
        books.feed(events)
        books.settle("2026-10")
        statement = next((tmp_path / "statements" / "2026-10").glob("*.csv")).read_text()
        export = (tmp_path / "tax" / "2026-10-withholding.csv").read_text()
        assert "'@SUM" in statement and ",@SUM" not in statement
        assert "'=HYPERLINK(1)" in export and ",=HYPERLINK" not in export
    finally:
        books.ledger.close()


def test_a_month_with_nothing_to_pay_closes_and_the_next_follows(books):
    october(books)
    books.settle("2026-09")  # before any confirmation: nothing to pay
    assert books.settle("2026-09").already
    assert reconcile(books.ledger, books.config, period_of("2026-09", "Asia/Shanghai"), books.dir) == []
    books.settle("2026-10")
    assert books.settlement("2026-10", "P1")["net"] == D("253.00")


def test_a_ban_after_a_settlement_holds_only_what_is_still_unpaid(books):
    october(books)
    books.settle("2026-10")
    assert sorted(e["order_id"] for e in books.told) == ["O1", "O2", "O4"]  # P2's 10.00 was carried, not paid
    # O5: 50.00 confirmed November 10, not paid yet; P1 is banned on November 20
    books.feed(sale("O5", "C5", "P1", "500.00", ts(2), ts(3)) + [banned("P1", ts(20))])
    assert books.held("P1") == D("50.00")  # O5 only: O1 and O2 were paid in October
    assert books.confirmed("P1", "2026-11") == 0  # nothing clawed back
    books.settle("2026-11")
    assert books.settlement("2026-11", "P1") == {}  # nothing to pay, nothing carried
    assert reconcile(books.ledger, books.config, period_of("2026-11", "Asia/Shanghai"), books.dir) == []
    books.feed([reviewed("O5", "release", ts(25))])
    assert books.held("P1") == 0 and books.confirmed("P1", "2026-12") == D("50.00")


def test_a_ban_dated_inside_a_closed_period_does_not_hold_what_it_paid(books):
    """The ban (October 12) reaches the engine after October was paid: O1 (confirmed October 10)
    and O2 (pending until October 13) were paid all the same, so neither is held."""
    october(books)
    books.settle("2026-10")
    books.feed([banned("P1", ts(12, month=10))])
    assert books.held("P1") == 0 and books.confirmed("P1", "2026-11") == 0
    books.settle("2026-11")
    assert reconcile(books.ledger, books.config, period_of("2026-11", "Asia/Shanghai"), books.dir) == []


def test_a_ban_before_the_settlement_holds_the_money_and_the_settlement_pays_none_of_it(books):
    october(books)
    books.feed([banned("P1", ts(12, month=10))])
    books.settle("2026-10")
    assert books.held("P1") == D("230.00") and books.settlement("2026-10", "P1") == {}
    assert "O1" not in {e["order_id"] for e in books.told}
