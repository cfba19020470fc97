"""The admin commands on kafka-python (topologies/kafka_admin.py) and `tuike lag`'s owners, against
the real broker: a consumer group of two members, each holding some partitions (no mocks).

The members are kafka-python consumers whose client ids are ``tuike-worker-w1`` and
``tuike-worker-w2``: `tuike lag` must name, for every partition, the member the group
coordinator assigned it to, and sum partitions and lag per member.
"""
from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from tests.support.streaming import free_port, ok, tuike
from topologies.kafka_access import BrokerUnreachable
from topologies.kafka_admin import (LagRow, Member, consumer_lag, ensure_topics, existing_topics, lag_per_member,
                                    members)


# --- without a broker ----------------------------------------------------------------------


def test_a_member_is_named_by_its_worker_else_by_client_host_and_member_id():
    worker = Member("tuike-worker-host1:6066-5d0c9a7e-1111", "tuike-worker-host1:6066", "10.0.0.5", frozenset())
    faust = Member("faust-0.15.3-27115b57-4707-84b9", "faust-0.15.3", "10.0.0.6", frozenset())
    assert worker.name == "host1:6066"
    assert faust.name == "faust-0.15.3@10.0.0.6#27115b57"


def test_lag_per_member_counts_owned_partitions_and_keeps_idle_members():
    a, b, idle = (Member(f"m{i}-x", f"m{i}", "h", frozenset()) for i in range(3))
    rows = [LagRow("t", 0, 5, 9, 4, a), LagRow("t", 1, None, 3, 3, a), LagRow("t", 2, 1, 1, 0, b),
            LagRow("t", 3, 0, 7, 7, None)]
    assert lag_per_member(rows, [a, b, idle]) == [(a, 2, 7), (b, 1, 0), (idle, 0, 0)]


def test_an_absent_broker_is_said_at_once(tmp_path):
    broker = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=f"cannot reach Kafka at {broker}"):
        existing_topics(broker, [])
    assert time.monotonic() - t0 < 2
    p = ok(tuike("lag", "--group", "g", "--broker", broker, cwd=tmp_path), 1)  # the kafka-python path from the start
    assert p.stderr == f"tuike: cannot reach Kafka at {broker}: start it with `make kafka-up` or pass --broker\n"


# --- with the broker -------------------------------------------------------------------------


def test_ensure_topics_sets_replication_and_min_insync_replicas(kafka_broker, kafka_settings):
    s = kafka_settings
    name = s.topic("orders")
    assert ensure_topics(kafka_broker, [(name, 2, False)], replication_factor=1, min_insync_replicas=1) == [name]
    assert ensure_topics(kafka_broker, [(name, 2, False)], min_insync_replicas=1) == []  # exists: checked, kept
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    try:
        topic = admin.describe_topics([name])[0]
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name, {"min.insync.replicas": None})],
                                         config_filter="all")
    finally:
        admin.close()
    assert [len(p["replica_nodes"]) for p in topic["partitions"]] == [1, 1]
    assert all(p["leader_id"] >= 0 for p in topic["partitions"])  # ready: every partition has a leader
    assert configs["topic"][name]["min.insync.replicas"]["value"] == "1"


@pytest.fixture
def two_members(kafka_broker, kafka_settings):
    """The input topics with messages, and the workers' group (generation 0) with two live members,
    w1 and w2, each assigned part of the partitions, having committed offset 1 where it can."""
    from topologies.admin import input_topic_specs

    s = kafka_settings
    ensure_topics(kafka_broker, input_topic_specs(s))
    producer = KafkaProducer(bootstrap_servers=kafka_broker)
    for topic in s.inputs:
        for partition in range(s.partitions):
            for i in range(3 + partition):
                producer.send(topic, b"{}", key=f"k{i}".encode(), partition=partition)
    producer.flush()
    producer.close()
    consumers = {name: KafkaConsumer(*s.inputs, bootstrap_servers=kafka_broker, group_id=s.app_id(0),
                                     client_id=f"tuike-worker-{name}", enable_auto_commit=False,
                                     auto_offset_reset="earliest") for name in ("w1", "w2")}
    try:
        deadline = time.monotonic() + 120  # a few seconds; a minute was seen on the shared machine at load 20
        while not all(c.assignment() for c in consumers.values()) or len(members(kafka_broker, s.app_id(0))) < 2 \
                or sum(len(c.assignment()) for c in consumers.values()) < len(s.inputs) * s.partitions:
            assert time.monotonic() < deadline, "the two members did not both get partitions within 120 s"
            for c in consumers.values():
                c.poll(timeout_ms=200, max_records=1)
        for c in consumers.values():
            c.commit({tp: OffsetAndMetadata(1, "", -1) for tp in c.assignment()})
        yield {name: {(tp.topic, tp.partition) for tp in c.assignment()} for name, c in consumers.items()}
    finally:
        for c in consumers.values():
            c.close()


def test_lag_names_the_member_that_owns_each_partition(two_members, kafka_broker, kafka_settings, tmp_path):
    s = kafka_settings
    assigned = two_members
    rows = consumer_lag(kafka_broker, s.app_id(0), settings=s)
    assert len(rows) == len(s.inputs) * s.partitions
    assert {(r.topic, r.partition): r.owner.name for r in rows} == {
        tp: name for name, tps in assigned.items() for tp in tps}
    assert all(r.committed == 1 and r.lag == r.end - 1 for r in rows)

    config = tmp_path / "tuike.yaml"
    config.write_text(f"kafka:\n  topic_prefix: {s.topic_prefix}\n  partitions: {s.partitions}\n")
    p = ok(tuike("lag", "--config", str(config), "--broker", kafka_broker, cwd=tmp_path))
    lines = p.stdout.splitlines()
    table = {}
    for line in lines:
        cells = line.split()
        if len(cells) == 6 and cells[0] in s.inputs:  # the dead letters: the sink group's, no member
            table[(cells[0], int(cells[1]))] = cells[5]
    assert table == {tp: name for name, tps in assigned.items() for tp in tps}, p.stdout
    summary = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] in (["w1"], ["w2"])}
    lag_of = {name: sum(r.lag for r in rows if r.owner.name == name) for name in assigned}
    assert summary == {name: ["127.0.0.1", str(len(assigned[name])), f"{lag_of[name]:,}"] for name in assigned}, p.stdout
    assert lines[-1].startswith(f"total lag {sum(lag_of.values()):,} messages")
    assert f"group {s.app_id(0)} (2 members)" in lines[-1]

    p = ok(tuike("lag", "--config", str(config), "--broker", kafka_broker, "--group", s.app_id(0), "--format", "json",
                 cwd=tmp_path))
    out = json.loads(p.stdout)
    assert out["group"] == s.app_id(0) and out["sink_group"] is None and out["member_count"] == 2
    assert {(r["topic"], r["partition"]): r["owner"] for r in out["partitions"]} == table
    assert {m["name"]: (m["partitions"], m["lag"]) for m in out["per_member"]} == {
        name: (len(assigned[name]), lag_of[name]) for name in assigned}
    assert out["total_lag"] == sum(lag_of.values())

