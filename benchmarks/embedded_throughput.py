"""Throughput of the embedded pipeline against the cost of just reading the file.

    python -m benchmarks.embedded_throughput [--events 1000000] [--seed 1]     (make bench)

1. generates a shop of ``--events`` events (cached in ``bench-data/``, reused next time);
2. phase *parse*: ``read_records`` + ``parse_record`` (decode and validate) of the whole file;
3. phase *run*: ``run_events`` of the whole file into a fresh data dir with the chDB ledger and
   the example configuration of contract §2 (fraud scoring on, its default);
4. phase *run* again with fraud scoring off (``fraud.enabled: false``): the cost of scoring.

Each phase runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. The report
gives events/s of both, the ratio run/parse (how much of the read-and-validate speed the full
pipeline keeps), and the peak RSS of each.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("TUIKE_BENCH_DIR", ROOT / "bench-data"))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def events_file(events: int, seed: int) -> Path:
    """The cached bench shop of ``events`` events."""
    return cached_shop(f"shop-seed{seed}-{events}", seed, events=events)


def cached_shop(name: str, seed: int, **counts: int) -> Path:
    """A generated shop (``tuike.lab.generate.generate_shop(seed, **counts)``) cached in
    ``bench-data/`` as ``<name>-<generator version>.jsonl``, generated if missing (written under a
    temporary name, then renamed)."""
    from tuike.lab.generate import generate_shop, write_events
    from tuike.progress import Progress

    import tuike.lab.generate

    # the cache key includes the generator's source: a changed generator makes a new file
    version = hashlib.sha256(Path(tuike.lab.generate.__file__).read_bytes()).hexdigest()[:8]
    path = BENCH_DIR / f"{name}-{version}.jsonl"
    if path.exists():
        print(f"events: {path} (cached)", flush=True)
        return path
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    for stale in BENCH_DIR.glob(f"{name}-*.jsonl"):
        stale.unlink()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.jsonl")
    t0 = time.perf_counter()
    n = write_events(generate_shop(seed, **counts), tmp, progress=Progress("generated", "events"))
    secs = time.perf_counter() - t0
    tmp.rename(path)
    print(f"events: generated {n:,} events in {secs:.1f} s ({n / secs:,.0f}/s) -> {path}", flush=True)
    return path


def phase_parse(path: Path) -> dict:
    from schemas.records import parse_record, read_records
    from tuike.progress import Progress

    progress = Progress("parsed", "events")
    n = rejected = 0
    t0 = time.perf_counter()
    for rec in read_records(path):
        n += 1
        if isinstance(parse_record(rec), str):
            rejected += 1
        if not n & 0x3FFF:
            progress(n, rejected)
    secs = time.perf_counter() - t0
    progress.done(n, rejected)
    return {"events": n, "rejected": rejected, "seconds": secs, "rate": n / secs, "rss_mb": _rss_mb()}


def phase_run(path: Path, data_dir: Path, scoring: bool = True, config_file: Path | None = None) -> dict:
    from sinks import open_ledger
    from tuike.cli.common import _long_run_collector
    from tuike.configfile import load_config
    from tuike.demo import DEMO_CONFIG_YAML
    from schemas.records import read_records
    from topologies.embedded import run_events
    from tuike.progress import Progress

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    cfg = data_dir / "tuike.yaml"
    cfg.write_text(config_file.read_text(encoding="utf-8") if config_file else DEMO_CONFIG_YAML, encoding="utf-8")
    config = load_config(cfg)
    if not scoring:
        config = replace(config, fraud=replace(config.fraud, enabled=False))
    ledger = open_ledger(None, data_dir)
    _long_run_collector()  # as tuike run does
    try:
        progress = Progress("processed", "events")
        t0 = time.perf_counter()
        stats = run_events(read_records(path), config=config, data_dir=data_dir, ledger=ledger, progress=progress)
        secs = time.perf_counter() - t0
        progress.done(stats.read, stats.rejected)
        rows = ledger.query("SELECT count() FROM commission_ledger").rows[0][0]
    finally:
        ledger.close()
    return {"events": stats.read, "accepted": stats.accepted, "rejected": stats.rejected,
            "duplicates": stats.duplicates, "ledger_rows": stats.ledger_rows, "ledger_count": int(rows),
            "parked": stats.parked, "seconds": secs, "rate": stats.read / secs, "rss_mb": _rss_mb()}


def _child(phase: str, path: Path, data_dir: Path | None = None, scoring: bool = True,
           config_file: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.embedded_throughput", "--phase", phase, "--file", str(path)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    if config_file is not None:
        cmd += ["--config-file", str(config_file)]
    if not scoring:
        cmd += ["--no-scoring"]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # stderr: progress, passed through
    if proc.returncode != 0:
        raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.embedded_throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the generated file (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--phase", choices=("parse", "run"), help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--no-scoring", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.phase == "parse":
        print(json.dumps(phase_parse(args.file)))
        return 0
    if args.phase == "run":
        print(json.dumps(phase_run(args.file, args.data_dir, scoring=not args.no_scoring, config_file=args.config_file)))
        return 0

    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}", flush=True)
    path = events_file(args.events, args.seed)
    size_mb = path.stat().st_size / 2**20
    parse = _child("parse", path)
    print(f"parse: {parse['events']:,} events in {parse['seconds']:.1f} s = {parse['rate']:,.0f} events/s, "
          f"peak RSS {parse['rss_mb']:,.0f} MB", flush=True)
    data_dir = BENCH_DIR / "run"
    run = _child("run", path, data_dir)
    print(f"run:   {run['events']:,} events in {run['seconds']:.1f} s = {run['rate']:,.0f} events/s, "
          f"peak RSS {run['rss_mb']:,.0f} MB; {run['ledger_rows']:,} ledger rows written "
          f"({run['ledger_count']:,} in commission_ledger), {run['rejected']:,} rejected, "
          f"{run['duplicates']:,} duplicates, {run['parked']:,} parked", flush=True)
    off = _child("run", path, data_dir, scoring=False)
    print(f"run without fraud scoring: {off['rate']:,.0f} events/s, {off['ledger_rows']:,} ledger rows", flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    print()
    print(f"file              {path.name} ({size_mb:,.0f} MB, {parse['events']:,} events)")
    print(f"parse-only        {parse['rate']:>12,.0f} events/s   peak RSS {parse['rss_mb']:>7,.0f} MB")
    print(f"run_events+chDB   {run['rate']:>12,.0f} events/s   peak RSS {run['rss_mb']:>7,.0f} MB")
    print(f"ratio run/parse   {run['rate'] / parse['rate']:>12.3f}")
    print(f"without scoring   {off['rate']:>12,.0f} events/s   peak RSS {off['rss_mb']:>7,.0f} MB")
    print(f"scoring on/off    {run['rate'] / off['rate']:>12.3f}   (fraud scoring's cost: the share of the rate it keeps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
