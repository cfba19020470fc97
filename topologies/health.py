"""Liveness, readiness and the metrics page of a worker: a small aiohttp server on its event loop.

- ``GET /healthz``: liveness. Answered by the worker's own event loop, so a loop that is blocked
  (or a process that is gone) fails the probe; nothing else is checked.
- ``GET /readyz``: readiness. Kafka answers a metadata request, ClickHouse answers ``SELECT 1``
  (on the ledger's own thread: a clickhouse-driver client is not thread-safe), and the pipeline
  runs: the worker owns input partitions, and none of them has had records waiting without its
  next offset moving for ``STALL_SECONDS``. 200 ``{"ready": true}``, or 503 with the checks that
  failed and why.
- ``GET /metrics``: Prometheus text format (:mod:`topologies.metrics`); ownership, lag and the
  readiness gauges are brought up to date first.

:class:`Readiness` is also what ``tuike serve`` answers ``/readyz`` with (gateway/health.py).
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from topologies import metrics

if TYPE_CHECKING:  # tuike serve uses Readiness alone: aiohttp and Faust are imported by the workers' part only
    from aiohttp import web
    from faust.types import TP

CHECK_SECONDS = 3.0  # a check that takes longer fails
CACHE_SECONDS = 1.0  # probes and scrapes within this share one run of the checks
STALL_SECONDS = 60.0

Check = Callable[[], Awaitable[str | None]]  # None when fine, else what is wrong (a sentence)


class Readiness:
    """Named checks run together, each bounded by ``CHECK_SECONDS``; the outcome is kept
    ``CACHE_SECONDS`` so a busy probe cannot multiply the round trips."""

    def __init__(self, checks: dict[str, Check] | None = None):
        self.checks: dict[str, Check] = dict(checks or {})
        self._last: tuple[float, dict[str, str]] | None = None
        self._running: asyncio.Future | None = None

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def problems(self) -> dict[str, str]:
        """{check: what is wrong} of the checks that failed; empty when ready."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < CACHE_SECONDS:
            return self._last[1]
        if self._running is None:  # one run at a time, shared by whoever asks meanwhile
            self._running = asyncio.ensure_future(self._run())
        return await asyncio.shield(self._running)

    async def _run(self) -> dict[str, str]:
        names = list(self.checks)
        try:
            outcomes = await asyncio.gather(*(self._one(self.checks[n]) for n in names))
        finally:
            self._running = None
        found = {n: problem for n, problem in zip(names, outcomes) if problem}
        for n in names:
            metrics.READY.labels(n).set(0 if n in found else 1)
        self._last = (time.monotonic(), found)
        return found

    @staticmethod
    async def _one(check: Check) -> str | None:
        try:
            return await asyncio.wait_for(check(), CHECK_SECONDS)
        except asyncio.TimeoutError:
            return f"no answer within {CHECK_SECONDS:.0f} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    async def answer(self) -> tuple[int, dict]:
        """The HTTP status and JSON body of ``/readyz``."""
        found = await self.problems()
        if found:
            return 503, {"ready": False, "not_ready": found}
        return 200, {"ready": True, "checks": sorted(self.checks)}


async def kafka_answers(client: Any) -> str | None:
    """An aiokafka client gets the cluster's metadata (raises with the reason when it cannot)."""
    await client.fetch_all_metadata()
    return None


def ledger_answers(ledger: Any, thread: Any) -> Check:
    async def check() -> str | None:
        await asyncio.get_running_loop().run_in_executor(thread, ledger.query, "SELECT 1")
        return None
    return check


class WorkerHealth:
    """What a worker's probes and scrapes read: its Faust app, its offset book and its ledger."""

    def __init__(self, topology: Any, ledger: Any, worker: str):
        self.topology = topology
        self.worker = worker
        self.inputs = {t for stage in topology.stages.values() for t in stage.topics}
        self.moved: dict[TP, tuple[int, float]] = {}  # next offset, when it was first seen there
        self.readiness = Readiness({"kafka": self._kafka, "clickhouse": ledger_answers(ledger, topology.ledger_thread),
                                    "pipeline": self._pipeline})
        metrics.WORKER_INFO.labels(worker, topology.settings.app_id(topology.generation),
                                   str(topology.generation)).set(1)

    async def _kafka(self) -> str | None:
        from topologies.faust_internals import kafka_producer

        try:
            client = kafka_producer(self.topology.app).client
        except Exception:
            return "the worker's Kafka producer has not started (is the broker reachable?)"
        return await kafka_answers(client)

    def owned(self) -> dict[TP, int | None]:
        """The input partitions this worker owns now, with their lag where known."""
        consumer = self.topology.app.consumer
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic in self.inputs]
        except Exception:  # the consumer has not started
            return {}
        expected = self.topology.offsets.expected
        out: dict[TP, int | None] = {}
        for tp in assigned:
            high, at = consumer.highwater(tp), expected.get(tp)
            out[tp] = max(0, high - at) if high is not None and at is not None else None
        return out

    async def _pipeline(self) -> str | None:
        owned = self.owned()
        if not owned:
            return "no input partitions assigned (the group is rebalancing, or there are more workers than partitions)"
        now, expected = time.monotonic(), self.topology.offsets.expected
        stalled = []
        for tp, lag in owned.items():
            at = expected.get(tp)
            if at is None:
                continue
            offset, since = self.moved.get(tp, (at, now))
            if offset != at:
                since = now
            self.moved[tp] = (at, since)
            if lag and now - since >= STALL_SECONDS:
                stalled.append(f"{tp.topic}[{tp.partition}] ({lag} waiting)")
        if stalled:
            return (f"stalled: no progress for {STALL_SECONDS:.0f} s with records waiting in "
                    + ", ".join(sorted(stalled)[:10]))
        return None


def web_app(readiness: Readiness, before_scrape: Callable[[], None] = lambda: None) -> web.Application:
    """The three routes; ``before_scrape`` brings gauges read at scrape time up to date."""
    from aiohttp import web

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        status, body = await readiness.answer()
        return web.json_response(body, status=status)

    async def scrape(_request: web.Request) -> web.Response:
        await readiness.problems()
        before_scrape()
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    return app


async def serve(health: WorkerHealth, host: str, port: int) -> web.AppRunner:
    """Start the worker's web server on the running loop; the runner stops it."""
    from aiohttp import web

    runner = web.AppRunner(web_app(health.readiness, lambda: metrics.refresh_partitions(health.worker, health.owned())),
                           access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
