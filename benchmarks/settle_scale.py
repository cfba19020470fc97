"""Settling a month with many payees: time and peak memory of `tuike settle`.

    python -m benchmarks.settle_scale [--payees 10000] [--orders 15]     (make bench-settle)

Builds a chDB ledger for one month directly (no engine run, which would dominate): for each
payee, ``--orders`` orders paid in September and confirmed in October (an ``accrue`` row, a
``confirm`` move and the order's items), a few refunds clawed back, tiers and per_payment tax;
then runs `tuike settle --period 2026-10` in a subprocess of its own and reports its wall time,
its CPU time (user + system: steadier than the wall time on a shared machine) and peak RSS, and
the same for a second run (which must change nothing).
"""
from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = 'tiers: [{min_gmv: "1000", bonus: "0.01"}, {min_gmv: "5000", bonus: "0.02"}]\n'


def build(data_dir: Path, payees: int, orders: int, seed: int) -> int:
    from schemas.ledger_entry import LedgerEntry, entry_id
    from sinks import open_ledger
    from sinks import Batch

    rng = random.Random(seed)
    ledger = open_ledger(None, data_dir)
    rows = 0
    try:
        for start in range(0, payees, 500):
            entries, items = [], []
            for n in range(start, min(payees, start + 500)):
                payee = f"P{n:06d}"
                for k in range(orders):
                    order, sku = f"O{n:06d}-{k:03d}", f"S{rng.randrange(200):03d}"
                    price = Decimal(rng.randrange(1_000, 60_000)) / 100
                    commission = (price * Decimal("0.10")).quantize(Decimal("0.01"))
                    paid = datetime(2026, 9, rng.randrange(1, 29), 12, tzinfo=timezone.utc)
                    confirmed = datetime(2026, 10, rng.randrange(1, 29), 12, tzinfo=timezone.utc)
                    ms = lambda d: int(d.timestamp() * 1000)  # noqa: E731

                    def row(kind: str, status: str, amount: Decimal, when: datetime, part: str) -> LedgerEntry:
                        return LedgerEntry(entry_id(order, kind, part), f"e-{order}-{kind}", ms(when), order, sku, "C",
                                           payee, 1, kind, amount, Decimal("0.10"), "", "CNY", status)

                    entries += [row("accrue", "pending", commission, paid, "a"),
                                row("confirm", "pending", -commission, confirmed, "o"),
                                row("confirm", "confirmed", commission, confirmed, "i")]
                    if rng.random() < 0.03:  # clawed back after confirmation
                        entries.append(row("reverse", "confirmed", -commission, confirmed.replace(day=29), "r"))
                    items.append({"order_id": order, "sku": sku, "category": "general", "price": price, "qty": 1,
                                  "paid_amount": price, "ts": paid})
            ledger.write(Batch(entries, {"order_items": items}, []))
            rows += len(entries)
            print(f"\rledger: {rows:,} rows for {min(payees, start + 500):,} payees", end="", file=sys.stderr, flush=True)
    finally:
        ledger.close()
    print(file=sys.stderr)
    return rows


def timed_settle(data_dir: Path, config: Path) -> tuple[float, float, float, str]:
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-m", "tuike.cli", "settle", "--period", "2026-10", "--data-dir", str(data_dir),
                        "--config", str(config)], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"tuike settle failed ({p.returncode}): {p.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, max(after.ru_maxrss, before.ru_maxrss) / 1024, p.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.settle_scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--payees", type=int, default=10_000)
    ap.add_argument("--orders", type=int, default=15, help="orders per payee (default 15)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=ROOT / "bench-data" / "settle")
    args = ap.parse_args(argv)
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    config = args.dir / "tuike.yaml"
    config.write_text(RULES, encoding="utf-8")
    t0 = time.perf_counter()
    rows = build(args.dir, args.payees, args.orders, args.seed)
    print(f"built a ledger of {rows:,} rows for {args.payees:,} payees in {time.perf_counter() - t0:.1f} s")
    seconds, cpu, peak, out = timed_settle(args.dir, config)
    print(out.rstrip())
    again, cpu2, _, out2 = timed_settle(args.dir, config)
    assert "nothing changed" in out2, out2
    statements = sum(1 for _ in (args.dir / "statements" / "2026-10").glob("*.json"))
    print(f"\nsettle 2026-10: {args.payees:,} payees, {statements:,} statements: {seconds:.1f} s (CPU {cpu:.1f} s), "
          f"peak RSS {peak:,.0f} MB ({args.payees / seconds:,.0f} payees/s); "
          f"run again: {again:.1f} s (CPU {cpu2:.1f} s), nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
