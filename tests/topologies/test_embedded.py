"""The embedded pipeline end to end: a file in, the ledger on chDB and on a real ClickHouse server."""
from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from engine.config import parse_config
from tuike.configfile import load_config
from tests.support.shop import run_file as run
from tuike.lab.generate import generate_shop, write_events

REPO = Path(__file__).resolve().parents[2]
SHOP = dict(promoters=40, customers=400, orders=600)
PER_BENEFICIARY = ("SELECT beneficiary_id, level, kind, status_after, count() AS n, sum(amount) AS total "
                   "FROM commission_ledger GROUP BY beneficiary_id, level, kind, status_after "
                   "ORDER BY beneficiary_id, level, kind, status_after")
TOTALS = "SELECT count() AS n, sum(amount) AS total FROM commission_ledger"


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "tuike.example.yaml")


@pytest.fixture(scope="module")
def shop_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "shop.jsonl"
    write_events(generate_shop(5, **SHOP), path)
    return path


def test_run_twice_adds_nothing_on_chdb(tmp_path, shop_file, config):
    first, (rows1, totals1) = run(shop_file, tmp_path, config, None, PER_BENEFICIARY, TOTALS)
    assert first.ledger_rows == totals1[0][0] > 0 and first.rejected == 0
    second, (rows2, totals2) = run(shop_file, tmp_path, config, None, PER_BENEFICIARY, TOTALS)
    assert second.ledger_rows == 0 and second.duplicates == second.accepted
    assert (rows2, totals2) == (rows1, totals1)


def test_lost_state_rederives_the_same_rows_counted_once(tmp_path, shop_file, config):
    """A crash after the sink wrote a batch but before the state flushed: the rows come again, once."""
    _, (totals1,) = run(shop_file, tmp_path, config, None, TOTALS)
    shutil.rmtree(tmp_path / "state")
    again, (totals2,) = run(shop_file, tmp_path, config, None, TOTALS)
    assert again.ledger_rows == totals1[0][0]  # every row written again…
    assert totals2 == totals1  # …and counted once


def test_a_batch_cut_short_is_redone_only_under_the_hold_days_it_was_written_with(tmp_path, shop_file, config,
                                                                                  monkeypatch):
    """A crash after the ledger holds a batch but before its state does: redone with another
    hold_days, its confirmations would land at other times — second rows under the ledger's
    (generation, ts, entry_id) key. The run refuses and says how to finish; the same rules finish it
    with every row counted once, and afterwards hold_days may change."""
    from dataclasses import replace

    from topologies.embedded import RulesChangedMidBatch
    from topologies.rocks_state import RocksState

    confirms = "SELECT count() FROM commission_ledger WHERE kind = 'confirm'"
    _, (clean,) = run(shop_file, tmp_path / "clean", config, None, PER_BENEFICIARY)

    def crash(self, changes):
        raise OSError("the machine went down")

    with monkeypatch.context() as m:
        m.setattr(RocksState, "write", crash)
        with pytest.raises(OSError):
            run(shop_file, tmp_path / "cut", config, None)
    shorter = replace(config, hold_days=config.hold_days - 4)
    with pytest.raises(RulesChangedMidBatch, match=f"hold_days {config.hold_days}, and this configuration says "
                                                    f"{shorter.hold_days}.*Run the same events again"):
        run(shop_file, tmp_path / "cut", shorter, None)
    again, (rows, (n,)) = run(shop_file, tmp_path / "cut", config, None, PER_BENEFICIARY, confirms)
    assert again.ledger_rows > 0 and n[0] > 0
    assert rows == clean  # the batch's rows written twice, counted once
    later, (rows_later,) = run(shop_file, tmp_path / "cut", shorter, None, PER_BENEFICIARY)
    assert later.ledger_rows == 0 and rows_later == clean  # finished: the new rules apply to new events only


@pytest.mark.server
def test_server_and_chdb_give_identical_sums_and_runs_are_idempotent(tmp_path, shop_file, config, clickhouse_url):
    _, (embedded,) = run(shop_file, tmp_path / "embedded", config, None, PER_BENEFICIARY)
    first, (server1, totals1) = run(shop_file, tmp_path / "server", config, clickhouse_url, PER_BENEFICIARY, TOTALS)
    assert server1 == embedded and first.ledger_rows == totals1[0][0]
    second, (server2, totals2) = run(shop_file, tmp_path / "server", config, clickhouse_url, PER_BENEFICIARY, TOTALS)
    assert second.ledger_rows == 0 and (server2, totals2) == (server1, totals1)
    shutil.rmtree(tmp_path / "server" / "state")  # state lost: the same rows again, counted once
    third, (server3,) = run(shop_file, tmp_path / "server", config, clickhouse_url, PER_BENEFICIARY)
    assert third.ledger_rows == totals1[0][0] and server3 == server1


