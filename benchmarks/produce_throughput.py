"""The producer's rate for a few settings (the figures in ``topologies.admin.produce_records``).

    python -m benchmarks.produce_throughput [--events 200000] [--compression none lz4] [--linger 5 20] [--batch 65536]

Generates N events, produces them to fresh topics (prefix ``bench<random>``) and prints the rate
for each combination of producer settings; deletes its topics at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

from schemas.records import read_records
from topologies.admin import (DEFAULT_BROKER, LINGER_MS, MAX_BATCH_BYTES, delete_topics, ensure_topics_sync,
                              input_topic_specs, produce_records_sync)
from topologies.settings import StreamSettings
from tuike.lab.generate import generate_shop, write_events


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.produce_throughput")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--broker", default=DEFAULT_BROKER)
    ap.add_argument("--compression", nargs="*", default=["none"], help="none, or lz4 (needs cramjam installed)")
    ap.add_argument("--linger", type=int, nargs="*", default=[LINGER_MS])
    ap.add_argument("--batch", type=int, nargs="*", default=[MAX_BATCH_BYTES])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        n = write_events(generate_shop(1, events=args.events), path)
        print(f"{n:,} events, {path.stat().st_size / n:.0f} bytes each on average")
        records = list(read_records(path))
        for comp in args.compression:
            for linger in args.linger:
                for batch in args.batch:
                    settings = StreamSettings(topic_prefix=f"bench{uuid.uuid4().hex[:8]}")
                    specs = input_topic_specs(settings)
                    ensure_topics_sync(args.broker, specs)
                    stats = produce_records_sync(args.broker, settings, records, compression=None if comp == "none" else comp,
                                                 linger_ms=linger, max_batch_size=batch)
                    print(f"compression={comp:5} linger={linger:3} ms batch={batch // 1024:5} KiB: {stats.records:,} in "
                          f"{stats.seconds:.2f} s = {stats.rate:,.0f} events/s")
                    asyncio.run(delete_topics(args.broker, prefix=settings.topic_prefix + "."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
