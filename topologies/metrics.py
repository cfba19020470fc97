"""The workers' Prometheus metrics: one place per figure, all named ``tuike_…``.

Counted where the figure is decided, once per batch rather than per event (the hot path pays a
few dict operations per batch): events in and out, the batch's processing time, fraud holds and
journal re-applies in the agent (:mod:`topologies.app`); ledger writes, their failures and dead
letters by reason in the sink (:mod:`topologies.sink`), the one place every dead letter passes
(the stages', the gateway's and ``tuike produce``'s). Lag and partition ownership are read at
scrape time (:func:`refresh_partitions`) from what the worker already knows: the consumer's
high-water marks and tuike's offset book, no broker round trip.

They live in prometheus-client's default registry, which also carries the process's own
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, …).
"""
from __future__ import annotations

import re
import time
from typing import Any, Iterable

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, disable_created_metrics,
                               generate_latest)

from schemas.routes import reason_class

disable_created_metrics()  # no `_created` series beside each counter: half the page, and no panel uses them
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")  # a column, a byte, an index: N in the label
MAX_REASONS = 64  # distinct dead-letter reason classes kept as label values; the rest count as "other"

EVENTS_IN = Counter("tuike_events_in", "Records the stages consumed, per topic", ["topic"])
EVENTS_OUT = Counter("tuike_events_out", "Messages the stages sent (routed, ledger and fact rows, dead letters), "
                     "per topic", ["topic"])
PROCESSING = Histogram("tuike_processing_seconds", "A stage's batch: taken from Kafka to durable (journal, "
                       "state, sends acked)", ["stage"], buckets=SECONDS)
LAST_BATCH = Gauge("tuike_last_batch_timestamp_seconds", "When this worker last made a batch durable (Unix time)")
FRAUD_HOLDS = Counter("tuike_fraud_holds", "Fraud scorings that hold an order's commission (fraud_scores rows "
                      "with held=1)")
JOURNAL_REAPPLIES = Counter("tuike_journal_reapplies", "Journal entries applied again after taking a partition "
                            "over (a batch cut short by a crash or a rebalance)", ["stage"])
LEDGER_WRITE = Histogram("tuike_ledger_write_seconds", "One successful ledger insert (ClickHouse)", buckets=SECONDS)
LEDGER_ROWS = Counter("tuike_ledger_rows", "Rows written to the ledger, per kind", ["kind"])
LEDGER_FAILURES = Counter("tuike_ledger_write_failures", "Ledger inserts that failed (retried; the rows wait in "
                          "Kafka)")
DEAD_LETTERS = Counter("tuike_dead_letters", "Dead letters written to the ledger, per reason class",
                       ["reason"])
CONSUMER_LAG = Gauge("tuike_consumer_lag", "Records after the next one this worker processes, per partition it "
                     "owns (high-water mark - next offset)", ["worker", "topic", "partition"])
PARTITION_ASSIGNED = Gauge("tuike_partition_assigned", "1 per input partition this worker owns",
                           ["worker", "topic", "partition"])
WORKER_INFO = Gauge("tuike_worker_info", "1, labelled with the worker's name, group and generation",
                    ["worker", "group", "generation"])
READY = Gauge("tuike_ready", "1 when the readiness check passed at its last run, 0 when not, per check",
              ["check"])

_reasons: set[str] = set()


def count_dead_letters(reasons: Iterable[str]) -> None:
    """Dead letters by the class of their reason (``order.paid: items[N].price``), bounded."""
    counts: dict[str, int] = {}
    for reason in reasons:
        label = NUMBERS.sub("N", reason_class(reason))[:80]
        if label not in _reasons:
            if len(_reasons) >= MAX_REASONS:
                label = "other"
            else:
                _reasons.add(label)
        counts[label] = counts.get(label, 0) + 1
    for label, n in counts.items():
        DEAD_LETTERS.labels(label).inc(n)


def count_topics(counter: Counter, counts: dict[str, int]) -> None:
    for topic, n in counts.items():
        counter.labels(topic).inc(n)


def batch_done(stage: str, started: float, result: Any) -> None:
    """A stage's batch is durable: its time, what it took in and sent, the holds it made
    (``result``: a :class:`~topologies.stage.BatchResult`)."""
    PROCESSING.labels(stage).observe(time.monotonic() - started)
    LAST_BATCH.set(time.time())
    count_topics(EVENTS_IN, result.received)
    count_topics(EVENTS_OUT, result.sent)
    if result.holds:
        FRAUD_HOLDS.inc(result.holds)


def refresh_partitions(worker: str, owned: dict[Any, int | None]) -> None:
    """Ownership and lag of the partitions this worker owns now ({tp: lag or None when unknown})."""
    PARTITION_ASSIGNED.clear()
    CONSUMER_LAG.clear()
    for tp, lag in owned.items():
        labels = (worker, tp.topic, str(tp.partition))
        PARTITION_ASSIGNED.labels(*labels).set(1)
        if lag is not None:
            CONSUMER_LAG.labels(*labels).set(lag)


def exposition() -> tuple[bytes, str]:
    """The text format Prometheus scrapes, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
