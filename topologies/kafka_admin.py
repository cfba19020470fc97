"""Kafka administration without an event loop, on kafka-python: topics, consumer lag, and which
group member owns each partition (``tuike lag``).

- :func:`ensure_topics` creates missing topics and checks the partition count of existing ones
  (every tuike topic has ``kafka.partitions`` partitions: co-partitioning, see
  ``partitioning.py``); a topic with another count is a :class:`TopicLayoutError`.
- :func:`consumer_lag` and :func:`pipeline_lag` read a group's committed offsets, the log start
  and end of each partition, and the group's members with their assignments, all through one
  admin client; each :class:`LagRow` names the :class:`Member` that owns its partition.

Why kafka-python here and aiokafka for the producer, the workers and the control topic (issue 20,
item 8): these are request/response calls made by a command, and kafka-python's admin client
answers them from a plain function (its I/O runs on a thread of its own). With aiokafka every
command wrapped a coroutine in ``asyncio.run``, lag took an admin client *and* a consumer per
group, and a member's assignment came back as undecoded bytes. Measured on the local broker (the
40 partitions of ``tuike lag``'s two groups, 8 runs alternating, same rows): its calls took a median
552 ms with aiokafka and 90 ms here over PLAINTEXT, 917 ms and 237 ms over SASL_SSL. Importing
kafka-python costs about 0.1 s more than aiokafka (it loads its protocol schemas), which a
command pays once.

kafka-python reports every failed connection (nothing listening, a refused password, an untrusted
certificate, the wrong listener) as the same ``KafkaTimeoutError('Unable to bootstrap')``, and
only after its whole bootstrap timeout (measured: 10.0 s for each of those cases with a 10 s
timeout; its default is 30 s). So :func:`connected` first checks that something listens (an
absent broker is said at once), gives the bootstrap 3 s, and after a failed one asks
:func:`topologies.kafka_access.refusal` why (the one place an event loop runs, and only then)
before trying again for 30 s.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, NamedTuple

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import TopicPartition

from topologies.kafka_access import WORKER_CLIENT_PREFIX, AccessRefused, BrokerUnreachable, KafkaAccess, refusal
from topologies.settings import STAGES, StreamSettings

Kafka = KafkaAccess | str  # where Kafka is: an access, or a bare HOST:PORT (PLAINTEXT)
FIRST_BOOTSTRAP_SECONDS = 3.0  # a healthy bootstrap took 0.05 s (PLAINTEXT) to 1 s (SASL_SSL) here
BOOTSTRAP_SECONDS = 30.0  # after refusal() found nothing wrong: a slow broker (kafka-python's default)
CONNECT_SECONDS = 5.0
TOPIC_EXISTS = 36  # TOPIC_ALREADY_EXISTS: another process created it first
# kafka-python logs every failed connection attempt at ERROR (a refused password: three lines per
# attempt, printed before tuike's one-line message by any command that configured logging, such as
# tuike serve); the commands here raise what failed, with the cause, so its log adds nothing.
logging.getLogger("kafka").setLevel(logging.CRITICAL)


class TopicLayoutError(Exception):
    """An existing topic has another partition count (or cleanup policy) than tuike expects."""


class TopicSpec(NamedTuple):
    name: str
    partitions: int
    compacted: bool = False
    configs: dict[str, str] | None = None  # more topic configs, for a topic created here


class Member(NamedTuple):
    """A consumer in a group, and the partitions assigned to it."""

    member_id: str
    client_id: str
    host: str
    partitions: frozenset[tuple[str, int]]

    @property
    def name(self) -> str:
        """The worker's name when its client id carries one; else the client id, the host and the
        start of the member id's UUID (every Faust worker's client id is faust-VERSION)."""
        if self.client_id.startswith(WORKER_CLIENT_PREFIX):
            return self.client_id[len(WORKER_CLIENT_PREFIX):]
        return f"{self.client_id}@{self.host}#{self.member_id[len(self.client_id) + 1:][:8]}"


class LagRow(NamedTuple):
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing there
    end: int
    lag: int  # end - committed, or end - beginning when nothing is committed
    owner: Member | None = None  # the member the partition is assigned to; None while unassigned


# --- the client ------------------------------------------------------------------------------


@contextmanager
def connected(kafka: Kafka) -> Iterator[KafkaAdminClient]:
    """An admin client on ``kafka``, closed after. Raises :class:`BrokerUnreachable` or
    :class:`AccessRefused` saying what to do; a Kafka error of a request is re-raised as
    aiokafka's :class:`~aiokafka.errors.KafkaError`, which the commands report
    (``tuike/cli/common.py``)."""
    kafka = KafkaAccess.of(kafka)
    if not _listening(kafka):
        raise BrokerUnreachable(kafka)
    try:
        admin = _bootstrapped(kafka, FIRST_BOOTSTRAP_SECONDS)
    except KafkaError:
        refused = asyncio.run(refusal(kafka))
        if refused:
            raise AccessRefused(kafka, refused) from None
        try:  # the broker takes the connection: slow, not refusing
            admin = _bootstrapped(kafka, BOOTSTRAP_SECONDS)
        except KafkaError as exc:
            raise BrokerUnreachable(kafka, f"{type(exc).__name__}: {exc}") from None
    try:
        yield admin
    except KafkaError as exc:
        from aiokafka.errors import KafkaError as CommandKafkaError

        raise CommandKafkaError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()


def _bootstrapped(kafka: KafkaAccess, seconds: float) -> KafkaAdminClient:
    return KafkaAdminClient(**kafka.client(request_timeout_ms=30_000, bootstrap_timeout_ms=int(seconds * 1000)))


def _listening(kafka: KafkaAccess) -> bool:
    """Whether any bootstrap server accepts a TCP connection."""
    for server in kafka.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
            return True
        except OSError:
            continue
    return False


# --- topics ----------------------------------------------------------------------------------


def partitions(admin: KafkaAdminClient, names: Iterable[str]) -> dict[str, list[int]]:
    """The partitions of each of ``names`` that exists. (The admin client's metadata requests
    never create a topic, whatever the broker's auto.create.topics.enable.)"""
    names = list(names)
    if not names:
        return {}
    return {t["name"]: sorted(p["partition_index"] for p in t["partitions"])
            for t in admin.describe_topics(names) if t["error_code"] == 0 and t["partitions"]}


def _layout_message(name: str, found: int, expected: int) -> str:
    return (f"topic {name} has {found} partition{'s' if found != 1 else ''}, tuike expects {expected}: every tuike "
            f"topic must have kafka.partitions partitions so that a key lives in the same partition of each. "
            f"Set kafka.partitions: {found} in the configuration, or use another kafka.topic_prefix, or delete "
            f"{name} (its messages are lost) and run the command again to create it with {expected}")


def _topic_configs(spec: TopicSpec, min_insync_replicas: int | None) -> dict[str, str]:
    return {**({"cleanup.policy": "compact"} if spec.compacted else {}),
            **({"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {}),
            **(spec.configs or {})}


def ensure_topics(kafka: Kafka, specs: Iterable[TopicSpec | tuple], replication_factor: int | None = None,
                  *, min_insync_replicas: int | None = None, timeout: float = 30.0) -> list[str]:
    """Create the missing topics of ``specs`` ((name, partitions, compacted, configs) each) and
    check the existing ones; return the names created here.

    Safe when several processes race: a topic another one created first is fine (its partition
    count is still checked). ``replication_factor`` defaults to min(3, number of brokers); a
    topic created here gets ``min.insync.replicas`` when ``min_insync_replicas`` is given. Returns
    once every partition of the topics created has a leader (a producer started before that was
    seen to retry on NotLeaderForPartition). Raises :class:`TopicLayoutError` naming the topic, the
    counts found and expected, and what to do; :class:`BrokerUnreachable`."""
    specs = [TopicSpec(*s) for s in specs]
    names = [s.name for s in specs]
    with connected(kafka) as admin:
        if replication_factor is None:
            replication_factor = min(3, len(admin.describe_cluster()["brokers"]) or 1)
        found = partitions(admin, names)
        missing = [s for s in specs if s.name not in found]
        created: list[str] = []
        if missing:
            response = admin.create_topics({s.name: {"num_partitions": s.partitions, "replication_factor": replication_factor,
                                                     "configs": _topic_configs(s, min_insync_replicas)} for s in missing},
                                           raise_errors=False)
            for topic in response["topics"]:
                code = topic["error_code"]
                if code == 0:
                    created.append(topic["name"])
                elif code != TOPIC_EXISTS:
                    raise TopicLayoutError(f"cannot create topic {topic['name']}: "
                                           f"{topic.get('error_message') or f'error code {code}'}")
            try:
                admin.wait_for_topics([s.name for s in missing], timeout_ms=int(timeout * 1000))
            except KafkaTimeoutError as exc:
                raise TopicLayoutError(f"topics were created but not ready within {timeout:.0f} s ({exc}): check "
                                       "that every broker is up, and run the command again") from None
            found = _all_described(admin, names, timeout)
        for s in specs:
            if len(found[s.name]) != s.partitions:
                raise TopicLayoutError(_layout_message(s.name, len(found[s.name]), s.partitions))
        bad = _not_compacted(admin, [s.name for s in specs if s.compacted and s.name not in created])
    if bad:
        name, policy = next(iter(bad.items()))
        raise TopicLayoutError(f"topic {name} has cleanup.policy={policy}, tuike expects compact (it keeps "
                               f"only the latest value per key, forever): run kafka-configs.sh --alter "
                               f"--entity-type topics --entity-name {name} --add-config cleanup.policy=compact")
    return created


def _all_described(admin: KafkaAdminClient, names: list[str], timeout: float) -> dict[str, list[int]]:
    """The partitions of every topic of ``names``, asked again until each is described: on a cluster
    the broker asked may not have the metadata of a topic another one has just created (seen on
    3 brokers as a topic missing right after wait_for_topics)."""
    deadline = time.monotonic() + timeout
    while True:
        found = partitions(admin, names)
        absent = [n for n in names if n not in found]
        if not absent:
            return found
        if time.monotonic() > deadline:
            raise TopicLayoutError(f"topics {', '.join(absent)} were created but not described within {timeout:.0f} s: "
                                   "check that every broker is up, and run the command again")
        time.sleep(0.2)


def _not_compacted(admin: KafkaAdminClient, names: list[str]) -> dict[str, str]:
    """cleanup.policy of the given topics that are not compacted."""
    if not names:
        return {}
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n, {"cleanup.policy": None})
                                        for n in names], config_filter="all")
    return {name: entries["cleanup.policy"]["value"] for name, entries in described.get("topic", {}).items()
            if "compact" not in str(entries.get("cleanup.policy", {}).get("value"))}


