"""Ledger sinks (contract §4) on the embedded chDB ledger and on a ClickHouse 18.16 server:
the DDL, exact money, idempotent writes through the FINAL views, typed query results.

Insert rates, 200,000 ledger rows in one write (2-core machine with other work running, load
about 2; `python tests/sinks/test_sinks.py 200000` with the server up; after a 1,000-row warm-up
write; the time includes building the typed columns from LedgerEntry objects):
  chDB 4.4, Arrow insert:                  0.80-0.91 s = 220,000-250,000 rows/s (same rows again ~0.62 s)
  ClickHouse 18.16, columnar native, lz4:  0.89-1.39 s = 145,000-225,000 rows/s (same rows again ~0.9 s)
(five runs each; the spread is the machine's other load). About 0.3 s of each is Python
(reading 14 attributes per entry, checking money is exact to the cent, quantizing rates); on the
server path clickhouse-driver's per-value Decimal and String encoding takes another ~0.35 s.
Reading back through the FINAL view: count()/sum(amount) over 1M rows takes ~0.11 s on chDB and
~0.14 s on the server.
Re-writing the same 200k rows leaves count() and sum(amount) unchanged on both.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.dead_letter import DeadLetter
from schemas.ledger_entry import LedgerEntry, entry_id
from schemas.events import validate_event
from schemas.facts import FACT_COLUMNS, facts_of
from sinks import open_ledger
from sinks import Batch, LedgerError, LedgerInUse, LedgerUnavailable, QueryError
from sinks.schema import ddl_statements
from sinks.writer import DEAD_LETTER_COLUMNS, FACT_TABLES, KIND_TYPE, LEDGER_COLUMNS
from sinks.server_sink import ServerLedger, parse_url

REPO = Path(__file__).resolve().parents[2]
UTC = timezone.utc
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def _entry(i: int, amount: str, *, beneficiary: str = "P1", level: int = 1, ts_ms: int = T0,
           kind: str = "accrue", rate: str = "0.10") -> LedgerEntry:
    return LedgerEntry(
        entry_id=entry_id("test", i), event_id=f"ev-{i}", ts_ms=ts_ms, order_id=f"O{i % 3}",
        item_sku=f"SKU-{i % 2}", customer_id="C1", beneficiary_id=beneficiary, level=level,
        kind=kind, amount=Decimal(amount), rate=Decimal(rate), rule_id="default",
        currency="CNY", status_after="pending",
    )


# Hand-chosen amounts incl. negatives, cents that floats get wrong, and months apart (partitions).
ENTRIES = [
    _entry(0, "19.90"),
    _entry(1, "9.95", beneficiary="P2", level=2, rate="0.05"),
    _entry(2, "3.98", beneficiary="P3", level=3, rate="0.02"),
    _entry(3, "-19.90", kind="reverse"),
    _entry(4, "0.10", ts_ms=T0 + 40 * 86_400_000),  # February
    _entry(5, "0.20", ts_ms=T0 + 40 * 86_400_000 + 999),  # sub-second part is dropped
    _entry(6, "-0.30", kind="reverse", ts_ms=T0 + 70 * 86_400_000),  # March
    _entry(7, "12345678901234.56", beneficiary="BIG"),  # 16 digits fit Decimal(18, 2)
    _entry(8, "-0.01", kind="reverse", beneficiary="P2", level=2),
    _entry(9, "5.00", rate="0.0333333333"),  # rate stored to 6 decimals, half-up
]
ENTRIES_SUM = sum((e.amount for e in ENTRIES), Decimal(0))

EVENTS = [
    {"type": "promoter.joined", "event_id": "e-pj", "ts": "2026-01-01T08:00:00+08:00",
     "promoter_id": "P1", "parent_id": "P0", "ip": "10.0.0.1"},
    {"type": "promoter.banned", "event_id": "e-pb", "ts": "2026-01-05T00:00:00Z",
     "promoter_id": "P9", "reason": "fake orders"},
    {"type": "click", "event_id": "e-cl", "ts": "2026-01-02T10:00:00.250+00:00",
     "click_id": "K1", "promoter_id": "P1", "visitor_id": "V1", "sku": "SKU-1"},
    {"type": "customer.bound", "event_id": "e-cb", "ts": "2026-01-02T10:01:00Z",
     "customer_id": "C1", "promoter_id": "P1", "via": "link", "click_id": "K1"},
    {"type": "order.paid", "event_id": "e-op", "ts": "2026-01-03T12:00:00+08:00",
     "order_id": "O1", "customer_id": "C1", "currency": "CNY", "shop_id": "S1",
     "items": [{"sku": "SKU-1", "category": "digital", "price": "199.00", "qty": 2},
               {"sku": "SKU-2", "category": "food", "price": "0.10", "qty": 3}]},
    {"type": "order.completed", "event_id": "e-oc", "ts": "2026-01-04T00:00:00Z", "order_id": "O1"},
    {"type": "order.refunded", "event_id": "e-or", "ts": "2026-01-05T00:00:00Z",
     "order_id": "O1", "refund_id": "R1", "items": [{"sku": "SKU-1", "amount": "99.50"},
                                                    {"sku": "SKU-2", "amount": "0.10"}]},
    {"type": "order.refunded", "event_id": "e-or2", "ts": "2026-01-06T00:00:00Z",
     "order_id": "O1", "refund_id": "R2", "amount": "10.00"},
    {"type": "order.cancelled", "event_id": "e-ox", "ts": "2026-01-07T00:00:00Z",
     "order_id": "O2", "reason": "out of stock"},
    {"type": "review.decided", "event_id": "e-rd", "ts": "2026-01-08T00:00:00Z",
     "order_id": "O3", "decision": "reject", "reviewer": "ann"},
]


def _facts() -> dict[str, list[dict]]:
    facts: dict[str, list[dict]] = {}
    for obj in EVENTS:
        for table, row in facts_of(validate_event(obj)):
            facts.setdefault(table, []).append(row)
    return facts


DEAD = [
    DeadLetter.of("events.jsonl", 3, '{"type": "nope"}', "type: unknown event type 'nope'"),
    DeadLetter.of("events.jsonl", 7, "not json", "line 7: not JSON", key=""),
    DeadLetter.of("http", "req-1", '{"type":"order.paid"}', "order.paid: order_id: required field is missing", key="O9"),
]


# --- the two backends ------------------------------------------------------------------------


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def open_one(request, tmp_path):
    """A function opening a ledger of the parametrized backend (a second call opens the same
    storage again, running the DDL again); all are closed after the test."""
    url = request.getfixturevalue("clickhouse_url") if request.param == "server" else None
    opened = []

    def open_() -> object:
        ledger = open_ledger(url, tmp_path)
        opened.append(ledger)
        return ledger

    yield open_
    for ledger in reversed(opened):
        ledger.close()


def _one(ledger, sql: str) -> tuple:
    rows = ledger.query(sql).rows
    assert len(rows) == 1, rows
    return rows[0]


def test_ddl_creates_tables_and_views(open_one) -> None:
    ledger = open_one()
    names = {r[0] for r in ledger.query("SHOW TABLES").rows}
    views = {"commission_ledger", "dead_letters", *FACT_TABLES}
    bases = {"ledger_entries", "dead_letters_raw", *(f"{t}_raw" for t in FACT_TABLES)}
    assert views | bases <= names
    layouts = {"commission_ledger": LEDGER_COLUMNS, "dead_letters": DEAD_LETTER_COLUMNS, **FACT_TABLES}
    for view, layout in layouts.items():
        described = [(r[0], r[1]) for r in ledger.query(f"DESCRIBE TABLE {view}").rows]
        # a view shows the live generation, so not the column (order_standings)
        assert described == [(n, KIND_TYPE[k]) for n, k in layout if n != "generation"], view
    for table, cols in FACT_COLUMNS.items():
        assert tuple(n for n, _ in FACT_TABLES[table]) == cols


def test_ddl_applied_twice_keeps_data(open_one) -> None:
    first = open_one()
    first.write(Batch(ENTRIES[:3], {}, []))
    second = open_one()  # runs every CREATE … IF NOT EXISTS again
    for stmt in ddl_statements(second.database):
        second.query(stmt)
    assert _one(second, "SELECT count(), sum(amount) FROM commission_ledger") == (3, Decimal("33.83"))


def test_a_ledger_from_before_settlement_rows_gets_the_new_view(open_one) -> None:
    """The commission_ledger view of an older tuike hid settlement rows after a replay; opening the
    ledger again replaces it (a view holds no data)."""
    from schemas.analytics import SETTLEMENT_GENERATION

    first = open_one()
    first.write(Batch(ENTRIES[:3], {}, []))
    first.write(Batch(ENTRIES[3:4], {}, [], generation=SETTLEMENT_GENERATION))
    first.query("DROP TABLE commission_ledger")
    first.query(f"CREATE VIEW {first.database}.commission_ledger AS SELECT entry_id, amount FROM "
                f"{first.database}.ledger_entries FINAL WHERE generation = 0")
    second = open_one()
    assert _one(second, "SELECT count() FROM commission_ledger") == (4,)


def test_ledger_sums_exact_and_rewrite_changes_nothing(open_one) -> None:
    ledger = open_one()
    ledger.write(Batch(ENTRIES, {}, []))
    q = "SELECT count(), sum(amount) FROM commission_ledger"
    assert _one(ledger, q) == (len(ENTRIES), ENTRIES_SUM)
    ledger.write(Batch(ENTRIES, {}, []))
    ledger.write(Batch(list(reversed(ENTRIES[2:6])), {}, []))  # a partial redelivery, reordered
    assert _one(ledger, q) == (len(ENTRIES), ENTRIES_SUM)
    per = dict(ledger.query(
        "SELECT beneficiary_id, sum(amount) FROM commission_ledger GROUP BY beneficiary_id").rows)
    assert per == {"P1": Decimal("5.00"), "P2": Decimal("9.94"), "P3": Decimal("3.98"),
                   "BIG": Decimal("12345678901234.56")}
    # the base table holds the repeats; the view counts each entry once
    assert _one(ledger, "SELECT count() FROM ledger_entries")[0] >= len(ENTRIES)
    # new rows next to old ones still add up
    extra = [_entry(100, "-7.77", kind="reverse")]
    ledger.write(Batch(ENTRIES + extra, {}, []))
    assert _one(ledger, q) == (len(ENTRIES) + 1, ENTRIES_SUM - Decimal("7.77"))


def test_query_types(open_one) -> None:
    ledger = open_one()
    ledger.write(Batch(ENTRIES, {}, []))
    res = ledger.query("SELECT entry_id, ts, level, amount, rate FROM commission_ledger ORDER BY ts, entry_id")
    assert res.columns == ["entry_id", "ts", "level", "amount", "rate"]
    assert res.types == ["String", "DateTime('UTC')", "UInt8", "Decimal(18, 2)", "Decimal(18, 6)"]
    by_id = {r[0]: r for r in res.rows}
    row = by_id[ENTRIES[5].entry_id]
    assert row[1] == datetime(2026, 2, 10, tzinfo=UTC) and row[1].tzinfo is not None
    assert isinstance(row[2], int) and row[2] == 1
    assert isinstance(row[3], Decimal) and str(row[3]) == "0.20"
    assert by_id[ENTRIES[0].entry_id][4] == Decimal("0.100000")
    assert by_id[ENTRIES[9].entry_id][4] == Decimal("0.033333")
    total = ledger.query("SELECT sum(amount) AS s, toYYYYMM(ts) AS m FROM commission_ledger "
                         "GROUP BY m ORDER BY m")
    assert total.types[0] == "Decimal(38, 2)"
    assert [r[0] for r in total.rows] == [Decimal("12345678901253.48"), Decimal("0.30"), Decimal("-0.30")]
    assert all(isinstance(r[0], Decimal) for r in total.rows)


def test_facts_and_dead_letters_dedup(open_one, monkeypatch) -> None:
    import sinks.writer

    ledger = open_one()
    facts = _facts()
    monkeypatch.setattr(sinks.writer.time, "time", lambda: 1_767_300_000.7)
    ledger.write(Batch([], facts, DEAD))
    counts_q = ("SELECT (SELECT count() FROM orders), (SELECT count() FROM order_items), "
                "(SELECT count() FROM order_events), (SELECT count() FROM clicks), "
                "(SELECT count() FROM bindings), (SELECT count() FROM promoters), "
                "(SELECT count() FROM dead_letters)")
    expected = (1, 2, 5, 1, 1, 2, 3)
    assert _one(ledger, counts_q) == expected
    monkeypatch.setattr(sinks.writer.time, "time", lambda: 1_767_400_000.0)
    ledger.write(Batch([], facts, DEAD))
    ledger.write(Batch([], {"order_items": facts["order_items"][:1]}, DEAD[:1]))
    assert _one(ledger, counts_q) == expected
    assert _one(ledger, "SELECT sum(paid_amount), sum(item_count) FROM orders") == (Decimal("398.30"), 5)
    assert _one(ledger, "SELECT sum(paid_amount), sum(qty) FROM order_items") == (Decimal("398.30"), 5)
    refunds = dict(ledger.query(
        "SELECT refund_id, amount FROM order_events WHERE type = 'order.refunded'").rows)
    assert refunds == {"R1": Decimal("99.60"), "R2": Decimal("10.00")}
    details = dict(ledger.query("SELECT type, detail FROM order_events WHERE type != 'order.refunded'").rows)
    assert details == {"order.completed": "", "order.cancelled": "out of stock", "review.decided": "reject"}
    # a dead letter keeps the time it was first received, truncated to seconds
    received = {r[0] for r in ledger.query("SELECT received_at FROM dead_letters").rows}
    assert received == {datetime.fromtimestamp(1_767_300_000, UTC)}
    raw = dict(ledger.query("SELECT position, raw FROM dead_letters").rows)
    assert raw["7"] == "not json"
    click_ts = _one(ledger, "SELECT ts, visitor_id, customer_id FROM clicks")
    assert click_ts == (datetime(2026, 1, 2, 10, 0, tzinfo=UTC), "V1", "")
    assert _one(ledger, "SELECT ts FROM orders")[0] == datetime(2026, 1, 3, 4, 0, tzinfo=UTC)


def test_empty_batch_and_bad_money(open_one) -> None:
    ledger = open_one()
    ledger.write(Batch([], {"orders": []}, []))
    with pytest.raises(LedgerError, match="amount"):
        ledger.write(Batch([_entry(1, "1.005")], {}, []))  # a sink never rounds money
    with pytest.raises(LedgerError, match="Decimal"):
        ledger.write(Batch([_entry(1, "12345678901234567.00")], {}, []))
    assert _one(ledger, "SELECT count() FROM commission_ledger") == (0,)
    with pytest.raises(QueryError):
        ledger.query("SELECT * FROM no_such_table")


# --- facts_of (pure) -------------------------------------------------------------------------


def test_facts_of_rows() -> None:
    facts = _facts()
    for table, rows in facts.items():
        for row in rows:
            assert tuple(row) == FACT_COLUMNS[table]
            assert row["ts"].tzinfo is not None and row["ts"].utcoffset().total_seconds() == 0
    order = facts["orders"][0]
    assert order["paid_amount"] == Decimal("398.30") and order["item_count"] == 5
    assert order["promoter_id"] == "" and order["shop_id"] == "S1"
    assert order["ts"] == datetime(2026, 1, 3, 4, 0, tzinfo=UTC)
    assert [(i["sku"], i["paid_amount"]) for i in facts["order_items"]] == [
        ("SKU-1", Decimal("398.00")), ("SKU-2", Decimal("0.30"))]
    events = {r["event_id"]: r for r in facts["order_events"]}
    assert events["e-or"]["detail"] == "SKU-1=99.50;SKU-2=0.10"
    assert events["e-or2"]["amount"] == Decimal("10.00") and events["e-or2"]["detail"] == ""
    assert events["e-oc"]["amount"] == 0 and events["e-oc"]["refund_id"] == ""
    promoters = {r["type"]: r for r in facts["promoters"]}
    assert promoters["promoter.joined"]["parent_id"] == "P0"
    assert promoters["promoter.banned"]["reason"] == "fake orders"
    assert facts_of(validate_event(EVENTS[4])) == facts_of(validate_event(EVENTS[4]))


# --- chDB: one process per data directory ----------------------------------------------------


def test_chdb_locked_by_another_process(tmp_path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(REPO)!r})
            from pathlib import Path
            from sinks.chdb_sink import ChdbLedger
            ledger = ChdbLedger(Path({str(tmp_path)!r}))
            print("ready", flush=True)
            sys.stdin.readline()
            ledger.close()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(LedgerInUse) as info:
            open_ledger(None, tmp_path)
        msg = str(info.value)
        assert str(tmp_path / "ledger") in msg and f"pid {holder.pid}" in msg and "--data-dir" in msg
    finally:
        holder.communicate("\n", timeout=60)
    with open_ledger(None, tmp_path) as ledger:  # free again once the other process is gone
        assert _one(ledger, "SELECT count() FROM commission_ledger") == (0,)


def test_chdb_one_path_per_process(tmp_path) -> None:
    with open_ledger(None, tmp_path / "a"):
        with pytest.raises(LedgerInUse, match="one data directory per process"):
            open_ledger(None, tmp_path / "b")


# --- server URL and failures -----------------------------------------------------------------


def test_parse_url() -> None:
    u = parse_url("clickhouse://127.0.0.1:9000/tuike")
    assert (u.host, u.port, u.database, u.user, u.password) == ("127.0.0.1", 9000, "tuike", "default", "")
    u = parse_url("clickhouse://bob:s%40cret@db.local/ledger")
    assert (u.host, u.port, u.database, u.user, u.password) == ("db.local", 9000, "ledger", "bob", "s@cret")
    assert "s@cret" not in u.display and "bob@" in u.display
    assert parse_url("clickhouse://h").database == "tuike"
    for bad in ("http://h:9000/x", "clickhouse:///x", "clickhouse://h/a-b", "clickhouse://h:port/x"):
        with pytest.raises(LedgerError):
            parse_url(bad)


def test_server_unreachable_says_what_to_do() -> None:
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable) as info:
        ServerLedger("clickhouse://127.0.0.1:1/tuike", retries=2, backoff=0.01, connect_timeout=1)
    msg = str(info.value)
    assert "clickhouse://127.0.0.1:1/tuike" in msg and "make clickhouse-up" in msg
    assert time.monotonic() - started < 30


# --- insert rate (run by hand: python tests/sinks/test_sinks.py [ROWS]) ----------------------------


def _bench(rows: int) -> None:
    import shutil
    import tempfile

    from conftest import CLICKHOUSE_SCRIPT  # noqa: F401  (the server must be up: make clickhouse-up)

    entries = [_entry(i, f"{(i % 20001) - 10000}.{i % 100:02d}", beneficiary=f"P{i % 997}",
                      ts_ms=T0 + i * 37_000) for i in range(rows)]
    expected = sum((e.amount for e in entries), Decimal(0))
    tmp = Path(tempfile.mkdtemp())
    try:
        for name, url in (("chDB", None), ("ClickHouse server", "clickhouse://127.0.0.1:9000/tuike_bench")):
            ledger = open_ledger(url, tmp)
            try:
                ledger.write(Batch(entries[:1000], {}, []))  # warm-up (first use of pyarrow etc.)
                started = time.perf_counter()
                ledger.write(Batch(entries, {}, []))
                took = time.perf_counter() - started
                again = time.perf_counter()
                ledger.write(Batch(entries, {}, []))
                took_again = time.perf_counter() - again
                got = _one(ledger, "SELECT count(), sum(amount) FROM commission_ledger")
                print(f"{name}: {rows} rows in {took:.2f}s = {rows / took:,.0f} rows/s; "
                      f"again {took_again:.2f}s; count/sum {got} (expected {rows}, {expected})")
                if url:
                    ledger.query("DROP DATABASE tuike_bench")
            finally:
                ledger.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.append(str(Path(__file__).parents[1]))  # tests/ (for conftest), after the packages it would shadow
    _bench(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)


HOURS_OF_THE_LEDGER = ("SELECT generation, toStartOfHour(ts) AS hour, level, kind, status_after, rule_id, sum(amount), "
                       "count() FROM ledger_entries FINAL GROUP BY generation, hour, level, kind, status_after, rule_id "
                       "ORDER BY generation, hour, level, kind, status_after, rule_id")
HOURS_KEPT = ("SELECT generation, hour, level, kind, status_after, rule_id, amount, entries FROM ledger_hours_raw FINAL "
              "ORDER BY generation, hour, level, kind, status_after, rule_id")


def test_the_hourly_sums_follow_every_write_once(open_one) -> None:
    """ledger_hours is recomputed for the hours each write touches: a batch written again changes
    nothing, a late row in an hour already summed is added, another generation is summed apart."""
    ledger = open_one()
    ledger.write(Batch(ENTRIES[:6], {}, []))
    ledger.write(Batch(ENTRIES[:6], {}, []))  # redelivered
    late = _entry(20, "7.77", ts_ms=T0 + 1_800_000)  # 00:30, the hour of ENTRIES[0..3]
    ledger.write(Batch([late, *ENTRIES[6:]], {}, []))
    ledger.write(Batch(ENTRIES[:2], {}, [], generation=1))
    kept = ledger.query(HOURS_KEPT).rows
    assert kept == ledger.query(HOURS_OF_THE_LEDGER).rows
    first_hour = [r for r in kept if r[0] == 0 and r[1] == datetime(2026, 1, 1, tzinfo=UTC) and r[3] == "accrue"
                  and r[2] == 1]
    assert first_hour == [(0, datetime(2026, 1, 1, tzinfo=UTC), 1, "accrue", "pending", "default",
                           Decimal("19.90") + Decimal("7.77") + Decimal("12345678901234.56") + Decimal("5.00"), 4)]
    assert sum(r[6] for r in kept if r[0] == 0) == ENTRIES_SUM + Decimal("7.77")


def test_a_ledger_from_before_the_derived_tables_gets_them(open_one) -> None:
    """Opening a ledger written before ledger_hours and order_standings existed fills them from it,
    once; a fill that did not finish (no record in schema_upgrades) runs again."""
    from dataclasses import replace

    from schemas.analytics import STANDINGS_FROM_LEDGER

    ledger = open_one()
    # order O1's payment (EVENTS: e-op) earned levels 1-3; P9 accrued level 1 and lost it again
    paid = [replace(_entry(30 + i, amount, beneficiary=who, level=level), event_id="e-op", order_id="O1")
            for i, (who, level, amount) in enumerate([("P1", 1, "39.80"), ("P2", 2, "19.90"), ("P3", 3, "7.96"),
                                                     ("P9", 1, "39.80")])]
    paid.append(replace(_entry(40, "-39.80", beneficiary="P9", kind="reverse"), event_id="e-bind", order_id="O1"))
    ledger.write(Batch(paid, _facts(), []))
    for table in ("ledger_hours_raw", "order_standings_raw", "order_standings", "schema_upgrades"):
        ledger.query(f"DROP TABLE {table}")
    again = open_one()
    assert again.query(HOURS_KEPT).rows == again.query(HOURS_OF_THE_LEDGER).rows != []
    columns = "order_id, ts, paid_amount, promoter1, promoter2, promoter3, commission1, commission2, commission3"
    filled = again.query(f"SELECT {columns} FROM order_standings ORDER BY order_id").rows
    derived = again.query(f"SELECT {columns} FROM ({STANDINGS_FROM_LEDGER.replace('{db}', again.database)}) "
                          "ORDER BY order_id").rows
    assert filled == derived == [("O1", datetime(2026, 1, 3, 4, tzinfo=UTC), Decimal("398.30"), "P1", "P2", "P3",
                                  Decimal("39.80"), Decimal("19.90"), Decimal("7.96"))]
    assert sorted(r[0] for r in again.query("SELECT name FROM schema_upgrades").rows) == ["ledger_hours",
                                                                                         "order_standings"]
    again.query("TRUNCATE TABLE ledger_hours_raw")  # as if the fill had stopped half-way, unrecorded
    again.query("DROP TABLE schema_upgrades")
    third = open_one()
    assert third.query(HOURS_KEPT).rows == third.query(HOURS_OF_THE_LEDGER).rows != []


@pytest.mark.server
def test_workers_opening_a_new_database_at_once_all_open_it(clickhouse_url) -> None:
    """Streaming workers start together on a new database: each creates the tables and records the
    one-time fills (schema_upgrades) concurrently, and none may fail (18.16's TinyLog did)."""
    import threading
    import uuid

    url = parse_url(clickhouse_url)
    db = f"{url.database}_open_{uuid.uuid4().hex[:8]}"
    target = f"clickhouse://{url.host}:{url.port}/{db}"
    errors: list[str] = []

    def open_() -> None:
        try:
            ServerLedger(target).close()
        except Exception as exc:  # noqa: BLE001 - the test reports whatever a worker would die of
            errors.append(repr(exc))

    try:
        for _ in range(4):
            threads = [threading.Thread(target=open_) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
        with ServerLedger(target) as ledger:
            assert {r[0] for r in ledger.query("SELECT name FROM schema_upgrades").rows} == {"ledger_hours",
                                                                                            "order_standings"}
    finally:
        with ServerLedger(target) as ledger:
            ledger.query(f"DROP DATABASE IF EXISTS {db}")
