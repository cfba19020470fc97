"""``tuike serve``'s metrics and readiness: requests by route and status, their latency, ``/readyz``.

The requests are counted by an ASGI middleware (:class:`HttpMetrics`) under their route's
template (``/webhooks/shopify/{shop_id}``, never the path a client chose: the label values stay
few). ``/readyz`` asks the handoff (:func:`handoff_check`) and, when ``tuike serve`` has a ledger,
ClickHouse (:func:`ledger_check`), through the same :class:`~topologies.health.Readiness` the
workers use. With ``--processes N`` each process counts its own requests (a scrape sees the one
process that answered it; the ``process`` of ``/healthz`` tells which).
"""
from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

from gateway.handoff import MAX_BACKLOG, Handoff
from topologies.health import Check, kafka_answers

REQUESTS = Counter("tuike_http_requests", "HTTP requests answered by tuike serve, per route, method and status",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("tuike_http_request_seconds", "Time to answer an HTTP request, per route", ["route"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


class HttpMetrics:
    """ASGI middleware: every HTTP request counted with its route template, method and status."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it started a response

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)


def handoff_check(handoff: Handoff) -> Check:
    """Kafka mode: the producer is up and the cluster answers a metadata request. Embedded mode:
    the pipeline keeps up (fewer than ``MAX_BACKLOG`` acknowledged requests wait to be applied;
    above it new requests wait)."""
    async def check() -> str | None:
        if handoff.mode == "kafka":
            producer = await handoff._producer()  # type: ignore[attr-defined]  # started once, as a request would
            return await kafka_answers(producer.client)
        backlog = getattr(handoff, "backlog", 0)
        if backlog > MAX_BACKLOG:
            return f"the embedded pipeline is {backlog:,} requests behind (more than {MAX_BACKLOG:,}): new requests wait"
        return None
    return check


def ledger_check(ledger: Any) -> Check:
    """The ledger answers ``SELECT 1`` on its own thread (``ledger``: tuike.dashboard's LedgerThread)."""
    async def check() -> str | None:
        await ledger.call(ledger.ledger.query, "SELECT 1")
        return None
    return check