BAD_LINES = [
    '{"type": "order.paid", "event_id": "bad-1", "ts": "2026-11-01T10:00:00+08:00"',                      # bad JSON
    '{"type": "order.shipped", "event_id": "bad-2", "ts": "2026-11-01T10:00:00+08:00", "order_id": "o"}',  # unknown type
    '{"type": "order.paid", "event_id": "bad-3", "ts": "2026-11-01T10:00:00+08:00", "order_id": "bad-o3", '
    '"customer_id": "c", "currency": "CNY", "items": [{"sku": "s", "category": "c", "price": 19.9, "qty": 1}]}',  # float money
    '{"type": "customer.bound", "event_id": "bad-4", "ts": "2026-11-01T10:00:00+08:00", "customer_id": "c"}',  # missing field
    '{"type": "click", "event_id": "bad-5", "ts": "2026-11-31T10:00:00+08:00", "click_id": "k", "promoter_id": "p"}',  # bad ts
]
EXPECTED_REASONS = ["bad JSON", "unknown event type 'order.shipped'", "items[0].price: money must be a decimal string",
                    "promoter_id: required field is missing", "ts: timestamp"]


def test_bad_lines_go_to_dead_letters_and_leave_the_money_alone(tmp_path, shop_file, config):
    good = shop_file.read_text().splitlines()
    mixed = list(good)
    for i, bad in enumerate(BAD_LINES):
        mixed.insert(1 + i * (len(good) // len(BAD_LINES)), bad)
    mixed_file = tmp_path / "mixed.jsonl"
    mixed_file.write_text("\n".join(mixed) + "\n")
    clean, (clean_rows,) = run(shop_file, tmp_path / "clean", config, None, PER_BENEFICIARY)
    stats, (rows, dead) = run(mixed_file, tmp_path / "mixed", config, None, PER_BENEFICIARY,
                              "SELECT position, reason, raw FROM dead_letters WHERE source = 'mixed.jsonl' ORDER BY toUInt32(position)")
    assert stats.rejected == len(BAD_LINES) and stats.accepted == clean.accepted
    assert rows == clean_rows
    assert [raw for _, _, raw in dead] == BAD_LINES
    for (_, reason, _), expected in zip(dead, EXPECTED_REASONS):
        assert expected in reason, (expected, reason)


def test_rules_refusals_are_dead_letters_too(tmp_path, config):
    path = tmp_path / "refused.jsonl"
    path.write_text(
        '{"type":"promoter.joined","event_id":"j1","ts":"2026-11-01T10:00:00+08:00","promoter_id":"P1"}\n'
        '{"type":"customer.bound","event_id":"b1","ts":"2026-11-01T11:00:00+08:00","customer_id":"P1","promoter_id":"P1"}\n')
    stats, (dead,) = run(path, tmp_path, config, None, "SELECT source, key, reason FROM dead_letters")
    assert stats.rejected == 0 and stats.refused == 1
    assert dead == [("engine", "P1", "customer.bound refused: self-bind: customer P1 is the promoter")]


def test_default_config_runs_without_a_file(tmp_path, shop_file):
    stats, (totals,) = run(shop_file, tmp_path, parse_config({}), None, TOTALS)
    assert stats.ledger_rows == totals[0][0] > 0 and totals[0][1] > Decimal(0)


@pytest.mark.server
def test_state_of_one_ledger_is_not_used_for_another(tmp_path, shop_file, config, clickhouse_url):
    """Rows already derived would never reach a second ledger: the run refuses and says what to do."""
    from topologies.embedded import StateForOtherLedger

    run(shop_file, tmp_path, config, None, TOTALS)
    with pytest.raises(StateForOtherLedger, match="Use another --data-dir"):
        run(shop_file, tmp_path, config, clickhouse_url, TOTALS)
    _, (totals,) = run(shop_file, tmp_path / "for-server", config, clickhouse_url, TOTALS)
    assert totals[0][0] > 0
