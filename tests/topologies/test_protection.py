"""Personal data protection (README: personal data; issue 19): the same money with pseudonyms,
nothing raw at rest, sealed values that `tuike forget` makes unreadable, master key rotation."""
from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import orjson
import pytest
from rocksdict import AccessType, Rdict

from engine.config import parse_config
from engine.pseudonyms import SEALED, Pseudonyms
from sinks import open_ledger
from sinks.vault import VaultError
from topologies.protection import PseudonymsChanged, protection_for
from tuike.backoffice.privacy import forget, reveal
from tests.support.shop import run_file
from tuike.configfile import load_config
from tuike.lab.generate import generate_shop, write_events

REPO = Path(__file__).resolve().parents[2]
PSEUDONYM_KEY, MASTER_A, MASTER_B = "p" * 40, "a" * 40, "b" * 40
LEDGER = ("SELECT event_id, order_id, item_sku, customer_id, beneficiary_id, level, kind, toString(amount), "
          "toString(rate), rule_id, status_after FROM commission_ledger")
SCORES = "SELECT order_id, toString(score), reasons, held FROM fraud_scores"


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, list[dict]]:
    events = list(generate_shop(11, promoters=30, customers=300, orders=400))
    path = tmp_path_factory.mktemp("shop") / "shop.jsonl"
    write_events(events, path)
    return path, events


def _config(*masters: str, privacy: bool = True):
    raw = copy.deepcopy(load_config(REPO / "tuike.example.yaml").raw)
    if privacy:
        raw["privacy"] = {"pseudonym_key": PSEUDONYM_KEY, "master_keys": list(masters or (MASTER_A,))}
    return parse_config(raw)


def _raw_values(events: list[dict]) -> set[str]:
    """Every personal value of the input worth searching for (ids longer than a few characters)."""
    fields = ("customer_id", "visitor_id", "promoter_id", "parent_id", *SEALED)
    return {e[f] for e in events for f in fields if isinstance(e.get(f), str) and len(e[f]) >= 6}


@pytest.fixture(scope="module")
def protected(shop, tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("on")
    run_file(shop[0], data_dir, _config(), None)
    return data_dir


def test_money_attribution_and_holds_are_the_same_with_protection_on_and_off(shop, protected, tmp_path):
    path, _ = shop
    _, (off, off_scores) = run_file(path, tmp_path / "off", _config(privacy=False), None, LEDGER, SCORES)
    ledger = open_ledger(None, protected)
    try:
        on, on_scores = ledger.query(LEDGER).rows, ledger.query(SCORES).rows
    finally:
        ledger.close()
    p = Pseudonyms(PSEUDONYM_KEY.encode())
    mapped = [(*r[:3], p.person(r[3]) if r[3] else "", p.person(r[4]), *r[5:]) for r in off]
    assert len(on) > 1000 and Counter(on) == Counter(mapped)
    assert Counter(on_scores) == Counter(off_scores) and any(r[3] for r in on_scores)  # some orders held


def test_nothing_personal_is_stored_raw(shop, protected):
    """No raw id, IP, device, user agent or payout account in any table or in the state."""
    values = _raw_values(shop[1])
    assert len(values) > 500
    ledger = open_ledger(None, protected)
    try:
        tables = [r[0] for r in ledger.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                             "AND engine LIKE '%MergeTree'").rows]
        dumped = "\n".join(str(ledger.query(f"SELECT * FROM {t}").rows) for t in tables)
    finally:
        ledger.close()
    state = Rdict(str(protected / "state"), access_type=AccessType.read_only())
    try:
        dumped += "\n".join(f"{k!r}{v!r}" for k, v in state.items())
    finally:
        state.close()
    assert "tk1." in dumped and "sealed-browser" in dumped  # what is there instead
    assert [v for v in values if v in dumped] == []


