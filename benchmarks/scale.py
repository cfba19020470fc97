"""`make bench-scale`: a network of a million promoters through both pipelines, with the same money.

    python -m benchmarks.scale [--promoters 1000000] [--customers 50000] [--orders 50000] [--peer-groups 256]

1. generates (once; cached in ``bench-data/``) a shop of ``--promoters`` promoters, each joining
   and signing the agreement, with ``--customers`` customers and ``--orders`` orders;
2. *embedded*: the file through ``run_events`` into a chDB ledger (a subprocess of
   ``benchmarks.embedded_throughput``), with the contract's example rules and
   ``fraud.peer_groups`` = ``--peer-groups``: events/s, peak RSS, the state's size on disk;
3. *streaming*: the same file and rules through ``benchmarks.stream_throughput`` (``tuike
   produce``, the raw-consumer and bare-Faust baselines, ``--workers`` workers on ``--partitions``
   partitions, a ClickHouse server ledger; no latency phase): events/s, its ratio to bare Faust,
   the workers' state size;
4. *check*: the net money per (order, item, beneficiary, level) of both ledgers must be equal,
   and so must the orders that accrued. Fraud holds may date a few orders differently between the
   two (scores read what had arrived, contract §1.2); they never change an amount.

Needs Kafka and ClickHouse (the make target starts them like ``make bench-stream``). Not part of
``make test``: at a million promoters it runs for about an hour on a 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import yaml

from benchmarks.embedded_throughput import BENCH_DIR, ROOT, _child, cached_shop

NET = ("SELECT order_id, item_sku, beneficiary_id, level, toString(sum(amount)) FROM commission_ledger FINAL "
       "GROUP BY order_id, item_sku, beneficiary_id, level HAVING sum(amount) != 0")
ACCRUED = "SELECT DISTINCT order_id FROM commission_ledger FINAL WHERE kind = 'accrue'"


def rules(peer_groups: int) -> str:
    """The contract's example configuration with ``fraud.peer_groups``."""
    from tuike.demo import DEMO_CONFIG_YAML

    config = yaml.safe_load(DEMO_CONFIG_YAML)
    config["fraud"]["peer_groups"] = peer_groups
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def money(rows) -> dict[tuple, Decimal]:
    return {tuple(r[:4]): Decimal(r[4]) for r in rows}


def embedded_money(data_dir: Path) -> tuple[dict[tuple, Decimal], set[str]]:
    from sinks import open_ledger

    ledger = open_ledger(None, data_dir)
    try:
        return money(ledger.query(NET).rows), {r[0] for r in ledger.query(ACCRUED).rows}
    finally:
        ledger.close()


def streamed_money(clickhouse: str, db: str) -> tuple[dict[tuple, Decimal], set[str]]:
    from clickhouse_driver import Client

    from sinks.server_sink import parse_url

    url = parse_url(clickhouse)
    client = Client(url.host, url.port, user=url.user, password=url.password, database=db)
    try:
        return money(client.execute(NET)), {r[0] for r in client.execute(ACCRUED)}
    finally:
        client.disconnect()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--promoters", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--orders", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--peer-groups", type=int, default=256, help="fraud.peer_groups (default 256)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--clickhouse", default="clickhouse://127.0.0.1:9000", help="ClickHouse server, no database")
    ap.add_argument("--embedded-only", action="store_true", help="skip the streaming pipeline and the check")
    args = ap.parse_args(argv)

    started = time.monotonic()
    path = cached_shop(f"scale-seed{args.seed}-p{args.promoters}-c{args.customers}-o{args.orders}", args.seed,
                       promoters=args.promoters, customers=args.customers, orders=args.orders)
    work = BENCH_DIR / "scale"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = work / "tuike.yaml"
    config.write_text(rules(args.peer_groups), encoding="utf-8")

    print(f"embedded: {path.name} with fraud.peer_groups {args.peer_groups}", flush=True)
    embedded = _child("run", path, work / "embedded", config_file=config)
    embedded["state_bytes"] = size_of(work / "embedded" / "state")
    print(f"embedded: {embedded['events']:,} events in {embedded['seconds']:.0f} s = {embedded['rate']:,.0f} events/s, "
          f"peak RSS {embedded['rss_mb']:,.0f} MB, state {embedded['state_bytes'] / 2**20:,.0f} MiB, "
          f"{embedded['ledger_rows']:,} ledger rows", flush=True)
    results: dict = {"file": path.name, "promoters": args.promoters, "peer_groups": args.peer_groups,
                     "embedded": embedded}
    ok = True
    if not args.embedded_only:
        stream_json = work / "stream.json"
        proc = subprocess.run([sys.executable, "-m", "benchmarks.stream_throughput", "--events-file", str(path),
                               "--config-file", str(config), "--duration", "0", "--no-check", "--keep",
                               "--workers", str(args.workers), "--partitions", str(args.partitions),
                               "--clickhouse", args.clickhouse, "--results", str(stream_json)], cwd=ROOT)
        stream = json.loads(stream_json.read_text())
        results["stream"] = stream
        if proc.returncode != 0:
            print(f"bench-scale: the streaming run failed (exit {proc.returncode}); its topics, database and logs are "
                  f"kept: {stream.get('topic_prefix')}, {stream.get('work_dir')}", flush=True)
            return 1
        t = time.perf_counter()
        (net_e, accrued_e), (net_s, accrued_s) = embedded_money(work / "embedded"), \
            streamed_money(args.clickhouse, stream["database"])
        differ = sorted(set(net_e) ^ set(net_s) | {k for k in net_e.keys() & net_s.keys() if net_e[k] != net_s[k]})
        ok = not differ and accrued_e == accrued_s
        results["check"] = {"keys": len(net_e), "net": str(sum(net_e.values(), Decimal(0))),
                            "streamed_net": str(sum(net_s.values(), Decimal(0))), "accrued_orders": len(accrued_e),
                            "streamed_accrued_orders": len(accrued_s), "differing": [list(k) for k in differ[:50]],
                            "same_money": ok}
        print(f"check: {len(net_e):,} (order, item, beneficiary, level) with money embedded, {len(net_s):,} streamed; "
              f"net {results['check']['net']} / {results['check']['streamed_net']}; accrued orders {len(accrued_e):,} / "
              f"{len(accrued_s):,} -> {'the same money' if ok else f'DIFFERENT on {len(differ):,} keys'} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
        if ok:
            subprocess.run([sys.executable, "-m", "benchmarks.stream_throughput", "--clickhouse", args.clickhouse,
                            "--remove", stream["topic_prefix"], stream["work_dir"]], cwd=ROOT)
        pipe, faust = stream["pipeline"], stream["faust"]
        print()
        print(f"{'':22}{'events/s':>10}{'state MiB':>11}{'peak RSS MB':>13}")
        print(f"{'embedded (chDB)':22}{embedded['rate']:>10,.0f}{embedded['state_bytes'] / 2**20:>11,.0f}"
              f"{embedded['rss_mb']:>13,.0f}")
        print(f"{f'streaming ({args.workers} workers)':22}{pipe['rate']:>10,.0f}{pipe['state_bytes'] / 2**20:>11,.0f}")
        print(f"{'bare Faust agent':22}{faust['rate']:>10,.0f}")
        print(f"streaming / bare Faust: {pipe['rate'] / faust['rate']:.3f}")
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results: {work / 'results.json'}; total {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
