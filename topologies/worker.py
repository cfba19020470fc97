"""``tuike worker``: one streaming worker process (contract §5).

Creates the topics it needs (all with the same partition count), finds the current generation
(:mod:`topologies.generation`), opens the ClickHouse ledger, and runs the Faust app until
SIGTERM/SIGINT. Run several, each with its own ``--data-dir``, for more partitions; Faust
rebalances partitions between them. Every ``PROGRESS_SECONDS`` it prints what it did.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from faust.worker import Worker

from engine.config import Config
from sinks.base import Ledger

from .admin import ensure_topics
from .app import Topology
from .generation import current_generation
from .settings import StreamSettings

PROGRESS_SECONDS = 5.0


def run_worker(config: Config, settings: StreamSettings, *, broker: str, ledger: Ledger,
               data_dir: Path, loglevel: str = "warning") -> None:
    generation = current_generation(broker, settings)
    state_dir = data_dir / "stream" / settings.app_id(generation)
    topology = Topology(config, settings, broker=broker, data_dir=state_dir, generation=generation, ledger=ledger)
    n = settings.partitions
    ensure_topics(broker, [(t, n, False) for t in topology.topics()] + [(settings.control, 1, True)])
    _report_progress(topology)
    print(f"tuike worker: generation {generation}, group {settings.app_id(generation)}, broker {broker}, "
          f"ledger {ledger.identity}, state {state_dir}", file=sys.stderr, flush=True)
    Worker(topology.app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()


def _report_progress(topology: Topology) -> None:
    started = time.monotonic()
    last = [0]

    @topology.app.timer(PROGRESS_SECONDS)
    async def progress() -> None:
        records = sum(s.records for s in topology.stats.values())
        if records == last[0]:
            return
        last[0] = records
        per_stage = ", ".join(f"{name} {s.records}" for name, s in topology.stats.items())
        sink = topology.sink_stats
        print(f"tuike worker: {records} records in {time.monotonic() - started:.0f}s ({per_stage}); "
              f"{sink.rows} rows to the ledger in {sink.inserts} inserts"
              + (f", {sink.retries} retries" if sink.retries else ""), file=sys.stderr, flush=True)
