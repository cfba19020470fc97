"""The back office: settle and reconcile a month, verify the evidence log, read the alerts and the
review queue."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from tuike.cli.common import (EXIT_ERROR, EXIT_OK, OperationalError, UsageError, _broker, _count, _kafka_errors,
                              _load_config, _long_run_collector, _open_ledger, _stream_settings)
from tuike.cli.output import _print_query, _write_table


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("settle", parents=common,
                        help="close a month: confirmed commission, tier bonus, carried negatives, tax, net payout")
    p.add_argument("--period", required=True, metavar="YYYY-MM", help="the calendar month, in the configured timezone")
    p.set_defaults(func=cmd_settle)

    p = subs.add_parser("reconcile", parents=common,
                        help="orders vs ledger vs settlements vs statements: every mismatch; exit 0 only when clean")
    p.add_argument("--period", required=True, metavar="YYYY-MM")
    p.set_defaults(func=cmd_reconcile)

    p = subs.add_parser("evidence", parents=common, help="the hash-chained evidence log (电子签约存证)")
    esubs = p.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)
    c = esubs.add_parser("verify", parents=common, help="check the chain; names the first altered, removed, "
                                                         "inserted or reordered record")
    c.set_defaults(func=cmd_evidence_verify)

    p = subs.add_parser("alerts", parents=common, help="fund-flow alerts raised at settlement (资金流监控)")
    p.add_argument("--period", default=None, metavar="YYYY-MM")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_alerts)

    p = subs.add_parser("review", parents=common, help="the fraud review queue")
    rsubs = p.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    c = rsubs.add_parser("list", parents=common, help="held orders not decided yet, the most money held first")
    c.add_argument("--limit", type=_count, default=50, metavar="N", help="at most N orders (default 50)")
    c.add_argument("--format", choices=("table", "csv", "json"), default="table")
    c.set_defaults(func=cmd_review_list)


def _settlement_teller(args: argparse.Namespace, config: Any, data_dir: Path, ledger: Any) -> Any:
    """Where ``tuike settle`` tells what it paid (``order.settled``): the engine that keeps the
    orders' state for this ledger. That is the embedded state in --data-dir (chDB, or a server
    ledger fed by ``tuike run``/``serve``), else the workers, through the orders topic on --broker
    (a replay reads them again)."""
    from schemas.records import records_of
    from topologies.embedded import keeps_state_for, run_events

    def records(events: list[dict]) -> list:
        return records_of(events, "tuike settle")

    if not args.clickhouse or keeps_state_for(data_dir, ledger.identity):
        def tell(events: list[dict]) -> None:
            if not events:
                return
            stats = run_events(records(events), config=config, data_dir=data_dir, ledger=ledger)
            if stats.rejected:  # settle wrote them: a refusal is a defect, never the user's input
                raise OperationalError(f"the engine refused {stats.rejected} order.settled events: "
                                       f"{dict(stats.rejected_reasons)}")
            print(f"told the embedded state in {data_dir / 'state'} which lines of {len(events):,} orders were paid")
        return tell
    from topologies.admin import ensure_topics_sync, input_topic_specs, produce_records_sync

    settings, broker = _stream_settings(config), _broker(args)

    def publish(events: list[dict]) -> None:
        if not events:
            return
        try:
            with _kafka_errors(broker):
                ensure_topics_sync(broker, input_topic_specs(settings), **settings.replication())
                produce_records_sync(broker, settings, records(events))
        except OperationalError as exc:
            raise OperationalError(f"{exc}\nthe settlement is recorded, but the workers were not told which lines it "
                                   f"paid: start Kafka (or give --broker) and run tuike settle --period "
                                   f"{args.period} again; it finishes the run") from None
        print(f"published {len(events):,} order.settled events to the orders topic at {broker}")
    return publish


def cmd_settle(args: argparse.Namespace) -> int:
    from tuike.backoffice.evidence import EvidenceError
    from tuike.backoffice.settle import SettleError, settle

    config = _load_config(args.config)
    data_dir = Path(args.data_dir)
    ledger = _open_ledger(args.clickhouse, data_dir)
    from topologies.rocks_state import StateInUse

    _long_run_collector()  # a settlement holds every row it read until it ends: a sixth of the run was collections
    try:
        t0 = time.perf_counter()
        tell = _settlement_teller(args, config, data_dir, ledger)
        outcome = settle(ledger, config, args.period, data_dir, tell=tell)
        summary = ledger.query(
            "SELECT status, count(), sum(balance), sum(bonus), sum(tax), sum(net), sum(carried) FROM settlements "
            f"WHERE period = '{outcome.period.name}' GROUP BY status ORDER BY status").rows
    except SettleError as exc:
        raise UsageError(str(exc)) from None
    except EvidenceError as exc:
        raise OperationalError(f"the evidence log refuses the settlement: {exc}") from None
    except StateInUse as exc:
        raise OperationalError(f"{exc}: settling tells the embedded state what was paid, so stop `tuike serve` (or "
                               f"`tuike run`) on {data_dir} first, then run tuike settle --period {args.period} "
                               "(again: it finishes a run that stopped)") from None
    finally:
        ledger.close()
    p = outcome.period.name
    if outcome.already:
        print(f"{p} was settled before: nothing changed (money dated in {p} that arrived since is in the next period)")
    else:
        print(f"settled {p} in {time.perf_counter() - t0:.1f} s: {outcome.payees:,} payees, "
              f"{outcome.rows:,} ledger rows, {outcome.alerts} alerts (tuike alerts --period {p})")
    _write_table(["status", "payees", "balance", "bonus", "tax", "net paid", "carried"], [], summary, sys.stdout)
    print(f"statements: {data_dir / 'statements' / p}/; withholding export: {data_dir / 'tax' / (p + '-withholding.csv')}")
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from tuike.backoffice.reconcile import reconcile
    from tuike.backoffice.settle import SettleError, period_of

    config = _load_config(args.config)
    data_dir = Path(args.data_dir)
    try:
        period = period_of(args.period, config.timezone)
    except SettleError as exc:
        raise UsageError(str(exc)) from None
    ledger = _open_ledger(args.clickhouse, data_dir)
    try:
        problems = reconcile(ledger, config, period, data_dir)
    finally:
        ledger.close()
    for problem in problems:
        print(problem)
    print(f"reconcile {period.name}: {'clean' if not problems else f'{len(problems):,} mismatches'}")
    return EXIT_OK if not problems else EXIT_ERROR


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from tuike.backoffice.evidence import verify_command

    return verify_command(Path(args.data_dir), sys.stdout)


def cmd_alerts(args: argparse.Namespace) -> int:
    where = f"WHERE period = '{args.period}'" if args.period else ""
    if args.period and not re.fullmatch(r"[0-9]{4}-[0-9]{2}", args.period):
        raise UsageError(f"--period {args.period!r}: expected YYYY-MM")
    return _print_query(args, f"SELECT period, kind, subject, amount, detail FROM alerts {where} "
                              "ORDER BY period, kind, subject")


def cmd_review_list(args: argparse.Namespace) -> int:
    from tuike.backoffice.review import review_queue_sql

    return _print_query(args, review_queue_sql(args.limit))
