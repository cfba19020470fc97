"""``tuike worker``: one streaming worker process (contract §5).

Finds the current generation (:mod:`topologies.generation`), creates the topics it needs (all
with the same partition count), and runs the Faust app until SIGTERM/SIGINT. Run several,
each with its own ``--data-dir``, for more partitions; Faust rebalances partitions between
them. Every ``PROGRESS_SECONDS`` it prints what it did. A worker of a replayed generation
also watches for the moment its generation has caught up, and then makes it the one the
analysts' views show.
"""
from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from faust.worker import Worker

from engine.config import Config
from sinks import Ledger

from topologies.admin import TopicLayoutError, ensure_topics_sync, existing_topics_sync
from topologies.app import Topology
from topologies.faust_internals import install_patches
from topologies.generation import caught_up, read_control
from topologies.health import WorkerHealth, serve
from topologies.journal import TOPIC_CONFIGS as JOURNAL_CONFIGS
from topologies.kafka_access import KafkaAccess
from topologies.settings import OLD_STAGES, StreamSettings

PROGRESS_SECONDS = 5.0
LIVE_CHECK_SECONDS = 2.0


_said = logging.getLogger("tuike.worker.progress")  # with JSON logs, the progress lines are log records


def say(text: str) -> None:
    if _said.level == logging.INFO:
        _said.info(text)
    else:
        print(f"tuike worker: {text}", file=sys.stderr, flush=True)


def run_worker(config: Config, settings: StreamSettings, *, kafka: KafkaAccess, ledger: Ledger,
               data_dir: Path, loglevel: str = "warning", web: tuple[str, int] = ("127.0.0.1", 6066),
               name: str = "", log_handler: logging.Handler | None = None, say_as_logs: bool = False) -> None:
    """``web``: where /healthz, /readyz and /metrics are served (topologies/health.py); ``name``:
    the worker's name in its metrics; ``log_handler``: where every log line goes (else Faust's);
    ``say_as_logs``: the progress lines too (JSON logs), rather than as text on stderr."""
    if say_as_logs:
        _said.setLevel(logging.INFO)
    install_patches()  # offsets are tuike's (topologies/offsets.py)
    control = asyncio.run(read_control(kafka, settings))  # first: a broker that refuses us is said here, not retried
    generation = int(control["generation"]) if control else 0
    _refuse_an_older_layout(kafka, settings, generation)
    state_dir = data_dir / "stream" / settings.app_id(generation)
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    name = name or worker_name(web[1])
    topology = Topology(config, settings, kafka=kafka, data_dir=state_dir, generation=generation, ledger=ledger,
                        name=name)
    n = settings.partitions
    # Faust creates its changelog topics itself, but a worker that starts while one is not yet in
    # the cluster's metadata was seen never to join its group: create them first, compacted.
    changelogs = [t.changelog_topic_name for t in (*topology.tables.values(), topology.promoter_facts)]
    # records as large as a journal part: one state value or routed chunk may exceed the 1 MiB default
    large = {"max.message.bytes": JOURNAL_CONFIGS["max.message.bytes"]}
    internal = set(topology.topics()) - set(settings.inputs) - {settings.deadletter}
    ensure_topics_sync(kafka, [(t, n, False, large if t in internal else None) for t in topology.topics()]
                       + [(t, n, False, JOURNAL_CONFIGS) for t in topology.journals()]
                       + [(t, n, True, large) for t in changelogs] + [(settings.control, 1, True)]
                       # Faust's own leader topic, replicated like the rest (Faust would make it with 1 replica)
                       + [(f"{settings.app_id(generation)}-__assignor-__leader", 1, False)], **settings.replication())
    _report_progress(topology)
    if control:
        _go_live_when_caught_up(topology, kafka, ledger, control)
    say(f"generation {generation}, group {settings.app_id(generation)}, broker {kafka}, "
        f"ledger {ledger.identity}, state {state_dir}")
    # a stuck worker tells where it is: SIGQUIT prints every thread's stack (the process goes on),
    # SIGUSR1 every asyncio task's (mode's Worker handles it)
    faulthandler.register(signal.SIGQUIT, all_threads=True, chain=False)
    for noisy in ("aiokafka", "faust.transport"):  # their debug calls cost ~5% even when filtered later
        logging.getLogger(noisy).setLevel(logging.WARNING)
    health = WorkerHealth(topology, ledger, name)
    try:  # on the loop the Worker runs: a port in use is said now, before any partition is taken
        runner = topology.app.loop.run_until_complete(serve(health, *web))
    except OSError as exc:
        raise WebPortInUse(f"cannot serve /metrics, /healthz and /readyz on {web[0]}:{web[1]}: {exc.strerror or exc}; "
                           "give each worker on a host its own --web-port (0: any free port)") from None
    host, port = runner.addresses[0][:2]
    say(f"worker {health.worker}: /metrics, /healthz and /readyz on http://{host}:{port}")
    # mode's Worker configures logging: instead of its own stdout handler, ``log_handler`` alone
    # (existing loggers stay enabled)
    logs = {}
    if log_handler:
        topology.app.conf.loghandlers = [log_handler]
        logs = dict(logging_config={"version": 1, "disable_existing_loggers": False,
                                    "root": {"level": loglevel.upper(), "handlers": []}})
    try:
        Worker(topology.app, loglevel=loglevel, quiet=True, redirect_stdouts=False, **logs).execute_from_commandline()
    finally:  # mode's logging setup took the handler out of logging's own shutdown: its last counts are said here
        if log_handler:
            log_handler.close()