def existing_topics(kafka: Kafka, names: list[str]) -> list[str]:
    """Those of ``names`` that exist in the cluster (an empty list: just check the connection)."""
    with connected(kafka) as admin:
        found = set(admin.list_topics())
    return [n for n in names if n in found]


def delete_topics(kafka: Kafka, names: Iterable[str] = (), *, prefix: str | None = None) -> list[str]:
    """Delete the named topics and, with ``prefix``, every topic whose name starts with it (for
    tests and measurements; their messages are lost). Returns the names deleted."""
    with connected(kafka) as admin:
        existing = set(admin.list_topics())
        doomed = sorted((existing & set(names)) | {t for t in existing if prefix and t.startswith(prefix)})
        if doomed:
            admin.delete_topics(doomed)
    return doomed


# --- groups ----------------------------------------------------------------------------------


def _members(admin: KafkaAdminClient, group: str) -> list[Member]:
    return _described(admin, group)[1]


def _described(admin: KafkaAdminClient, group: str) -> tuple[str, list[Member]]:
    described = admin.describe_groups([group])[group]
    out = []
    for m in described["members"]:
        assignment = m["member_assignment"]
        owned = assignment.get("assigned_partitions", []) if isinstance(assignment, dict) else []
        out.append(Member(m["member_id"], m["client_id"], m["client_host"].lstrip("/"),
                          frozenset((a["topic"], p) for a in owned for p in a["partitions"])))
    return described["group_state"], sorted(out)


