"""``tuike restore --from DIR``: a backup into a data directory and a ledger, checked, and what
to do next to catch up.

Every file's checksum is checked before anything is written. The target must be empty (a new
``--data-dir``, a new or empty database) unless ``force``, which replaces what is there. Each
table is restored with its merges stopped, so the rows found afterwards can be counted against
the manifest; then the ledger's money per generation (distinct rows and net, read through
``FINAL``) must equal the manifest's. The evidence log must verify and end in the recorded hash.

Resuming: the embedded state and the ledger are restored from the same moment, so ``tuike run``
of the same event files continues exactly (what the state holds counts once, the rest is derived
as in an uninterrupted run). For a streaming ledger the sink group is rewound to the positions
the backup recorded, so the workers write again every ledger row produced since.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from sinks.tables import row_count, truncate, write_table
from topologies.rocks_state import RocksState
from topologies.state_cache import META, StateCache
from tuike.backoffice.backup import INBOX, ledger_money
from tuike.backoffice.backup_files import (
    BackupDamaged,
    BackupError,
    check_files,
    copy_tree,
    read_manifest,
    sha256_of,
)
from tuike.backoffice.evidence import evidence_path, verify

# Filled by the target itself when its schema is made (sinks/schema.py): not restored, not "rows in the way"
TARGETS_OWN = frozenset({"schema_upgrades"})


@dataclass
class RestoreReport:
    manifest: dict
    tables: int = 0
    rows: int = 0
    seconds: float = 0.0
    rewound: dict = field(default_factory=dict)  # the sink group's positions, when rewound
    next_steps: list[str] = field(default_factory=list)


def check_backup(src: Path) -> dict:
    """The manifest, once every file it names matches its checksum (:class:`BackupDamaged` if not)."""
    manifest = read_manifest(src)
    ledger = manifest.get("ledger") or {}
    check_files(src, {t["file"]: t for t in ledger.get("tables", {}).values()}, "ledger")
    if manifest.get("state"):
        check_files(src / "state", manifest["state"]["files"], "state")
    if manifest.get("inbox"):
        check_files(src / INBOX, manifest["inbox"]["files"], "inbox")
    for part in ("evidence", "config"):
        if manifest.get(part):
            check_files(src, {manifest[part]["file"]: manifest[part]}, part)
    return manifest


def restore_backup(src: Path, *, data_dir: Path, ledger: Any, force: bool = False, kafka: Any = None,
                   settings: Any = None, say: Callable[[str], None] = lambda _: None) -> RestoreReport:
    """Restore ``src`` into ``data_dir`` and ``ledger`` (opened on the target). ``kafka`` (with
    ``settings``): rewind the workers' sink group to the backup's positions."""
    started = time.monotonic()
    manifest = check_backup(src)
    report = RestoreReport(manifest)
    say(f"backup of {manifest['created']} (tuike {manifest['tuike_version']}): every checksum matches")
    in_the_way = _not_empty(manifest, data_dir, ledger)
    if in_the_way and not force:
        raise BackupError("the target is not empty: " + "; ".join(in_the_way) + ". Restore into a new --data-dir "
                          "(and a new --clickhouse database), or add --force to replace what is there")
    _ledger(src, manifest["ledger"], ledger, force, report, say)
    if manifest.get("state"):
        _state(src, manifest["state"], data_dir, ledger.identity, say)
    if manifest.get("evidence"):
        _evidence(src, manifest["evidence"], data_dir, say)
    if manifest.get("inbox"):
        _replace(data_dir / INBOX)
        copy_tree(src / INBOX, data_dir / INBOX)
        say(f"  inbox: {len(manifest['inbox']['files'])} files into {data_dir / INBOX}")
    if manifest.get("config"):
        _config(src, manifest["config"], data_dir, force, say)
    if manifest.get("kafka") and kafka is not None:
        report.rewound = rewind_sink(kafka, settings, manifest["kafka"])
        say(f"  kafka: sink group {manifest['kafka']['sink_group']} rewound to the backup's positions")
    report.seconds = time.monotonic() - started
    report.next_steps = next_steps(manifest, data_dir, ledger, rewound=bool(report.rewound))
    return report


def _not_empty(manifest: dict, data_dir: Path, ledger: Any) -> list[str]:
    found = []
    existing = {r[0] for r in ledger.query("SELECT name FROM system.tables WHERE database = currentDatabase()").rows}
    full = [t for t in manifest["ledger"]["tables"] if t in existing and t not in TARGETS_OWN and row_count(ledger, t)]
    if full:
        found.append(f"the ledger {ledger.identity} holds rows ({', '.join(full[:4])}{' …' if len(full) > 4 else ''})")
    for what, path in (("state", data_dir / "state"), ("evidence", evidence_path(data_dir)), ("inbox", data_dir / INBOX)):
        if manifest.get(what) and path.exists() and (path.is_file() or any(path.iterdir())):
            found.append(f"{path} exists")
    return found


def _ledger(src: Path, part: dict, ledger: Any, force: bool, report: RestoreReport, say: Callable[[str], None]) -> None:
    existing = {r[0] for r in ledger.query("SELECT name FROM system.tables WHERE database = currentDatabase()").rows}
    for name, table in sorted(part["tables"].items()):
        if name in TARGETS_OWN:
            continue
        if name not in existing:
            _create(ledger, name, table["create"], part["database"])
        data = pq.read_table(src / table["file"])
        ledger.query(f"SYSTEM STOP MERGES {name}")  # so the rows can be counted: a merge would collapse copies
        try:
            if force:
                truncate(ledger, name)
            write_table(ledger, name, data)
            found = row_count(ledger, name)
        finally:
            ledger.query(f"SYSTEM START MERGES {name}")
        if found != table["rows"]:
            raise BackupDamaged(f"table {name}: {found:,} rows after the restore, the backup holds {table['rows']:,}: "
                                "was something writing to the target? Restore into an empty database")
        report.tables += 1
        report.rows += found
    money = ledger_money(ledger)
    if money != part["money"]:
        raise BackupDamaged(f"the restored ledger's money {money} differs from the backup's {part['money']}")
    say(f"  ledger {ledger.identity}: {report.tables} tables, {report.rows:,} rows; "
        + "; ".join(f"generation {g}: {m['rows']:,} entries, net {m['net']}" for g, m in money.items())
        + " — as backed up")


def _create(ledger: Any, name: str, create: str, source_db: str) -> None:
    """A table the DDL does not make (made on first use, e.g. the dashboard audit) as it was made."""
    from tuike.dashboard.audit import TABLE, audit_statements

    if name == TABLE:
        for stmt in audit_statements(ledger.database):
            ledger.query(stmt)
        return
    stmt = re.sub(rf"^CREATE TABLE {re.escape(source_db)}\.", f"CREATE TABLE IF NOT EXISTS {ledger.database}.", create)
    ledger.query(stmt)


def _state(src: Path, part: dict, data_dir: Path, identity: str, say: Callable[[str], None]) -> None:
    target = data_dir / "state"
    _replace(target)
    copy_tree(src / "state", target)
    if part.get("ledger") not in (None, identity):  # the same rows, now in another database: say so
        state = RocksState(target)
        try:
            if StateCache(state.read).get(META, "ledger") == part["ledger"]:
                state.write_now(META, "ledger", identity)
        finally:
            state.close()
    say(f"  state: {len(part['files'])} files into {target}" + (
        f" (it was derived for {part['ledger']}, now belongs to {identity})" if part.get("ledger") not in (None, identity)
        else ""))


def _evidence(src: Path, part: dict, data_dir: Path, say: Callable[[str], None]) -> None:
    target = evidence_path(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".restoring")
    shutil.copyfile(src / part["file"], tmp)
    os.replace(tmp, target)
    result = verify(target)
    if not (result.ok and result.records == part["records"] and result.last_hash == part["last_hash"]):
        raise BackupDamaged(f"the restored evidence log {target} does not verify as backed up "
                            f"({result.problem or f'{result.records} records, last hash {result.last_hash}'})")
    say(f"  evidence: {result.records} records verified, last hash {result.last_hash}")


def _config(src: Path, part: dict, data_dir: Path, force: bool, say: Callable[[str], None]) -> None:
    target = data_dir / "tuike.yaml"
    if target.exists() and not force and sha256_of(target) != part["sha256"]:
        say(f"  configuration: {target} exists and differs; the backup's copy stays in {src / part['file']}")
        return
    shutil.copyfile(src / part["file"], target)
    target.chmod(0o600)
    say(f"  configuration: {target} (from {part['source']})" + (
        f"; set again, they were written inline: {', '.join(part['redacted'])}" if part["redacted"] else ""))


def rewind_sink(kafka: Any, settings: Any, positions: dict) -> dict:
    """Move the sink group back to the backup's positions, so the workers write again every ledger
    row produced since; refused while workers run or after a replay started another generation."""
    import asyncio

    from aiokafka import TopicPartition

    from topologies.admin import group_members_sync
    from topologies.generation import _commit, current_generation

    generation = current_generation(kafka, settings)
    if generation != positions["generation"]:
        raise BackupError(f"the backup is of generation {positions['generation']}, the workers now run generation "
                          f"{generation} (a replay since): its sink positions do not apply. Restore with --no-kafka "
                          f"and let generation {generation} derive its ledger")
    members = group_members_sync(kafka, positions["sink_group"]) + group_members_sync(kafka, positions["group"])
    if members:
        raise BackupError(f"{members} worker consumer(s) of {positions['group']} are running: stop every `tuike worker` "
                          "first, restore, then start them against the restored ledger")
    offsets = {TopicPartition(t, int(p)): int(o) for t, parts in positions["sink"].items() for p, o in parts.items()}
    if offsets:
        asyncio.run(_commit(kafka, positions["sink_group"], offsets))
    return positions["sink"]


def next_steps(manifest: dict, data_dir: Path, ledger: Any, *, rewound: bool) -> list[str]:
    steps = []
    where = f"--data-dir {data_dir}" + (f" --clickhouse {ledger.identity}" if ledger.identity.startswith("clickhouse")
                                        else "")
    if manifest.get("kafka"):
        k = manifest["kafka"]
        behind = sum(p["end"] - p["committed"] for parts in k["inputs"].values() for p in parts.values())
        if rewound:
            steps.append(f"start the workers with TUIKE_CLICKHOUSE={ledger.identity} (`tuike worker`): the sink "
                         f"re-reads the ledger topic from the backup's positions, and rows already restored count once")
        else:
            steps.append(f"rewind the sink group {k['sink_group']} to the backup's positions: `tuike restore` again "
                         "with --broker (and the workers stopped), or lose the ledger rows written since the backup")
        steps.append(f"watch `tuike lag` until both groups of generation {k['generation']} are at 0 "
                     f"(the workers were {behind:,} input records behind at the backup)")
    elif manifest.get("state"):
        steps.append(f"run the same event files again, oldest first (`tuike run --events FILE {where}`): what the "
                     "backup holds counts once, and everything after it is derived as in an uninterrupted run")
    if manifest.get("inbox"):
        steps.append(f"`tuike serve {where}` replays the inbox beyond the state's position; webhooks answered after "
                     "the backup are only back if the platforms deliver them again")
    if manifest.get("evidence"):
        steps.append(f"`tuike evidence verify {where}`, and compare its last hash with the one kept elsewhere")
    if manifest["ledger"]["tables"].get("person_keys", {}).get("rows"):
        steps.append(f"run `tuike forget` again for every person forgotten after {manifest['created']}: this "
                     "backup still holds their data keys (wrapped by the master keys)")
    steps.append(f"check the money: `tuike query \"SELECT kind, count(), sum(amount) FROM commission_ledger GROUP BY "
                 f"kind\" {where}`")
    return steps


def _replace(path: Path) -> None:
    """Move what is at ``path`` aside (``--force``): nothing is deleted by a restore."""
    if path.exists():
        path.rename(path.with_name(f"{path.name}.before-restore-{int(time.time())}"))
