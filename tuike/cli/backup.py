"""``tuike backup`` and ``tuike restore``: disaster recovery of a data directory and its ledger
(tuike/backoffice/backup.py and restore.py say what is copied and how it stays consistent)."""
from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

from tuike.cli.common import (EXIT_OK, OperationalError, UsageError, _broker, _kafka_errors, _load_config,
                              _open_ledger, _read_ledger, _stream_settings)


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("backup", parents=common,
                        help="copy the ledger, the evidence log, the embedded state and the configuration to a directory")
    p.add_argument("--to", required=True, metavar="DIR", help="a new directory for this backup")
    p.add_argument("--no-kafka", action="store_true",
                   help="a server ledger that no workers write (tuike run --clickhouse): record no Kafka positions")
    p.set_defaults(func=cmd_backup)

    p = subs.add_parser("restore", parents=common,
                        help="restore a backup into an empty data directory and ledger, checked against its manifest")
    p.add_argument("--from", dest="source", required=True, metavar="DIR", help="a directory `tuike backup` wrote")
    p.add_argument("--into", metavar="DIR", default=None, help="the data directory to restore into (default --data-dir)")
    p.add_argument("--force", action="store_true",
                   help="replace what the target holds (its tables are emptied, its state and evidence moved aside)")
    p.add_argument("--no-kafka", action="store_true",
                   help="do not rewind the workers' sink group to the backup's Kafka positions")
    p.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> int:
    from tuike.backoffice.backup import take_backup
    from tuike.backoffice.backup_files import BackupError

    config = _config_path(args.config)
    data_dir = Path(args.data_dir)
    kafka = settings = None
    if args.clickhouse and not args.no_kafka:
        settings = _stream_settings(_load_config(args.config))
        kafka = _broker(args, settings)
    to = Path(args.to)
    print(f"tuike backup of {data_dir}{' and ' + args.clickhouse if args.clickhouse else ''} into {to}")
    ledger = _read_ledger(args)
    try:
        with _kafka_errors(kafka) if kafka is not None else nullcontext():
            manifest = take_backup(to, data_dir=data_dir, ledger=ledger, config=config, kafka=kafka,
                                   settings=settings, say=print)
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    finally:
        ledger.close()
    print(f"done in {manifest['seconds']:.1f} s: {to / 'manifest.json'} lists every file and its SHA-256")
    if manifest.get("evidence"):
        print(f"keep the evidence log's last hash somewhere else too: {manifest['evidence']['last_hash']}")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from tuike.backoffice.backup_files import BackupDamaged, BackupError
    from tuike.backoffice.restore import check_backup, restore_backup

    source = Path(args.source)
    data_dir = Path(args.into or args.data_dir)
    try:
        manifest = check_backup(source)
    except BackupDamaged as exc:
        raise OperationalError(str(exc)) from None
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    kafka = settings = None
    if manifest.get("kafka") and args.clickhouse and not args.no_kafka:
        settings = _stream_settings(_load_config(args.config))
        kafka = _broker(args, settings)
    print(f"tuike restore of {source} into {data_dir}{' and ' + args.clickhouse if args.clickhouse else ''}")
    ledger = _open_ledger(args.clickhouse, data_dir)
    try:
        with _kafka_errors(kafka) if kafka is not None else nullcontext():
            report = restore_backup(source, data_dir=data_dir, ledger=ledger, force=args.force, kafka=kafka,
                                    settings=settings, say=print)
    except BackupDamaged as exc:
        raise OperationalError(str(exc)) from None
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    finally:
        ledger.close()
    print(f"restored in {report.seconds:.1f} s. Next:")
    for i, step in enumerate(report.next_steps, 1):
        print(f"  {i}. {step}")
    return EXIT_OK


def _config_path(given: str | None) -> Path | None:
    if given is not None:
        return Path(given)
    default = Path("tuike.yaml")
    return default if default.is_file() else None