def group_state(kafka: Kafka, group: str) -> tuple[str, list[Member]]:
    """The group's state (Stable, PreparingRebalance, CompletingRebalance, Empty, Dead) and its
    members with the partitions assigned to each at the last rebalance."""
    with connected(kafka) as admin:
        return _described(admin, group)


def members(kafka: Kafka, group: str) -> list[Member]:
    """The consumers in ``group`` now, with their assigned partitions (none for an empty or unknown group)."""
    with connected(kafka) as admin:
        return _members(admin, group)


def group_members(kafka: Kafka, group: str) -> int:
    """How many consumers are members of ``group`` now (0 for an empty or unknown group)."""
    return len(members(kafka, group))


def _lag(admin: KafkaAdminClient, group: str, topics: Iterable[str] | None, settings: StreamSettings) -> list[LagRow]:
    offsets = admin.list_group_offsets(group)[group]
    wanted = list(topics) if topics is not None else sorted({tp.topic for tp in offsets} | set(settings.inputs))
    tps = [TopicPartition(t, p) for t, parts in partitions(admin, wanted).items() for p in parts]
    if not tps:
        return []
    ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
    begins = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
    owners = {tp: m for m in _members(admin, group) for tp in m.partitions}
    rows = []
    for tp in tps:
        meta = offsets.get(tp)
        committed = meta.offset if meta is not None and meta.offset >= 0 else None
        end = ends[tp].offset
        lag = end - (committed if committed is not None else begins[tp].offset)
        rows.append(LagRow(tp.topic, tp.partition, committed, end, max(lag, 0), owners.get((tp.topic, tp.partition))))
    return rows


