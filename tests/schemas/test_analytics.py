"""The analytical layer (schemas/analytics.py) on a generated shop: every query runs on chDB and
on the ClickHouse 18.16 server with the same answers, the headline figures equal direct queries
of the analysts' views, and docs/analytics.md is current."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.config import parse_config
from schemas.analytics import DOC, PANELS, PROMOTER_COLUMNS, STANDINGS_FROM_LEDGER, Filters, _doc, promoter_queries
from sinks import open_ledger
from tuike.lab.generate import generate_shop, write_events
from schemas.records import read_records, records_of
from tuike.insights.panels import cost_ratio, run_panel
from topologies.embedded import run_events
from tuike.backoffice.settle import period_of, settle

CONFIG = parse_config({})
OCTOBER = period_of("2026-10", CONFIG.timezone)
ALL = Filters(0, 4102444800, "day", timezone=CONFIG.timezone)
MONTH = Filters(OCTOBER.start_s, OCTOBER.end_s, "day", timezone=CONFIG.timezone)


def build(events_file: Path, data_dir: Path, url: str | None):
    ledger = open_ledger(url, data_dir)
    run_events(read_records(events_file), config=CONFIG, data_dir=data_dir, ledger=ledger)

    def tell(events: list[dict]) -> None:
        run_events(records_of(events, "settle"), config=CONFIG, data_dir=data_dir, ledger=ledger)

    settle(ledger, CONFIG, "2026-10", data_dir, now=4e9, tell=tell)
    return ledger


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("analytics") / "shop.jsonl"
    write_events(generate_shop(11, promoters=80, customers=600, orders=1500), path)
    return path


@pytest.fixture(scope="module")
def chdb(shop, tmp_path_factory):
    ledger = build(shop, tmp_path_factory.mktemp("chdb"), None)
    yield ledger
    ledger.close()


def answers(ledger, filters: list[Filters]) -> dict:
    return {(p.name, i): run_panel(ledger.query, p.name, f).rows for p in PANELS for i, f in enumerate(filters)}


def one(ledger, sql: str):
    return ledger.query(sql).rows[0][0]


def test_the_docs_list_every_query_and_are_current():
    assert DOC.read_text(encoding="utf-8") == _doc(), "run: python -m schemas.analytics"
    text = DOC.read_text(encoding="utf-8")
    for p in PANELS:
        assert f"`{p.name}`" in text and all(f"`{c}`" in text for c, _ in p.columns)
    assert set(PROMOTER_COLUMNS) == set(promoter_queries("P1"))


def test_every_panel_answers_with_its_documented_columns(chdb):
    busy = chdb.query("SELECT beneficiary_id FROM commission_ledger WHERE level = 1 GROUP BY beneficiary_id "
                      "ORDER BY count() DESC LIMIT 1").rows[0][0]
    campaign = chdb.query("SELECT campaign FROM clicks WHERE campaign != '' GROUP BY campaign "
                          "ORDER BY count() DESC LIMIT 1").rows[0][0]
    for f in (ALL, MONTH, Filters(OCTOBER.start_s, OCTOBER.end_s, "hour", promoter=busy, timezone=CONFIG.timezone),
              Filters(0, 4102444800, "day", campaign=campaign)):
        for p in PANELS:
            data = run_panel(chdb.query, p.name, f)
            assert data.columns == [c for c, _ in p.columns], p.name
    nonempty = {p.name for p in PANELS if run_panel(chdb.query, p.name, ALL).rows}
    assert nonempty == {p.name for p in PANELS}, "the generated shop should give every panel rows"


def test_headline_figures_equal_direct_queries_of_the_views(chdb):
    row = dict(zip(*(lambda d: (d.columns, d.rows[0]))(run_panel(chdb.query, "kpis", MONTH))))
    s, e = MONTH.start_s, MONTH.end_s
    in_month = f"toUInt32(ts) >= {s} AND toUInt32(ts) < {e}"
    attributed = (f"SELECT count(), sum(paid_amount) FROM orders WHERE {in_month} AND order_id IN "
                  "(SELECT order_id FROM commission_ledger WHERE level = 1 AND kind = 'accrue' "
                  f"AND {in_month})")
    orders, gmv = chdb.query(attributed).rows[0]
    assert (row["orders"], row["gmv"]) == (orders, str(gmv))
    by = dict(chdb.query(f"SELECT status_after, sum(amount) FROM commission_ledger WHERE {in_month} "
                         "GROUP BY status_after").rows)
    for status in ("pending", "confirmed", "held", "settled"):
        assert Decimal(row[status]) == by.get(status, Decimal(0)), status
    assert Decimal(row["clawed_back"]) == one(chdb, f"SELECT sum(amount) FROM commission_ledger WHERE {in_month} "
                                                    "AND kind = 'reverse'")
    assert Decimal(row["settled"]) > 0  # October was settled


def test_a_promoter_filter_shows_only_that_promoters_money(chdb):
    busy = chdb.query("SELECT beneficiary_id FROM commission_ledger WHERE level = 1 GROUP BY beneficiary_id "
                      "ORDER BY count() DESC LIMIT 1").rows[0][0]
    f = Filters(0, 4102444800, "day", promoter=busy)
    row = dict(zip(*(lambda d: (d.columns, d.rows[0]))(run_panel(chdb.query, "kpis", f))))
    mine = dict(chdb.query(f"SELECT status_after, sum(amount) FROM commission_ledger WHERE beneficiary_id = '{busy}' "
                           "GROUP BY status_after").rows)
    assert Decimal(row["confirmed"]) == mine.get("confirmed", 0) and Decimal(row["pending"]) == mine.get("pending", 0)
    funnel = run_panel(chdb.query, "funnel_by_promoter", f).rows
    assert [r[0] for r in funnel] == [busy]


def test_cost_ratios_are_decimal_and_exact():
    assert cost_ratio(Decimal("10.00"), Decimal("30.00")) == Decimal("0.3333")
    assert cost_ratio(Decimal("1.00"), Decimal("0")) == Decimal("0.0000")


def test_the_server_gives_the_same_answers(shop, chdb, tmp_path, clickhouse_url):
    server = build(shop, tmp_path / "server", clickhouse_url)
    try:
        filters = [ALL, MONTH, Filters(OCTOBER.start_s, OCTOBER.end_s, "hour", timezone=CONFIG.timezone)]
        assert answers(server, filters) == answers(chdb, filters)
        for sql in promoter_queries("P000001").values():
            assert server.query(sql).rows == chdb.query(sql).rows
    finally:
        server.close()



def test_the_engines_order_standings_equal_the_ledgers(chdb):
    """engine/standing.py writes, per order, what schemas.analytics.STANDINGS_FROM_LEDGER computes
    from the ledger: the holder of each level, the net commission, the winning payment."""
    columns = ("order_id, ts, customer_id, click_id, paid_amount, promoter1, promoter2, promoter3, commission, "
               "commission1, commission2, commission3")
    written = chdb.query(f"SELECT {columns} FROM order_standings ORDER BY order_id").rows
    derived = chdb.query(f"SELECT {columns} FROM ({STANDINGS_FROM_LEDGER.replace('{db}', chdb.database)}) "
                         "ORDER BY order_id").rows
    assert len(written) > 500 and written == derived
    moved = chdb.query("SELECT count() FROM order_standings_raw WHERE version > 1").rows[0][0]
    assert moved > 0  # orders whose money moved after payment (refunds, confirmations) were rewritten


def test_totals_over_hours_cut_by_the_range_equal_the_ledger(chdb):
    """The ledger totals come from ledger_hours for whole hours and from the ledger for the hours
    the range's ends cut: a range that starts and ends inside hours holding rows still sums exactly
    the ledger's rows in it."""
    times = [int(r[0]) for r in chdb.query(f"SELECT DISTINCT toUInt32(ts) AS t FROM commission_ledger WHERE toUInt32(ts) "
                                           f"% 3600 BETWEEN 2 AND 3597 AND t >= {OCTOBER.start_s} AND t < {OCTOBER.end_s} ORDER BY t").rows]
    s, e = times[len(times) // 4] - 1, times[3 * len(times) // 4] + 1  # a row just inside each end
    in_range = f"toUInt32(ts) >= {s} AND toUInt32(ts) < {e}"
    for bucket in ("hour", "day"):
        f = Filters(s, e, bucket, timezone=CONFIG.timezone)
        kpis = dict(zip(*(lambda d: (d.columns, d.rows[0]))(run_panel(chdb.query, "kpis", f))))
        by = dict(chdb.query(f"SELECT status_after, sum(amount) FROM commission_ledger WHERE {in_range} "
                             "GROUP BY status_after").rows)
        assert {k: Decimal(kpis[k]) for k in by} == by and len(by) >= 3
        series = run_panel(chdb.query, "commission_over_time", f).rows
        assert sum(Decimal(r[3]) for r in series) == one(chdb, f"SELECT sum(amount) FROM commission_ledger WHERE {in_range}")
        refunds = run_panel(chdb.query, "refunds_over_time", f).rows
        assert (sum(int(r[1]) for r in refunds), sum(Decimal(r[2]) for r in refunds)) == chdb.query(
            f"SELECT count(DISTINCT (t, order_id)), sum(amount) FROM (SELECT toStartOf{bucket.title()}(ts, "
            f"'{CONFIG.timezone}') AS t, order_id, amount FROM commission_ledger WHERE {in_range} AND kind = 'reverse')"
        ).rows[0]


def test_the_hourly_sums_equal_the_ledger(chdb):
    kept = chdb.query("SELECT generation, hour, level, kind, status_after, rule_id, amount, entries "
                      "FROM ledger_hours_raw FINAL ORDER BY generation, hour, level, kind, status_after, rule_id").rows
    assert len(kept) > 100 and kept == chdb.query(
        "SELECT generation, toStartOfHour(ts) AS hour, level, kind, status_after, rule_id, sum(amount), count() "
        "FROM ledger_entries FINAL GROUP BY generation, hour, level, kind, status_after, rule_id "
        "ORDER BY generation, hour, level, kind, status_after, rule_id").rows
