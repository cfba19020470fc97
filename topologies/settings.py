"""Where the streaming pipeline lives on Kafka: topic names, partitions and batching.

Read from the ``kafka:`` section of ``tuike.yaml`` (contract §1.3: ``topic_prefix`` renames
every topic and the consumer group, so environments can share a cluster). Pure: no I/O.

| key | default | meaning |
|---|---|---|
| ``topic_prefix`` | ``tuike`` | prefix of every topic, internal topic and consumer group |
| ``partitions`` | 4 | partitions of every topic tuike creates (all must be equal: co-partitioning) |
| ``batch`` | 2000 | records the agent takes at once (``stream.take_events``) |
| ``batch_ms`` | 20 | how long the agent waits to fill a batch (each hop to another partition adds up to this) |
| ``sink_batch`` | 20000 | ledger rows per ClickHouse insert at most |
| ``sink_ms`` | 100 | how long the sink waits to fill an insert (bounds ledger latency) |
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.config import ConfigError, Problem
from engine.dataflow import CUSTOMERS, ORDERS, PROMOTERS, PROPAGATION, RISK, TALLIES, WATCHERS
from schemas.routes import INPUTS

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
KEYS = ("topic_prefix", "partitions", "batch", "batch_ms", "sink_batch", "sink_ms")
# The stateful agents of topologies/app.py: stage -> (its processors, the input topics it consumes).
# One stage holds every processor (issue 18): a message for a key in the partition being processed
# is stepped in the same batch, and only a message for another partition crosses Kafka. Six stages
# (one per key space) made every hop a Kafka round trip and a batch cycle of its own, and their six
# buffers behind Faust's one fetcher starved each other (docs/throughput.md).
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "engine": ((PROMOTERS, WATCHERS, CUSTOMERS, ORDERS, TALLIES, RISK, PROPAGATION),
               ("promoters", "binds", "clicks", "orders")),
}
# The six stages of the layout before issue 18: a generation they wrote may still hold messages in
# their internal topics, which one agent never reads (topologies/worker.py refuses to start there).
OLD_STAGES = ("promoters", "customers", "orders", "tallies", "risk", "propagation")
STAGE_OF = {processor: stage for stage, (processors, _inputs) in STAGES.items() for processor in processors}


@dataclass(frozen=True)
class StreamSettings:
    topic_prefix: str = "tuike"
    partitions: int = 4
    batch: int = 2000
    batch_ms: int = 20
    sink_batch: int = 20_000
    sink_ms: int = 100

    def topic(self, name: str) -> str:
        """``tuike.orders``, ``tuike.deadletter``, and internal ``tuike.g0.to-engine``…"""
        return f"{self.topic_prefix}.{name}"

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.topic(n) for n in INPUTS)

    @property
    def deadletter(self) -> str:
        return self.topic("deadletter")

    @property
    def control(self) -> str:
        """One compacted partition: the current generation (see topologies/generation.py)."""
        return self.topic("control")

    def app_id(self, generation: int) -> str:
        """The Faust app id of one generation: its consumer group and the prefix of its
        changelog topics (``tuike.g0-orders-changelog``)."""
        return self.topic(f"g{generation}")

    def sink_group(self, generation: int) -> str:
        """The ClickHouse sink's consumer group (topologies/sink.py): ``tuike.g0.sink``."""
        return f"{self.app_id(generation)}.sink"

    def routed_topic(self, generation: int, stage: str) -> str:
        """Messages for one stage's keys: ``tuike.g0.to-engine``."""
        return self.internal(generation, f"to-{stage}")

    def ledger_topic(self, generation: int) -> str:
        """Ledger and fact rows on their way to the ClickHouse sink: ``tuike.g0.ledger``."""
        return self.internal(generation, "ledger")

    def journal_topic(self, generation: int, stage: str) -> str:
        """One stage's batch journal (topologies/journal.py): ``tuike.g0.journal-engine``."""
        return self.internal(generation, f"journal-{stage}")

    def internal(self, generation: int, name: str) -> str:
        return f"{self.app_id(generation)}.{name}"


def stream_settings(raw: dict | None) -> StreamSettings:
    """The ``kafka:`` section, validated; :class:`ConfigError` names every bad key."""
    section = (raw or {}).get("kafka") or {}
    problems: list[Problem] = []
    if not isinstance(section, dict):
        raise ConfigError([Problem("kafka", "expected a mapping such as {topic_prefix: tuike, partitions: 4}")])
    kw: dict = {}
    for key, value in section.items():
        path = f"kafka.{key}"
        if key not in KEYS:
            problems.append(Problem(path, f"unknown key; known keys: {', '.join(KEYS)}"))
        elif key == "topic_prefix":
            if not isinstance(value, str) or not _PREFIX.match(value):
                problems.append(Problem(path, f"{value!r} is not a topic prefix: letters, digits, _ and -, such as staging"))
            else:
                kw[key] = value
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(Problem(path, f"expected a whole number of at least 1, got {value!r}"))
        else:
            kw[key] = value
    if problems:
        raise ConfigError(problems)
    return StreamSettings(**kw)