def consumer_lag(kafka: Kafka, group: str, topics: Iterable[str] | None = None,
                 settings: StreamSettings | None = None) -> list[LagRow]:
    """Lag of ``group`` per topic and partition, sorted, each with its owner. ``topics`` None means
    every topic the group has offsets for plus the four input topics (of ``settings``, default
    prefix ``tuike``); topics that do not exist are left out."""
    with connected(kafka) as admin:
        rows = _lag(admin, group, topics, settings or StreamSettings())
    return sorted(rows, key=lambda r: (r.topic, r.partition))


def pipeline_lag(kafka: Kafka, settings: StreamSettings, generation: int) -> list[LagRow]:
    """Lag of one generation's workers: their group on the input and routed topics, and their
    sink group on the ledger topic and the dead letters (topologies/sink.py), sorted."""
    routed = [settings.routed_topic(generation, s) for s in STAGES]
    with connected(kafka) as admin:
        rows = _lag(admin, settings.app_id(generation), [*settings.inputs, *routed], settings)
        rows += _lag(admin, settings.sink_group(generation), [settings.ledger_topic(generation), settings.deadletter],
                     settings)
    return sorted(rows, key=lambda r: (r.topic, r.partition))


class MemberLag(NamedTuple):
    member: Member
    partitions: int  # of the rows, owned by the member
    lag: int


def lag_per_member(rows: Iterable[LagRow], members: Iterable[Member] = ()) -> list[MemberLag]:
    """Partitions owned and lag held per member, busiest first: the owners of ``rows``, and
    ``members`` that own none of them (an idle worker shows with 0)."""
    owned: dict[Member, list[LagRow]] = {m: [] for m in members}
    for row in rows:
        if row.owner is not None:
            owned.setdefault(row.owner, []).append(row)
    return sorted((MemberLag(m, len(rs), sum(r.lag for r in rs)) for m, rs in owned.items()),
                  key=lambda s: (-s.lag, s.member.name))
