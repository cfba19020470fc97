"""The disaster-recovery drill: back up, lose everything, restore, catch up — and measure RPO and RTO.

    python -m benchmarks.restore_drill [--events 20000] [--cut 0.5] [--seed 11] [--keep]

Every step is the command an operator would type, in its own process (``tuike generate``, ``run``,
``backup``, ``restore``, ``query``), in a fresh work directory:

1. *reference*: ``tuike run`` of the whole shop into a data dir of its own (an uninterrupted run;
   its wall time is also what a rebuild from nothing costs);
2. *live*: the first ``--cut`` of the shop's events, then ``tuike backup``; then the rest of the
   events (what happens after the backup), and the ledger's figures at that moment;
3. *disaster*: the live data dir — ledger, state, evidence — is deleted;
4. *recovery*: ``tuike restore`` into a fresh data dir, then ``tuike run`` of the same event file:
   what the backup holds counts once, the rest is derived again;
5. *check*: the recovered ledger against the reference (tests/support/streaming.py ``compare``:
   net per order, item, beneficiary and level; balances per status; dead letters; holds; standings).

RPO is reported twice: what the backup alone lacks (the events after it, their ledger rows and
money, and the wall time between backup and loss), and what is still missing after catching up
from the source (0 when the compare passes: the money's RPO is then 0 for as long as the source —
the event files, or the Kafka input topics within their retention — keeps those events).
RTO = wall time from the start of ``tuike restore`` to the end of the catch-up run.

``--streaming`` runs the same drill on the dev Kafka and ClickHouse server (``--broker``,
``--clickhouse``), with topics and databases of its own, deleted at the end:

1. the first part of the shop is produced (``tuike produce``), two ``tuike worker``s derive it into
   database A; ``tuike backup --clickhouse A`` runs while they keep running (it records the sink
   group's positions first); the rest of the shop is produced and derived;
2. disaster: the workers are killed (SIGKILL), database A is dropped, their data dirs deleted;
3. recovery: ``tuike restore --clickhouse B`` (a new database; it rewinds the sink group to the
   backup's positions), two workers with fresh data dirs on B (their state comes back from the
   changelog topics), until the lag is 0 and the ledger has stopped growing; RTO ends there;
4. the ledger in B against the embedded reference.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = "SELECT count(), sum(amount) FROM ledger_entries FINAL"


def tuike(*args: str, cwd: Path) -> tuple[float, str]:
    """Run one tuike command; its wall time and output (exit 0 required)."""
    from tests.support.streaming import TUIKE, child_env

    t0 = time.monotonic()
    p = subprocess.run([*TUIKE, *args], cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"`tuike {' '.join(args)}` exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return took, p.stdout


def figures(data_dir: Path, cwd: Path) -> tuple[int, Decimal]:
    """Distinct ledger rows and their net, every generation."""
    _, out = tuike("query", "--data-dir", str(data_dir), "--format", "json", FIGURES, cwd=cwd)
    row = json.loads(out)[0]
    values = list(row.values()) if isinstance(row, dict) else row
    return int(values[0]), Decimal(str(values[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000, help="events in the generated shop (default 20,000)")
    ap.add_argument("--cut", type=float, default=0.5, help="share of the events run before the backup (default 0.5)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--results", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--streaming", action="store_true", help="the drill on Kafka and a ClickHouse server too")
    ap.add_argument("--broker", default="127.0.0.1:9092")
    ap.add_argument("--clickhouse", default="clickhouse://127.0.0.1:9000", help="server (its database is ignored)")
    args = ap.parse_args(argv)

    from tests.support.streaming import compare, summarize_chdb

    work = Path(tempfile.mkdtemp(prefix="tuike-drill-"))
    shutil.copy(ROOT / "tuike.example.yaml", work / "tuike.yaml")
    try:
        tuike("generate", "--seed", str(args.seed), "--events", str(args.events), "--out", "shop.jsonl", cwd=work)
        lines = (work / "shop.jsonl").read_bytes().splitlines(keepends=True)
        cut = int(len(lines) * args.cut)
        (work / "first.jsonl").write_bytes(b"".join(lines[:cut]))
        print(f"restore drill: {len(lines):,} events (seed {args.seed}), backup after {cut:,}; work dir {work}")

        rebuild_s, _ = tuike("run", "--events", "shop.jsonl", "--data-dir", "reference", cwd=work)
        print(f"  reference: uninterrupted `tuike run` of every event: {rebuild_s:.1f} s")
        first_s, _ = tuike("run", "--events", "first.jsonl", "--data-dir", "live", cwd=work)
        backup_s, _ = tuike("backup", "--to", "backup", "--data-dir", "live", cwd=work)
        backed_up_at = time.monotonic()
        manifest = json.loads((work / "backup" / "manifest.json").read_text())
        money = manifest["ledger"]["money"].get("0", {"rows": 0, "net": "0.00"})
        size = sum(p.stat().st_size for p in (work / "backup").rglob("*") if p.is_file())
        print(f"  live: {cut:,} events in {first_s:.1f} s; `tuike backup` {backup_s:.1f} s, {size / 1e6:.1f} MB, "
              f"{money['rows']:,} ledger rows, net {money['net']}")
        more_s, _ = tuike("run", "--events", "shop.jsonl", "--data-dir", "live", cwd=work)
        rows_lost, net_at_loss = figures(work / "live", work)
        lost_at = time.monotonic()
        shutil.rmtree(work / "live")
        print(f"  {len(lines) - cut:,} more events ({more_s:.1f} s): the ledger had {rows_lost:,} rows, net {net_at_loss}"
              " — then the data dir is deleted")

        t0 = time.monotonic()
        restore_s, restore_out = tuike("restore", "--from", "backup", "--into", "fresh", cwd=work)
        catch_s, _ = tuike("run", "--events", "shop.jsonl", "--data-dir", "fresh", cwd=work)
        rto = time.monotonic() - t0
        rows_back, net_back = figures(work / "fresh", work)
        notes = compare(summarize_chdb(work / "reference", "uninterrupted"), summarize_chdb(work / "fresh", "restored"))
        ref_rows, ref_net = figures(work / "reference", work)

        result = {
            "events": len(lines), "backup_after": cut, "seed": args.seed,
            "backup_s": round(backup_s, 2), "backup_bytes": size,
            "rpo_backup_alone": {"events": len(lines) - cut, "ledger_rows": rows_lost - money["rows"],
                                 "net": str(net_at_loss - Decimal(money["net"])),
                                 "seconds_between_backup_and_loss": round(lost_at - backed_up_at, 2)},
            "rpo_after_catch_up": {"ledger_rows": ref_rows - rows_back, "net": str(ref_net - net_back)},
            "rto_s": round(rto, 2), "restore_s": round(restore_s, 2), "catch_up_s": round(catch_s, 2),
            "rebuild_from_nothing_s": round(rebuild_s, 2), "same_money": True, "notes": notes,
        }
        print(f"  `tuike restore` {restore_s:.1f} s, catch-up `tuike run` {catch_s:.1f} s: {rows_back:,} rows, "
              f"net {net_back}; the same money as the uninterrupted run (compare passed)")
        print()
        r = result["rpo_backup_alone"]
        print(f"RPO, the backup alone: {r['events']:,} events, {r['ledger_rows']:,} ledger rows, net {r['net']} "
              f"({r['seconds_between_backup_and_loss']:.1f} s of running between backup and loss)")
        a = result["rpo_after_catch_up"]
        print(f"RPO after catching up from the source: {a['ledger_rows']} rows, net {a['net']} "
              "(0: the events are re-derived as long as the source keeps them)")
        print(f"RTO: {rto:.1f} s from `tuike restore` to caught up (restore {restore_s:.1f} s + catch-up "
              f"{catch_s:.1f} s); a rebuild from nothing took {rebuild_s:.1f} s")
        if args.streaming:
            result["streaming"] = streaming_drill(args, work, lines, cut)
        if args.results:
            args.results.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def streaming_drill(args: argparse.Namespace, work: Path, lines: list[bytes], cut: int) -> dict:
    """Workers on Kafka and a server ledger: online backup, loss of the database and the workers'
    state, restore into a new database, catch up from Kafka (the module's docstring)."""
    import asyncio
    import uuid

    from sinks.server_sink import ServerLedger
    from tests.support.streaming import (Worker, Workers, compare, members, summarize_chdb, summarize_server,
                                         wait_until_done)
    from topologies.admin import delete_topics
    from topologies.settings import StreamSettings

    tag = uuid.uuid4().hex[:8]
    settings = StreamSettings(topic_prefix=f"drill{tag}")
    config = work / "stream.yaml"  # the reference's rules, and topics of its own
    config.write_text((work / "tuike.yaml").read_text() + f"\nkafka:\n  topic_prefix: {settings.topic_prefix}\n"
                      "  partitions: 4\n")
    base = args.clickhouse.rstrip("/").rsplit("/", 1)[0] if args.clickhouse.count("/") > 2 else args.clickhouse
    lost_db, new_db = f"{base}/drill_{tag}", f"{base}/drill_{tag}_restored"
    (work / "rest.jsonl").write_bytes(b"".join(lines[cut:]))
    stream = ("--config", str(config), "--broker", args.broker)
    web = ["--web-port", "0"] if "--web-port" in tuike("worker", "--help", cwd=work)[1] else []

    def start(ledger: str, run: str) -> Workers:
        workers = Workers(Worker(f"{run}-w{i}", work / f"{run}-w{i}", config=config, clickhouse=ledger,
                                 broker=args.broker) for i in (1, 2))
        for w in workers:
            w.args += web
            w.start()
        return workers

    def done(workers: Workers, ledger: str, label: str) -> float:
        return wait_until_done(broker=args.broker, settings=settings, generation=0, clickhouse=ledger,
                               workers=workers, timeout=1800, label=label).seconds

    workers = recovered = Workers()
    try:
        tuike("produce", "--events", "first.jsonl", *stream, cwd=work)
        workers = start(lost_db, "lost")
        done(workers, lost_db, "first part")
        backup_s, out = tuike("backup", "--to", "stream-backup", "--data-dir", "ops", "--clickhouse", lost_db,
                              *stream, cwd=work)
        print(f"  streaming: `tuike backup` with the workers running: {backup_s:.1f} s\n" + out.rstrip())
        backed_up_at = time.monotonic()
        tuike("produce", "--events", "rest.jsonl", *stream, cwd=work)
        done(workers, lost_db, "the rest")
        with ServerLedger(lost_db) as ledger:
            rows_lost, net_lost = ledger.query(FIGURES).rows[0]
            ledger.query(f"DROP DATABASE {ledger.database}")
        lost_at = time.monotonic()
        for w in workers:
            w.kill()
            shutil.rmtree(w.data_dir)
        manifest = json.loads((work / "stream-backup" / "manifest.json").read_text())
        money = manifest["ledger"]["money"].get("0", {"rows": 0, "net": "0.00"})
        print(f"  streaming: {len(lines) - cut:,} more events derived ({rows_lost:,} ledger rows, net {net_lost}); "
              "then the workers are killed, the database dropped, their data dirs deleted")

        gone = time.monotonic()  # a killed worker stays a group member until its session times out
        while any(members(args.broker, g) for g in (settings.app_id(0), settings.sink_group(0))):
            if time.monotonic() - gone > 180:
                sys.exit("the killed workers are still members of their groups after 180 s")
            time.sleep(2)
        print(f"  (waited {time.monotonic() - gone:.0f} s for the killed workers' group sessions to expire)")

        t0 = time.monotonic()
        restore_s, out = tuike("restore", "--from", "stream-backup", "--into", "ops-restored", "--clickhouse",
                               new_db, *stream, cwd=work)
        print(out.rstrip())
        recovered = start(new_db, "new")
        catch_s = done(recovered, new_db, "catch-up")
        rto = time.monotonic() - t0
        notes = compare(summarize_chdb(work / "reference", "uninterrupted, embedded"),
                        summarize_server(new_db, "streamed, restored"))
        with ServerLedger(new_db) as ledger:
            rows_back, net_back = ledger.query(FIGURES).rows[0]
        figures_ = {
            "backup_s": round(backup_s, 2), "restore_s": round(restore_s, 2), "catch_up_s": round(catch_s, 2),
            "rto_s": round(rto, 2), "same_money": True, "notes": notes,
            "rpo_backup_alone": {"events": len(lines) - cut, "ledger_rows": int(rows_lost) - money["rows"],
                                 "net": str(Decimal(net_lost) - Decimal(money["net"])),
                                 "seconds_between_backup_and_loss": round(lost_at - backed_up_at, 2)},
            "rpo_after_catch_up": {"ledger_rows": int(rows_lost) - int(rows_back),
                                   "net": str(Decimal(net_lost) - Decimal(net_back))},
        }
        r, a = figures_["rpo_backup_alone"], figures_["rpo_after_catch_up"]
        print(f"streaming RPO, the backup alone: {r['events']:,} events, {r['ledger_rows']:,} ledger rows, net {r['net']}")
        print(f"streaming RPO after catching up from Kafka: {a['ledger_rows']} rows, net {a['net']}")
        print(f"streaming RTO: {rto:.1f} s (restore {restore_s:.1f} s + workers catching up {catch_s:.1f} s, "
              "their state from the changelogs)")
        return figures_
    finally:
        for group in (workers, recovered):
            group.stop_all()
        for url in (lost_db, new_db):
            with ServerLedger(url) as ledger:
                ledger.query(f"DROP DATABASE IF EXISTS {ledger.database}")
        deleting = delete_topics(args.broker, prefix=settings.topic_prefix + ".")
        if asyncio.iscoroutine(deleting):
            asyncio.run(deleting)


if __name__ == "__main__":
    sys.exit(main())
