"""``tuike backup`` / ``tuike restore``: a shop run part-way, backed up, restored into a fresh
directory and caught up from its event file ends with the money of an uninterrupted run; damaged
or busy inputs are refused with what to do.

The drill's tests open chDB about a dozen times (about 25 s on the loaded 2-core machine): they are
``long``. ``make test`` keeps the cheap ones; ``python -m benchmarks.restore_drill`` measures RPO
and RTO on a bigger shop."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sinks import open_ledger
from tests.support.shop import run_file
from tests.support.streaming import compare, summarize_chdb, summarize_server
from tuike.backoffice.backup import take_backup
from tuike.backoffice.backup_files import REDACTED, BackupDamaged, BackupError, config_without_secrets
from tuike.backoffice.evidence import EvidenceLog, evidence_path, sha256_text, verify
from tuike.backoffice.restore import check_backup, restore_backup
from tuike.configfile import load_config
from tuike.lab.generate import generate_shop, write_events

REPO = Path(__file__).resolve().parents[3]
SHOP = dict(promoters=10, customers=60, orders=80)


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "tuike.example.yaml")


@dataclass
class Drill:
    whole: Path  # every event of the shop
    live: Path  # the data dir that ran the first half, then was backed up
    backup: Path
    manifest: dict
    reference: Path  # an uninterrupted run of the whole shop
    evidence_head: str


@pytest.fixture(scope="module")
def drill(tmp_path_factory, config) -> Drill:
    """A shop run half-way with an evidence log and a dashboard audit row, then backed up; and an
    uninterrupted run of the whole shop beside it."""
    from tuike.dashboard.audit import audit_statements

    folder = tmp_path_factory.mktemp("drill")
    whole, first = folder / "shop.jsonl", folder / "first.jsonl"
    write_events(generate_shop(5, **SHOP), whole)
    lines = whole.read_bytes().splitlines(keepends=True)
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    live = folder / "live"
    run_file(first, live, config)
    head = sign(live, 3)
    ledger = open_ledger(None, live)
    try:
        for stmt in audit_statements(ledger.database):  # the audit table is made on first use
            ledger.query(stmt)
        ledger.query("INSERT INTO dashboard_audit SELECT now(), 's1', 'secret:k1', 'view', 'kpis', '{}', '127.0.0.1', 200")
    finally:
        ledger.close()
    manifest = backup(folder / "backup", live, config=REPO / "tuike.example.yaml")
    run_file(whole, folder / "reference", config)
    return Drill(whole, live, folder / "backup", manifest, folder / "reference", head)


def backup(to: Path, data_dir: Path, url: str | None = None, config: Path | None = None) -> dict:
    ledger = open_ledger(url, data_dir)
    try:
        return take_backup(to, data_dir=data_dir, ledger=ledger, config=config)
    finally:
        ledger.close()


def restore(src: Path, data_dir: Path, url: str | None = None, force: bool = False):
    ledger = open_ledger(url, data_dir)
    try:
        return restore_backup(src, data_dir=data_dir, ledger=ledger, force=force)
    finally:
        ledger.close()


def sign(data_dir: Path, n: int) -> str:
    log = EvidenceLog(evidence_path(data_dir))
    for i in range(n):
        log.append("agreement", f"agreement/P{i}/v1", {"promoter_id": f"P{i}", "text_sha256": sha256_text(str(i))})
    return log.head


@pytest.mark.long
def test_embedded_restore_resumes_exactly(tmp_path, drill, config):
    """Restored into a fresh directory and caught up from the event file: the money of the
    uninterrupted run; the evidence verifies to the same head; every table came back."""
    fresh = tmp_path / "fresh"
    report = restore(drill.backup, fresh)
    tables = drill.manifest["ledger"]["tables"]
    assert {"ledger_entries", "person_keys", "forgotten_people", "privacy_marks", "dead_letters_raw",
            "dashboard_audit"} <= set(tables)
    assert report.rows == sum(t["rows"] for n, t in tables.items() if n != "schema_upgrades")
    assert verify(evidence_path(fresh)).last_hash == drill.evidence_head == drill.manifest["evidence"]["last_hash"]
    assert (fresh / "tuike.yaml").read_text() == (REPO / "tuike.example.yaml").read_text()
    caught_up, (audit,) = run_file(drill.whole, fresh, config, None, "SELECT shop_id, action FROM dashboard_audit")
    assert audit == [("s1", "view")]
    assert caught_up.ledger_rows > 0 and caught_up.duplicates > 0  # the backup's events count once
    compare(summarize_chdb(drill.reference, "uninterrupted"), summarize_chdb(fresh, "restored"))


@pytest.mark.long
def test_restore_refuses_a_target_that_holds_data_unless_forced(tmp_path, drill):
    restore(drill.backup, tmp_path / "target")
    with pytest.raises(BackupError, match="not empty.*--force"):
        restore(drill.backup, tmp_path / "target")
    again = restore(drill.backup, tmp_path / "target", force=True)
    assert again.rows == sum(t["rows"] for n, t in drill.manifest["ledger"]["tables"].items() if n != "schema_upgrades")
    assert list((tmp_path / "target").glob("state.before-restore-*"))  # moved aside, not deleted


def test_a_damaged_backup_is_refused_before_anything_is_written(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tuike.backoffice.backup_files import FORMAT, sha256_of, write_manifest

    (tmp_path / "ledger").mkdir()
    part = tmp_path / "ledger" / "ledger_entries.parquet"
    pq.write_table(pa.table({"entry_id": [f"e{i}" for i in range(1000)]}), part)
    write_manifest(tmp_path, {"format": FORMAT, "tuike_version": "t", "created": "now", "ledger": {"tables": {
        "ledger_entries": {"file": "ledger/ledger_entries.parquet", "rows": 1000, "sha256": sha256_of(part)}}}})
    assert check_backup(tmp_path)["ledger"]["tables"]["ledger_entries"]["rows"] == 1000
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(BackupDamaged, match="ledger_entries.parquet does not match its checksum"):
        check_backup(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(BackupError, match="not a tuike backup"):
        check_backup(tmp_path)


@pytest.mark.long
def test_a_running_pipeline_makes_the_backup_refuse(tmp_path, drill):
    from topologies.rocks_state import RocksState

    held = RocksState(drill.live / "state")  # as a running `tuike run` or `tuike serve` holds it
    try:
        with pytest.raises(BackupError, match="in use by a running tuike"):
            backup(tmp_path / "backup", drill.live)
    finally:
        held.close()


def test_the_configuration_keeps_references_and_leaves_inline_secrets_out(tmp_path):
    cfg = tmp_path / "tuike.yaml"
    cfg.write_text("links: {secret: env:TUIKE_LINK_SECRET, base_url: https://t.example.com}\n"
                   "shops:\n  s1: {shopify_secret: hunter2-inline, dashboard_tokens: [file:/run/t, raw-token],\n"
                   "       wechatpay_public_key_id: PUB_KEY_ID_1}\n")
    copy = config_without_secrets(cfg)
    assert "hunter2" not in copy.text and "raw-token" not in copy.text
    assert "env:TUIKE_LINK_SECRET" in copy.text and "file:/run/t" in copy.text and "PUB_KEY_ID_1" in copy.text
    assert copy.redacted == ["shops.s1.shopify_secret", "shops.s1.dashboard_tokens[1]"]
    assert REDACTED in copy.text
    clean = tmp_path / "clean.yaml"
    clean.write_text("# comments stay\nlinks: {secret: env:TUIKE_LINK_SECRET}\n")
    assert config_without_secrets(clean).text == clean.read_text()


@pytest.mark.long
def test_server_backup_restores_into_another_database_and_into_chdb(tmp_path, drill, config, clickhouse_url):
    """A server ledger (tuike run --clickhouse) into a second database, and into chDB: the same money."""
    first = tmp_path / "first.jsonl"
    lines = drill.whole.read_bytes().splitlines(keepends=True)
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    run_file(first, tmp_path / "live", config, clickhouse_url)
    manifest = backup(tmp_path / "backup", tmp_path / "live", clickhouse_url)
    assert manifest["state"]["ledger"].startswith("clickhouse://")
    other = clickhouse_url + "_restored"
    try:
        restore(tmp_path / "backup", tmp_path / "fresh", other)
        run_file(drill.whole, tmp_path / "fresh", config, other)
        restore(tmp_path / "backup", tmp_path / "chdb")
        run_file(drill.whole, tmp_path / "chdb", config)
        reference = summarize_chdb(drill.reference, "uninterrupted")
        compare(reference, summarize_server(other, "restored on the server"))
        compare(reference, summarize_chdb(tmp_path / "chdb", "server backup restored into chDB"))
    finally:
        from sinks.server_sink import ServerLedger

        ledger = ServerLedger(other)
        try:
            ledger.query(f"DROP DATABASE IF EXISTS {ledger.database}")
        finally:
            ledger.close()


def test_the_sink_group_is_rewound_to_the_positions_the_backup_recorded(kafka_broker, kafka_settings):
    """The streaming half of a restore: the sink group goes back to where it had committed when
    the backup was taken, so the ledger rows written since are written again."""
    import asyncio

    from aiokafka import AIOKafkaProducer, TopicPartition

    from topologies.admin import consumer_lag_sync, ensure_topics_sync
    from topologies.generation import _commit
    from topologies.kafka_access import kafka_access
    from tuike.backoffice.backup import kafka_positions
    from tuike.backoffice.restore import rewind_sink

    kafka, s = kafka_access(kafka_broker, kafka_settings.security), kafka_settings
    ledger_topic, group = s.ledger_topic(0), s.sink_group(0)
    ensure_topics_sync(kafka, [(t, 2, False) for t in (ledger_topic, s.deadletter, *s.inputs)])

    async def produce(n: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker)
        await producer.start()
        try:
            for _ in range(n):
                await producer.send_and_wait(ledger_topic, b"row", partition=0)
        finally:
            await producer.stop()

    asyncio.run(produce(5))
    asyncio.run(_commit(kafka, group, {TopicPartition(ledger_topic, 0): 3}))
    positions = kafka_positions(kafka, s)
    assert positions["generation"] == 0 and positions["sink_group"] == group
    assert positions["sink"][ledger_topic] == {"0": 3, "1": 0}
    asyncio.run(_commit(kafka, group, {TopicPartition(ledger_topic, 0): 5}))  # the sink went on after the backup

    assert rewind_sink(kafka, s, orjson_roundtrip(positions)) == positions["sink"]
    committed = {(r.topic, r.partition): r.committed for r in consumer_lag_sync(kafka, group, [ledger_topic], s)}
    assert committed[(ledger_topic, 0)] == 3


def orjson_roundtrip(value: dict) -> dict:
    """As the manifest gives it back."""
    import orjson

    return orjson.loads(orjson.dumps(value))


def test_the_commands_say_what_is_wrong_with_exit_2(tmp_path):
    from tests.support.streaming import ok, tuike

    p = ok(tuike("restore", "--from", "nowhere", "--into", "fresh", cwd=tmp_path), 2)
    assert "nowhere is not a tuike backup" in p.stderr and not (tmp_path / "fresh").exists()
    p = ok(tuike("backup", "--to", "b", "--data-dir", "empty", cwd=tmp_path), 2)
    assert "no ledger in empty" in p.stderr and not (tmp_path / "b").exists()