def test_dead_letters_are_sealed(tmp_path):
    run_file(REPO / "tests/data/mixed.jsonl", tmp_path, _config(), None)
    ledger = open_ledger(None, tmp_path)
    try:
        raws = [r[0] for r in ledger.query("SELECT raw FROM dead_letters").rows]
        protection = protection_for(_config().raw, ledger)
        opened = [protection.reveal(r).decode() for r in raws]
    finally:
        ledger.close()
    assert len(raws) == 4 and all(r.startswith("tk1.") for r in raws)
    assert any('"order.refunded"' in o for o in opened)  # the raw input, as received


def test_forget_makes_a_customers_values_unrecoverable_and_keeps_every_sum(shop, tmp_path, ledger_url):
    path, events = shop
    data_dir = tmp_path / "on"
    totals = "SELECT count(), sum(amount) FROM commission_ledger"
    _, (before,) = run_file(path, data_dir, _config(), ledger_url, totals)
    orders = Counter(e["customer_id"] for e in events if e["type"] == "order.paid" and e.get("ip"))
    customer = orders.most_common(1)[0][0]
    ips = {e["ip"] for e in events if e.get("customer_id") == customer and e.get("ip")}
    ledger = open_ledger(ledger_url, data_dir)
    try:
        protection = protection_for(_config().raw, ledger)
        seen = reveal(protection, customer)
        assert {r["ip"] for r in seen if "ip" in r} == ips  # recoverable while the key exists
        sealed = [r[0] for r in ledger.query(
            f"SELECT sealed FROM orders_raw WHERE customer_id = '{protection.person(customer)}'").rows]
        done = forget(protection, customer)
        assert done.keys >= 1 and done.fact_rows == len(seen)
        with pytest.raises(VaultError, match="destroyed"):  # a copy kept elsewhere (a backup, Kafka) stays shut
            protection.reveal(sealed[0])
        assert all(r.keys() == {"table", "event_id", "pseudonym"} for r in reveal(protection, customer))
        assert ledger.query(f"SELECT count() FROM person_keys WHERE owner = '{protection.person(customer)}'").rows == [(0,)]
        assert ledger.query(totals).rows == before  # the money stays
    finally:
        ledger.close()
    # what arrives later for a forgotten person is not sealed again
    late = tmp_path / "late.jsonl"
    late.write_bytes(orjson.dumps({"type": "click", "event_id": "late-click", "ts": "2026-12-01T10:00:00+08:00",
                                   "click_id": "late-click", "promoter_id": events[0]["promoter_id"],
                                   "customer_id": customer, "ip": "203.0.113.9"}) + b"\n")
    _, (row,) = run_file(late, data_dir, _config(), ledger_url, "SELECT sealed, ip FROM clicks WHERE click_id = 'late-click'")
    assert row[0][0] == "" and row[0][1].startswith("ip-")


def test_master_key_rotation(shop, tmp_path, ledger_url):
    path, _ = shop
    run_file(path, tmp_path, _config(MASTER_A), ledger_url)
    ledger = open_ledger(ledger_url, tmp_path)
    try:
        sealed = ledger.query("SELECT sealed FROM clicks WHERE sealed != '' LIMIT 1").rows[0][0]
        plain = protection_for(_config(MASTER_A).raw, ledger).reveal(sealed)
        rotated = protection_for(_config(MASTER_B, MASTER_A).raw, ledger).vault.rotate()
        assert rotated == ledger.query("SELECT count() FROM person_keys").rows[0][0] > 100
        assert protection_for(_config(MASTER_B).raw, ledger).reveal(sealed) == plain  # the old master can go
        with pytest.raises(VaultError, match="not in privacy.master_keys"):
            protection_for(_config(MASTER_A).raw, ledger).reveal(sealed)
    finally:
        ledger.close()


def test_state_built_without_protection_is_refused_with_it(shop, tmp_path):
    run_file(shop[0], tmp_path, _config(privacy=False), None)
    with pytest.raises(PseudonymsChanged, match="privacy off.*one person would become two"):
        run_file(shop[0], tmp_path, _config(), None)


