"""Attribution in the analytical layer (schemas/analytics.py): who holds an order's level after a
late bind, and which payment counts. In a module of its own: chDB opens one data directory per
process, and tests/schemas/test_analytics.py keeps its ledger open for the module."""
from __future__ import annotations

from engine.config import parse_config
from schemas.analytics import Filters
from sinks import open_ledger
from tuike.lab.generate import write_events
from schemas.records import read_records
from tuike.insights.panels import run_panel
from topologies.embedded import run_events

CONFIG = parse_config({})
ALL = Filters(0, 4102444800, "day", timezone=CONFIG.timezone)


def test_a_moved_attribution_and_a_second_payment_count_once(tmp_path):
    """A late bind moves o1 from D to B (D keeps an accrue row netted to zero); o2 is paid twice
    (the second payment is refused): GMV counts each order once, for the promoter who holds it."""
    from tests.support.shop import bound, item, joined, paid, ts, with_ids

    events = with_ids([joined("D"), joined("B"), bound("u", "D", ts(4)), paid("o1", "u", ts(5), item("s", "100.00")),
                       bound("u", "B", ts(2)),  # dated earlier, arrives later: B bound u first
                       bound("w", "B", ts(2)), paid("o2", "w", ts(6), item("s", "50.00")),
                       paid("o2", "w", ts(7), item("s", "50.00"))])
    path = tmp_path / "events.jsonl"
    write_events(events, path)
    ledger = open_ledger(None, tmp_path)
    try:
        run_events(read_records(path), config=CONFIG, data_dir=tmp_path, ledger=ledger)
        kpis = run_panel(ledger.query, "kpis", ALL)
        assert kpis.rows[0][:2] == [2, "150.00"]
        team = {r[0]: r[1] for r in run_panel(ledger.query, "team_performance", ALL).rows}
        assert team == {"B": "150.00"}
        funnel = {r[0]: r[3:] for r in run_panel(ledger.query, "funnel_by_promoter", ALL).rows}
        assert funnel["B"] == [2, "150.00"] and funnel["D"] == [0, "0.00"]  # D keeps its bind, not the order
    finally:
        ledger.close()