def worker_name(web_port: int) -> str:
    """The worker's name in its metrics and logs: host and web port, unique on a host and kept over
    restarts (the process id with ``--web-port 0``)."""
    return f"{socket.gethostname()}:{web_port or os.getpid()}"


class WebPortInUse(Exception):
    """The worker's web port cannot be bound."""


def _refuse_an_older_layout(kafka: KafkaAccess, settings: StreamSettings, generation: int) -> None:
    """A generation written by the six agents before issue 18 may hold messages in their internal
    topics, and a journal entry not yet applied, which one agent never reads: money would be lost
    without a word. Such a generation is rebuilt by a replay, not taken over."""
    old = [name(generation, stage) for stage in OLD_STAGES for name in (settings.routed_topic, settings.journal_topic)]
    left = existing_topics_sync(kafka, old)
    if left:
        raise TopicLayoutError(
            f"generation {generation} was written by an older tuike (six agents; its topics {', '.join(left[:3])}"
            f"{' …' if len(left) > 3 else ''} may still hold messages this version does not read). Stop every worker, "
            f"run `tuike replay` with this version (generation {generation + 1} is rebuilt from the input topics), "
            f"start the workers again, and drop generation {generation}'s topics once it has caught up (README, Upgrading)")


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
        say(f"{records} records in {time.monotonic() - started:.0f}s ({per_stage}); "
            f"{sink.rows} rows to the ledger in {sink.inserts} inserts"
            + (f", {sink.retries} retries" if sink.retries else ""))


def _go_live_when_caught_up(topology: Topology, kafka: KafkaAccess, ledger: Ledger, control: dict) -> None:
    generation = topology.generation
    internal = [t for t in topology.topics() if t.startswith(topology.settings.app_id(generation) + ".")
                and t != topology.sink_topic]
    sink = (topology.settings.sink_group(generation), [topology.sink_topic])
    live = [False]

    @topology.app.timer(LIVE_CHECK_SECONDS)
    async def go_live() -> None:
        if live[0] or not await caught_up(kafka, topology.settings.app_id(generation), control, internal, sink):
            return
        sql = f"INSERT INTO ledger_generations SELECT {generation}, now()"
        await asyncio.get_running_loop().run_in_executor(topology.ledger_thread, ledger.query, sql)
        live[0] = True
        say(f"generation {generation} has caught up with the input of the replay: the ledger views show it now")
