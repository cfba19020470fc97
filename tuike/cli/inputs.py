"""What ``tuike run`` reads, prepared beforehand: a configuration checked, a generated shop written
as an event file."""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

from tuike.cli.common import EXIT_BAD_INPUT, EXIT_OK, UsageError, _count


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("config", parents=common, help="configuration tools")
    csubs = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csubs.add_parser("check", parents=common, help="validate a configuration: exit 0, or 2 with every problem")
    c.add_argument("file", metavar="FILE")
    c.set_defaults(func=cmd_config_check)

    p = subs.add_parser("generate", parents=common, help="write a realistic generated shop as an event file")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", metavar="FILE", required=True, help=".jsonl or .jsonl.gz")
    p.add_argument("--events", type=_count, default=None, metavar="N",
                   help="scale the shop to exactly N good events (default: 300 promoters, 5000 customers, 8000 orders)")
    p.add_argument("--bad-lines", type=_count, default=0, metavar="N", help="mix in N malformed lines")
    p.add_argument("--promoters", type=_count, default=300)
    p.add_argument("--customers", type=_count, default=5000)
    p.add_argument("--orders", type=_count, default=8000)
    p.add_argument("--start", default="2026-10-01", help="first day, YYYY-MM-DD (default 2026-10-01)")
    p.add_argument("--days", type=_count, default=61)
    p.set_defaults(func=cmd_generate)


def cmd_config_check(args: argparse.Namespace) -> int:
    from tuike.configfile import check_config_file

    ok, lines = check_config_file(args.file)
    out = sys.stdout if ok else sys.stderr
    for line in lines:
        out.write(line + "\n")
    return EXIT_OK if ok else EXIT_BAD_INPUT


def cmd_generate(args: argparse.Namespace) -> int:
    from tuike.lab.generate import generate_shop, write_events
    from tuike.progress import Progress

    out = Path(args.out)
    if not (out.name.endswith(".jsonl") or out.name.endswith(".jsonl.gz")):
        raise UsageError(f"--out {out}: the file name must end in .jsonl or .jsonl.gz")
    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise UsageError(f"--start {args.start!r}: expected a date such as 2026-10-01") from None
    if args.days < 1:
        raise UsageError("--days must be at least 1")
    t0 = time.perf_counter()
    events = generate_shop(args.seed, promoters=args.promoters, customers=args.customers, orders=args.orders,
                           start=start, days=args.days, bad_lines=args.bad_lines, events=args.events)
    try:
        n = write_events(events, out, progress=Progress("wrote", "events"))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    secs = time.perf_counter() - t0
    bad = f" ({args.bad_lines:,} of them malformed on purpose)" if args.bad_lines else ""
    print(f"wrote {n:,} events{bad} to {out} in {secs:.1f} s ({n / max(secs, 1e-9):,.0f} events/s)")
    return EXIT_OK