@pytest.mark.kafka
@pytest.mark.server
@pytest.mark.slow
@pytest.mark.long
def test_a_worker_with_protection_writes_the_embedded_ledger_and_nothing_raw(shop, kafka_broker, clickhouse_server,
                                                                            tmp_path):
    """The same protected ledger streamed (one worker, the ClickHouse server) as embedded (chDB); the
    dead letters sealed, whether a worker refused the record or `tuike produce` could not route it."""
    from sinks.server_sink import ServerLedger
    from tests.support.streaming import compare, ok, summarize_chdb, summarize_server, wait_until_done
    from tests.topologies.test_streaming import environment, start_workers

    bad = [b'{"type": "click", "event_id": "no-key", "customer_id": "RAW-CUSTOMER-1"}',  # produce refuses it
           b'{"type": "click", "event_id": "no-ts", "click_id": "k1", "customer_id": "RAW-CUSTOMER-2"}']  # a worker does
    produced = tmp_path / "produced.jsonl"
    produced.write_bytes(shop[0].read_bytes() + b"\n".join(bad) + b"\n")
    run_file(produced, tmp_path / "embedded", _config())
    reference = summarize_chdb(tmp_path / "embedded", "embedded")
    with environment(kafka_broker, clickhouse_server, tmp_path / "streamed") as env:
        with env.config.open("a") as f:
            f.write(f"privacy:\n  pseudonym_key: {PSEUDONYM_KEY}\n  master_keys: [{MASTER_A}]\n")
        env.add_workers(1)
        start_workers(env)
        ok(env.tuike("produce", "--events", str(produced)), 2)
        wait_until_done(broker=env.broker, settings=env.settings, generation=0, clickhouse=env.clickhouse,
                        workers=env.workers, timeout=240, label="protected")
        compare(reference, summarize_server(env.clickhouse, "streamed"))
        ledger = ServerLedger(env.clickhouse)
        try:
            tables = [r[0] for r in ledger.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                                 "AND engine LIKE '%MergeTree'").rows]
            dumped = "\n".join(str(ledger.query(f"SELECT * FROM {t}").rows) for t in tables)
            assert ledger.query("SELECT count() FROM person_keys").rows[0][0] > 100
            dead = [r[0] for r in ledger.query("SELECT raw FROM dead_letters").rows]
        finally:
            ledger.close()
    assert "tk1." in dumped and [v for v in _raw_values(shop[1]) if v in dumped] == []
    assert len(dead) >= 2  # the two bad lines, and what the rules refused (which may differ by interleaving)
    assert all(d.startswith("tk1.") for d in dead) and "RAW-CUSTOMER" not in dumped


def test_the_evidence_log_is_readable_by_its_owner_only(tmp_path):
    from tuike.backoffice.evidence import EvidenceLog, evidence_path

    path = evidence_path(tmp_path)
    EvidenceLog(path).append_many([("agreement", "agreement/p-x/v1", {"promoter_id": "p-x", "text_sha256": "0" * 64})])
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700


def test_a_streaming_generation_keeps_the_pseudonyms_it_started_with(tmp_path):
    from topologies.protection import check_generation

    ledger = open_ledger(None, tmp_path)
    try:
        protection = protection_for(_config().raw, ledger)
        check_generation(ledger, 0, protection)  # the first worker marks generation 0
        check_generation(ledger, 0, protection)  # a restart with the same key
        other = _config(privacy=False).raw | {"privacy": {"pseudonym_key": "q" * 40, "master_keys": [MASTER_A]}}
        with pytest.raises(PseudonymsChanged, match="generation 0 was built with the pseudonym key p-.*tuike replay"):
            check_generation(ledger, 0, protection_for(other, ledger))
        with pytest.raises(PseudonymsChanged, match="now asks for privacy off"):
            check_generation(ledger, 0, None)
        check_generation(ledger, 1, None)  # a replay into a new generation may change it
    finally:
        ledger.close()
