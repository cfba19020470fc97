"""``tuike backup --to DIR``: the ledger, the evidence log, the embedded state and the
configuration in one directory, with a manifest that says what it holds and what to re-derive.

Consistency:

- **Embedded** (chDB ledger, RocksDB state in ``--data-dir``): the backup opens both, and each
  admits one process at a time, so a running ``tuike run`` or ``tuike serve`` makes the backup
  refuse (stop it, or back up between runs). With both held, the ledger and the state are the
  same moment: the state is a RocksDB checkpoint, the ledger every row of every table.
- **Streaming** (a ClickHouse server written by workers): the workers may keep running. The
  manifest first records where the sink group had committed (everything before it is in the
  ledger), then the tables are read; rows that arrive meanwhile may or may not be in the copy. A
  restore rewinds the sink group to the recorded positions, so the ledger topic is read again from
  there, and rows in both collapse on their ids. The workers' local state is not copied: it is a
  cache of the changelog topics, which a worker restores by itself.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sinks.tables import base_tables, read_table
from topologies.rocks_state import RocksState, StateInUse
from topologies.state_cache import META, StateCache
from tuike.backoffice.backup_files import (
    FORMAT,
    BackupError,
    config_without_secrets,
    copy_tree,
    files_under,
    sha256_of,
    write_manifest,
)
from tuike.backoffice.evidence import evidence_path, verify

INBOX = "inbox"


def take_backup(to: Path, *, data_dir: Path, ledger: Any, config: Path | None, kafka: Any = None,
                settings: Any = None, say: Callable[[str], None] = lambda _: None) -> dict:
    """Write a backup of ``data_dir`` and ``ledger`` into the new directory ``to``; the manifest.

    ``kafka`` (a KafkaAccess, with ``settings``) is where the workers that write a server ledger
    run: their positions go into the manifest. Raises :class:`BackupError` with what to do."""
    if to.exists() and any(to.iterdir()):
        raise BackupError(f"--to {to} is not empty: give a new directory (each backup is a directory of its own)")
    started = time.monotonic()
    created = datetime.now(timezone.utc)
    to.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": FORMAT, "tuike_version": _version(),
                                "created": created.isoformat(timespec="seconds"), "data_dir": str(data_dir)}
    try:
        if kafka is not None:  # before the ledger: a restore re-reads from here, so nothing falls between
            manifest["kafka"] = kafka_positions(kafka, settings)
            say(_kafka_line(manifest["kafka"]))
        manifest["state"] = _state(data_dir, to, ledger.identity, say)
        manifest["ledger"] = _ledger(ledger, to, say)
        manifest["evidence"] = _evidence(data_dir, to, say)
        manifest["inbox"] = _inbox(data_dir, to)
        manifest["config"] = _config(config, to, say)
    except BaseException:
        shutil.rmtree(to, ignore_errors=True)  # a backup half-written is no backup: leave no directory to mistake
        raise
    manifest["seconds"] = round(time.monotonic() - started, 3)
    write_manifest(to, manifest)
    return manifest


def kafka_positions(kafka: Any, settings: Any) -> dict:
    """The current generation's groups: where the sink group had committed on the ledger topic and
    the dead letters (a restore rewinds it there), and where the workers' group stood on the input
    topics against their ends (what the backup's ledger may lack)."""
    from topologies.admin import consumer_lag_sync
    from topologies.generation import current_generation

    generation = current_generation(kafka, settings)
    sink_group, group = settings.sink_group(generation), settings.app_id(generation)
    sink_topics = [settings.ledger_topic(generation), settings.deadletter]
    sink = consumer_lag_sync(kafka, sink_group, sink_topics, settings)
    inputs = consumer_lag_sync(kafka, group, list(settings.inputs), settings)
    return {
        "generation": generation, "group": group, "sink_group": sink_group,
        "sink": _nested({(r.topic, r.partition): r.committed or 0 for r in sink}),
        "inputs": _nested({(r.topic, r.partition): {"committed": r.committed or 0, "end": r.end} for r in inputs}),
    }


def ledger_money(ledger: Any) -> dict[str, dict[str, str | int]]:
    """Per generation, the distinct ledger rows and their net (``FINAL``: the same whatever has
    merged), which a restore must find again."""
    rows = ledger.query("SELECT generation, count(), sum(amount) FROM ledger_entries FINAL "
                        "GROUP BY generation ORDER BY generation").rows
    return {str(g): {"rows": int(n), "net": str(Decimal(a))} for g, n, a in rows}


def money_of(entries: pa.Table) -> dict[str, dict[str, str | int]]:
    """:func:`ledger_money` of the copied ``ledger_entries`` rows themselves (copies of a row share
    its key (generation, ts, entry_id) and its amount)."""
    if entries.num_rows == 0:
        return {}
    rows = entries.select(["generation", "ts", "entry_id", "amount"]).group_by(
        ["generation", "ts", "entry_id"]).aggregate([("amount", "max")])
    out = {}
    for g in sorted(set(rows.column("generation").to_pylist())):
        mine = rows.filter(pc.equal(rows.column("generation"), g)).column("amount_max").to_pylist()
        out[str(g)] = {"rows": len(mine), "net": str(sum(mine, Decimal("0.00")))}
    return out


def _ledger(ledger: Any, to: Path, say: Callable[[str], None]) -> dict:
    folder = to / "ledger"
    folder.mkdir()
    tables: dict[str, Any] = {}
    money: dict = {}
    for layout in base_tables(ledger):
        data = read_table(ledger, layout)
        path = folder / f"{layout.name}.parquet"
        pq.write_table(data, path, compression="zstd")
        tables[layout.name] = {"file": f"ledger/{path.name}", "rows": data.num_rows, "sha256": sha256_of(path),
                               "engine": layout.engine, "create": layout.create}
        if layout.name == "ledger_entries":
            money = money_of(data)
    total = sum(t["rows"] for t in tables.values())
    say(f"  ledger {ledger.identity}: {len(tables)} tables, {total:,} rows"
        + "".join(f"; generation {g}: {m['rows']:,} entries, net {m['net']}" for g, m in money.items()))
    return {"identity": ledger.identity, "database": ledger.database, "tables": tables, "money": money}


def _state(data_dir: Path, to: Path, identity: str, say: Callable[[str], None]) -> dict | None:
    """A RocksDB checkpoint of the embedded state (consistent: made while this process holds it)."""
    from rocksdict import Checkpoint

    path = data_dir / "state"
    if not path.is_dir():
        return None
    try:
        state = RocksState(path)
    except StateInUse:
        raise BackupError(f"the state in {path} is in use by a running tuike (run or serve): stop it first, or back "
                          "up between runs; a copy taken while it writes could disagree with the ledger") from None
    try:
        belongs = StateCache(state.read).get(META, "ledger")
        if belongs is not None and belongs != identity:
            say(f"  state: {path} belongs to the ledger {belongs}, not {identity}: left out")
            return None
        Checkpoint(state.db).create_checkpoint(str(to / "state"))
    finally:
        state.close()
    files = files_under(to / "state")
    say(f"  state: RocksDB checkpoint of {path}, {len(files)} files, "
        f"{sum(f['bytes'] for f in files.values()) / 1e6:.1f} MB")
    return {"ledger": belongs, "files": files}


def _evidence(data_dir: Path, to: Path, say: Callable[[str], None]) -> dict | None:
    source = evidence_path(data_dir)
    if not source.exists():
        return None
    copy = to / "evidence" / source.name
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    result = verify(copy)
    if not result.ok:
        raise BackupError(f"the evidence log {source} does not verify ({result.problem}): run `tuike evidence verify` "
                          "and settle what it names before backing up (or back up again if a settlement was "
                          "appending just now)")
    say(f"  evidence: {result.records} records, last hash {result.last_hash}")
    return {"file": f"evidence/{copy.name}", "sha256": sha256_of(copy), "records": result.records,
            "last_hash": result.last_hash}


def _inbox(data_dir: Path, to: Path) -> dict | None:
    source = data_dir / INBOX
    if not source.is_dir():
        return None
    copy_tree(source, to / INBOX)
    return {"files": files_under(to / INBOX)}


def _config(config: Path | None, to: Path, say: Callable[[str], None]) -> dict | None:
    if config is None or not config.is_file():
        return None
    copy = config_without_secrets(config)
    path = to / "config" / "tuike.yaml"
    path.parent.mkdir()
    path.write_text(copy.text, encoding="utf-8")
    path.chmod(0o600)
    if copy.redacted:
        say(f"  configuration: {config}; written inline, left out: {', '.join(copy.redacted)}")
    else:
        say(f"  configuration: {config} (secrets are references, kept as they are)")
    return {"file": "config/tuike.yaml", "source": str(config), "sha256": sha256_of(path), "redacted": copy.redacted}


def _kafka_line(k: dict) -> str:
    behind = sum(p["end"] - p["committed"] for parts in k["inputs"].values() for p in parts.values())
    return (f"  kafka: generation {k['generation']}, sink group {k['sink_group']} positions recorded; "
            f"the workers were {behind:,} input records behind")


def _nested(flat: dict[tuple[str, int], Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (topic, partition), value in sorted(flat.items()):
        out.setdefault(topic, {})[str(partition)] = value
    return out


def _version() -> str:
    try:
        return metadata.version("tuike")
    except metadata.PackageNotFoundError:
        return "unknown"
