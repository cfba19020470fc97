"""The 3-node Kafka cluster of deploy/kafka-cluster.sh for the cluster tests, and what they read
from it: each topic's replicas and min.insync.replicas, and which group member owns which
partition. Imported explicitly by tests/cluster/test_kafka_cluster.py (fixtures included).

The ``kafka_cluster`` fixture starts the cluster if it is not running, and stops it at the end
only then (``make test-cluster`` stops it anyway). Nodes are killed and started again through the
script (``kill N``: SIGKILL), never by name.
"""
from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from tests.support.streaming import REPO, note

SCRIPT = REPO / "deploy" / "kafka-cluster.sh"
NODES = (1, 2, 3)
BOOTSTRAP = ",".join(f"127.0.0.1:{19092 + (n - 1) * 100}" for n in NODES)


def _script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"deploy/kafka-cluster.sh {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}"
    return p


@dataclass
class KafkaCluster:
    bootstrap: str = BOOTSTRAP

    killed: set = field(default_factory=set)

    def kill(self, node: int) -> None:
        """SIGKILL node ``node``: no controlled shutdown, as a crashed machine."""
        _script("kill", str(node))
        self.killed.add(node)

    def start(self, node: int) -> float:
        """Start node ``node`` again; the seconds until it answers."""
        t0 = time.monotonic()
        _script("start", str(node))
        self.killed.discard(node)
        return time.monotonic() - t0

    def heal(self) -> None:
        """Start again every node a test killed and did not start (after a failure)."""
        for node in sorted(self.killed):
            self.start(node)


@pytest.fixture(scope="session")
def kafka_cluster() -> KafkaCluster:
    status = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True)
    started_here = "running (pid" not in status.stdout  # no node ran: the cluster is ours to stop
    if status.returncode != 0:  # starts the nodes that do not run
        t0 = time.monotonic()
        _script("up", timeout=900)
        note(f"kafka cluster up in {time.monotonic() - t0:.0f}s: {BOOTSTRAP}")
    cluster = KafkaCluster()
    yield cluster
    if started_here:
        _script("down")


# --- what the cluster says -----------------------------------------------------------------


@dataclass(frozen=True)
class TopicReplication:
    partitions: int
    replicas: int  # the fewest replicas of any partition
    min_insync: int  # the topic's effective min.insync.replicas (its own, or the broker default)
    in_sync: int  # the fewest in-sync replicas of any partition now


def replication(bootstrap: str, names: list[str]) -> dict[str, TopicReplication]:
    """Replicas and min.insync.replicas of each of ``names`` that exists, from the cluster's metadata
    (DescribeTopics) and the topic configs (DescribeConfigs)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
        await admin.start()
        try:
            described = [t for t in await admin.describe_topics(names) if t["error_code"] == 0]
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t["topic"]) for t in described])
            return described, configs
        finally:
            await admin.close()

    described, configs = asyncio.run(run())
    isr: dict[str, int] = {}
    for response in configs:
        for _err, _msg, _type, name, entries in response.resources:
            isr.update({name: int(e[1]) for e in entries if e[0] == "min.insync.replicas"})
    return {t["topic"]: TopicReplication(len(t["partitions"]), min(len(p["replicas"]) for p in t["partitions"]),
                                         isr[t["topic"]], min(len(p["isr"]) for p in t["partitions"]))
            for t in described}


def topics_of(bootstrap: str, prefix: str) -> list[str]:
    """Every topic whose name starts with ``prefix`` (a test's topics, Faust's included)."""
    from topologies.admin import _admin

    async def run():
        admin = await _admin(bootstrap)
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    return sorted(t for t in asyncio.run(run()) if t.startswith(prefix))


@dataclass(frozen=True)
class Member:
    member_id: str  # Faust's client id is the same in every worker: a member is told by its id
    client_id: str
    owns: dict  # topic -> sorted partitions


def owners(bootstrap: str, group: str) -> tuple[str, list[Member]]:
    """The group's state and its members with the partitions each is assigned (the consumer
    group's own record, DescribeGroups: what the coordinator handed out at the last rebalance)."""
    from topologies.kafka_admin import group_state

    state, found = group_state(bootstrap, group)
    members = []
    for m in found:
        owns: dict[str, list[int]] = {}
        for topic, p in sorted(m.partitions):
            owns.setdefault(topic, []).append(p)
        members.append(Member(m.member_id, m.client_id, owns))
    return state, sorted(members, key=lambda m: m.member_id)


def format_owners(members: list[Member], names: dict[str, str], topic: str) -> str:
    """One line per member: the worker it is (``names``: member id -> worker, where known) and the
    partitions of ``topic`` it owns."""
    return "\n".join(f"    {names.get(m.member_id, '?'):<4} {m.member_id[-12:]}  {topic} partitions "
                     f"{m.owns.get(topic, [])}" for m in members)
