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
| ``replication_factor`` | min(3, brokers) | replicas of every topic tuike creates (Faust's own topics: 1 unless set) |
| ``min_insync_replicas`` | the broker's | ``min.insync.replicas`` of every topic tuike creates: replicas an acks=all write waits for |
| ``security_protocol`` | ``PLAINTEXT`` | ``PLAINTEXT``, ``SSL`` or ``SASL_SSL``: how every client connects to ``--broker`` |
| ``ssl_cafile`` | the system's CAs | the CA certificate (PEM) that signed the broker's (SSL, SASL_SSL) |
| ``sasl_mechanism`` | — | ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (SASL_SSL) |
| ``sasl_username`` | — | the SCRAM user (SASL_SSL) |
| ``sasl_password`` | — | ``env:NAME`` or ``file:PATH``, never the password itself (SASL_SSL) |

The security keys are checked here and resolved (password read, CA file found) in
``topologies/kafka_access.py``, where the clients are made.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.config import ConfigError, Problem
from engine.dataflow import CUSTOMERS, ORDERS, PROMOTERS, PROPAGATION, RISK, TALLIES, WATCHERS
from schemas.routes import INPUTS

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
SECURITY_KEYS = ("security_protocol", "ssl_cafile", "sasl_mechanism", "sasl_username", "sasl_password")
REPLICATION_KEYS = ("replication_factor", "min_insync_replicas")
KEYS = ("topic_prefix", "partitions", "batch", "batch_ms", "sink_batch", "sink_ms", *REPLICATION_KEYS, *SECURITY_KEYS)
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
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
class KafkaSecurity:
    """How the clients connect, as configured; ``sasl_password`` is still ``env:NAME`` or ``file:PATH``."""
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None


@dataclass(frozen=True)
class StreamSettings:
    topic_prefix: str = "tuike"
    partitions: int = 4
    batch: int = 2000
    batch_ms: int = 20
    sink_batch: int = 20_000
    sink_ms: int = 100
    # None: min(3, brokers in the cluster) for the topics tuike creates (topologies/admin.py), so
    # one broker and three both work unset; on a cluster set it (Faust's own topics need a number)
    replication_factor: int | None = None
    min_insync_replicas: int | None = None  # None: the broker's min.insync.replicas (1 by default)
    security: KafkaSecurity = KafkaSecurity()

    def replication(self) -> dict[str, int | None]:
        """How every topic tuike creates is replicated: ``ensure_topics(kafka, specs, **settings.replication())``."""
        return {"replication_factor": self.replication_factor, "min_insync_replicas": self.min_insync_replicas}

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
        elif key in SECURITY_KEYS:
            continue
        elif key == "topic_prefix":
            if not isinstance(value, str) or not _PREFIX.match(value):
                problems.append(Problem(path, f"{value!r} is not a topic prefix: letters, digits, _ and -, such as staging"))
            else:
                kw[key] = value
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(Problem(path, f"expected a whole number of at least 1, got {value!r}"))
        else:
            kw[key] = value
    security = _security(section, problems)
    rf, isr = kw.get("replication_factor"), kw.get("min_insync_replicas")
    if rf is not None and isr is not None and isr > rf:
        problems.append(Problem("kafka.min_insync_replicas", f"{isr} is more than kafka.replication_factor ({rf}): "
                                                             "no acks=all write could ever succeed; set it to at "
                                                             f"most {rf} (2 with 3 replicas keeps writing with one "
                                                             "broker down)"))
    if problems:
        raise ConfigError(problems)
    return StreamSettings(**kw, security=security)


def _security(section: dict, problems: list[Problem]) -> KafkaSecurity:
    """The security keys, checked for shape and for fitting together (no file or environment read)."""
    kw = {k: section[k] for k in SECURITY_KEYS if k in section}
    bad = [key for key, value in kw.items() if not isinstance(value, str) or not value]
    for key in bad:
        problems.append(Problem(f"kafka.{key}", f"expected a non-empty string, got {kw[key]!r}"))
    if bad:
        return KafkaSecurity()
    protocol = kw.get("security_protocol", "PLAINTEXT")
    if protocol not in PROTOCOLS:
        hint = " (SASL over plain TCP would send the password readable on the network)" if protocol == "SASL_PLAINTEXT" else ""
        problems.append(Problem("kafka.security_protocol", f"{protocol!r} is not one of {', '.join(PROTOCOLS)}{hint}"))
    sasl = [k for k in SECURITY_KEYS if k.startswith("sasl_")]
    if protocol == "SASL_SSL":
        for key in sasl:
            if key not in kw:
                problems.append(Problem(f"kafka.{key}", "required with security_protocol: SASL_SSL"))
    else:
        for key in [k for k in sasl if k in kw] + (["ssl_cafile"] if "ssl_cafile" in kw and protocol == "PLAINTEXT" else []):
            problems.append(Problem(f"kafka.{key}", f"has no effect with security_protocol: {protocol}; set "
                                                    f"security_protocol: {'SASL_SSL' if key.startswith('sasl_') else 'SSL'}"))
    if "sasl_mechanism" in kw and kw["sasl_mechanism"] not in MECHANISMS:
        problems.append(Problem("kafka.sasl_mechanism", f"{kw['sasl_mechanism']!r} is not one of {', '.join(MECHANISMS)}"))
    password = kw.get("sasl_password", "")
    if password and not (password.startswith(("env:", "file:")) and password.partition(":")[2]):
        problems.append(Problem("kafka.sasl_password", "write env:NAME (an environment variable) or file:PATH (a file "
                                                       "that holds it), not the password itself"))
    return KafkaSecurity(**kw)
