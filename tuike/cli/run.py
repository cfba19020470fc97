"""``tuike run`` and ``tuike demo``: events through the embedded pipeline, in this process."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tuike.cli.common import (EXIT_BAD_INPUT, EXIT_OK, OperationalError, UsageError, _count, _load_config,
                              _long_run_collector, _open_ledger, _stderr)


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("demo", parents=common, help="generate a shop, run it, show what an owner sees first")
    p.add_argument("--seed", type=int, default=7, help="which shop (default 7)")
    p.add_argument("--promoters", type=_count, default=None, help=argparse.SUPPRESS)
    p.add_argument("--customers", type=_count, default=None, help=argparse.SUPPRESS)
    p.add_argument("--orders", type=_count, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)

    p = subs.add_parser("run", parents=common, help="process an event file through the embedded pipeline")
    p.add_argument("--events", metavar="FILE", required=True, help=".jsonl, .jsonl.gz, .parquet, or - for stdin")
    p.set_defaults(func=cmd_run)


def cmd_demo(args: argparse.Namespace) -> int:
    from tuike import demo
    from tuike.lab.generate import DEFAULTS, generate_shop, write_events
    from tuike.progress import Progress

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    demo_dir = demo.fresh_demo_dir(data_dir)
    token = None
    if args.config is not None:
        config_path = Path(args.config)
        config = _load_config(args.config)
    else:
        keys = demo.demo_secrets(data_dir)
        config_path = demo.write_demo_config(demo_dir, keys)
        config = _load_config(str(config_path))
        token = keys["token"]
    sizes = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in DEFAULTS.items()}
    events_path = data_dir / "demo-events.jsonl"

    print(f"tuike demo: a generated shop (seed {args.seed}: {sizes['promoters']:,} promoters, "
          f"{sizes['customers']:,} customers, {sizes['orders']:,} orders, 2026-10-01 to 2026-11-30, with double 11)")
    t0 = time.perf_counter()
    n = write_events(generate_shop(args.seed, bad_lines=demo.DEMO_BAD_LINES, **sizes), events_path,
                     progress=Progress("generated", "events"))
    print(f"  {n:,} events written to {events_path} in {time.perf_counter() - t0:.1f} s")
    print(f"  rules: {config_path}")

    ledger = _open_ledger(None, demo_dir)  # the demo always runs embedded, in its own directory
    try:
        stats = _run_file(str(events_path), config, demo_dir, ledger)
        print(f"  processed {stats.read:,} events in {stats.seconds:.1f} s "
              f"({stats.read / stats.seconds if stats.seconds else 0:,.0f} events/s): "
              f"{stats.ledger_rows:,} ledger rows, {stats.duplicates:,} duplicates ignored, "
              f"{stats.rejected + getattr(stats, 'refused', 0):,} dead letters")
        demo.report(ledger, stats, currency=config.currency)
        top = ledger.query(demo.SQL_TOP).rows
    finally:
        ledger.close()
    demo.next_steps(demo_dir, events_path, token=token, promoter=top[0][0] if top else None)
    return EXIT_OK


def _run_file(events: str, config: Any, data_dir: Path, ledger: Any, verb: str = "processed") -> Any:
    from schemas.records import EventFileError, read_records
    from topologies.embedded import StateRefusal, run_events
    from tuike.progress import Progress

    from sinks import LedgerError
    from topologies.rocks_state import StateInUse

    progress = Progress(verb, "events")
    try:
        records = read_records(events)
        stats = run_events(records, config=config, data_dir=data_dir, ledger=ledger, progress=progress)
    except (EventFileError, StateRefusal) as exc:
        raise UsageError(str(exc)) from None
    except (StateInUse, LedgerError) as exc:  # a held lock, a server gone away: not the input's fault
        raise OperationalError(str(exc).strip()) from None
    progress.done(stats.read, stats.rejected)
    return stats


def print_run_summary(stats: Any, source: str, out=None) -> None:
    out = out or sys.stdout
    w = out.write
    refused = getattr(stats, "refused", 0)
    w(f"read        {stats.read:>12,}  lines from {source}\n")
    w(f"accepted    {stats.accepted:>12,}\n")
    w(f"rejected    {stats.rejected:>12,}  invalid lines, kept in dead_letters with the reason\n")
    if refused:
        w(f"refused     {refused:>12,}  valid events the rules refuse (self-binds, loops, …), in dead_letters\n")
    w(f"duplicates  {stats.duplicates:>12,}  redelivered events that changed nothing\n")
    w(f"ledger rows {stats.ledger_rows:>12,}  written\n")
    w(f"parked      {stats.parked:>12,}  waiting for a prerequisite (e.g. their order.paid)\n")
    w(f"time        {stats.seconds:>12.1f}s ({stats.rate:,.0f} events/s)\n")
    reasons = getattr(stats, "rejected_reasons", None) or {}
    if reasons:
        w("dead letters by reason:\n")
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            w(f"  {n:>8,}  {reason}\n")


def cmd_run(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    if args.events != "-" and not Path(args.events).is_file():
        raise UsageError(f"--events {args.events}: no such file")
    data_dir = Path(args.data_dir)
    ledger = _open_ledger(args.clickhouse, data_dir)
    _long_run_collector()
    try:
        stats = _run_file(args.events, config, data_dir, ledger)
    finally:
        ledger.close()
    print_run_summary(stats, args.events)
    print(f"rules       {args.config or ('./tuike.yaml' if Path('tuike.yaml').is_file() else 'built-in defaults')} "
          "(commission terms are fixed when an order's payment is first processed)")
    if stats.rejected:
        from tuike.demo import shell_path

        where = "" if args.clickhouse else f" --data-dir {shell_path(data_dir)}"
        source = "stdin" if args.events == "-" else Path(args.events).name
        _stderr(f"tuike: {stats.rejected:,} of {stats.read:,} lines were rejected (see the reasons above, and: tuike "
                f"query{where} \"SELECT position, reason FROM dead_letters WHERE source = '{source}' "
                f"ORDER BY toUInt64OrZero(position)\")")
        return EXIT_BAD_INPUT
    return EXIT_OK
