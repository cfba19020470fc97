"""`tuike retention` (README: retention): what is past its time goes, the accounting records stay."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import orjson
import pytest

from engine.config import ConfigError, parse_config
from schemas.records import decode_record
from sinks import open_ledger
from topologies.embedded import run_events
from tuike.backoffice.retention import DAY_S, apply_retention, expired, retention_days

PRIVACY = {"pseudonym_key": "p" * 40, "master_keys": ["m" * 40]}


def _click(i: int, day: str) -> dict:
    return {"type": "click", "event_id": f"c{i}", "ts": f"{day}T10:00:00+00:00", "click_id": f"c{i}",
            "promoter_id": "P1", "customer_id": f"C{i}", "ip": "198.51.100.7"}


def test_retention_deletes_old_clicks_and_dead_letters_and_shuts_their_keys(tmp_path, ledger_url):
    lines = [orjson.dumps(e) for e in (
        {"type": "promoter.joined", "event_id": "j1", "ts": "2026-01-01T00:00:00+00:00", "promoter_id": "P1"},
        _click(1, "2026-01-10"), _click(2, "2026-11-20"),
        {"type": "order.paid", "event_id": "o1", "ts": "2026-01-10T11:00:00+00:00", "order_id": "O1",
         "customer_id": "C1", "currency": "CNY", "items": [{"sku": "S", "category": "c", "price": "10.00", "qty": 1}]},
    )] + [b'{"type": "click", "event_id": "bad"}']
    ledger = open_ledger(ledger_url, tmp_path)
    try:
        run_events([decode_record("t", i, line) for i, line in enumerate(lines, 1)], config=parse_config({"privacy": PRIVACY}), data_dir=tmp_path, ledger=ledger)
        now = datetime(2026, 12, 7, tzinfo=timezone.utc).timestamp()
        days = retention_days({})
        found = {e.table: e.rows for e in expired(ledger, days, now)}
        assert found == {"clicks": 1, "dead_letters": 0}  # no audit table in a ledger the dashboard never opened
        ledger_rows = ledger.query("SELECT count(), sum(amount) FROM commission_ledger").rows
        apply_retention(ledger, expired(ledger, days, now))
        assert [r[0] for r in ledger.query("SELECT click_id FROM clicks").rows] == ["c2"]
        # six months after the dead letter arrived it goes; its month's key once the whole month is past
        later = time.time() + 230 * DAY_S  # the cut falls in a later month than the one it arrived in
        assert ledger.query("SELECT count() FROM person_keys WHERE startsWith(owner, 'dead-letters:')").rows == [(1,)]
        apply_retention(ledger, expired(ledger, days, later))
        assert ledger.query("SELECT count() FROM dead_letters").rows == [(0,)]
        assert ledger.query("SELECT count() FROM person_keys WHERE startsWith(owner, 'dead-letters:')").rows == [(0,)]
        assert ledger.query("SELECT count() FROM orders").rows == [(1,)]  # accounting records stay
        assert ledger.query("SELECT count(), sum(amount) FROM commission_ledger").rows == ledger_rows
    finally:
        ledger.close()


def test_retention_settings_are_checked():
    assert retention_days({"retention": {"clicks": 365, "dead_letters": 0}})["clicks"] == 365
    with pytest.raises(ConfigError) as e:
        retention_days({"retention": {"clicks": 30, "orders": 10, "dead_letters": "x"}})
    text = str(e.value)
    assert "retention.clicks: 30 days is less than the six months" in text
    assert "retention.orders: unknown table" in text and "retention.dead_letters: expected a whole number" in text
