"""Reading the ledger out: SQL (``tuike query``) and whole tables to Parquet or CSV (``tuike export``)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tuike.cli.common import EXIT_OK, OperationalError, UsageError, _load_config, _open_ledger
from tuike.cli.output import _print_query


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("query", parents=common, help="run SQL on the ledger")
    p.add_argument("sql", metavar="SQL")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_query)

    p = subs.add_parser("export", parents=common,
                        help="write one analysts' table (commission_ledger, dead_letters, a fact view) to Parquet or CSV")
    p.add_argument("--table", required=True, metavar="TABLE",
                   help="commission_ledger, dead_letters, orders, order_items, order_events, clicks, bindings, promoters, "
                        "fraud_scores, settlements, settled_lines, alerts or agreements")
    p.add_argument("--period", default=None, metavar="YYYY-MM",
                   help="only that calendar month in the configured timezone (by ts; settlements, settled_lines and "
                        "alerts by their period)")
    p.add_argument("--format", choices=("parquet", "csv"), default=None,
                   help="parquet or csv (default: from --out's suffix, else parquet)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write (default ./<table>[-<period>].<format>; - for stdout)")
    p.set_defaults(func=cmd_export)


def cmd_query(args: argparse.Namespace) -> int:
    return _print_query(args, args.sql)


def cmd_export(args: argparse.Namespace) -> int:
    """One analysts' table to Parquet or CSV, in batches (tuike/backoffice/export.py)."""
    from sinks import LedgerError

    from tuike.backoffice.export import ExportError, check_export, default_out, export_table, parse_period
    from tuike.progress import Progress

    fmt = args.format or ("csv" if (args.out or "").lower().endswith(".csv") else "parquet")
    try:
        check_export(args.table, None, fmt)
        period = parse_period(args.period, _load_config(args.config).timezone) if args.period else None
        check_export(args.table, period, fmt)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    data_dir = Path(args.data_dir)
    if not args.clickhouse and not (data_dir / "ledger").exists():
        raise UsageError(f"no ledger in {data_dir} yet: run `tuike run --events FILE` first")
    out = args.out or default_out(args.table, fmt, period)
    partial = None if out == "-" else Path(out).with_name(Path(out).name + ".partial")  # renamed when complete
    try:
        dest = sys.stdout.buffer if partial is None else open(partial, "wb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    progress = Progress("exported", "rows")
    done = False
    try:
        ledger = _open_ledger(args.clickhouse, data_dir)
        try:
            stats = export_table(ledger, args.table, fmt, period, dest, progress=progress)
        except (LedgerError, ExportError) as exc:  # the SQL is tuike's: a server gone, a table changed under it
            raise OperationalError(f"export of {args.table} failed: {str(exc).strip()}") from None
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OperationalError(f"--out {out}: writing failed: {exc.strerror or exc}") from None
        finally:
            ledger.close()
        dest.flush()
        if partial is not None:
            dest.close()
            os.replace(partial, out)
        done = True
    finally:
        if partial is not None and not done:
            dest.close()
            partial.unlink(missing_ok=True)
    progress.done(stats.rows)
    print(f"exported {stats.rows:,} rows of {args.table}{' for ' + period.name if period else ''} "
          f"to {'stdout' if partial is None else out} in {stats.seconds:.1f} s",
          file=sys.stderr if partial is None else sys.stdout)
    return EXIT_OK
