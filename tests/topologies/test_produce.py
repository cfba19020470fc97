"""`tuike produce` and `tuike lag` against a real Kafka broker (no mocks).

Each test has topics of its own (`kafka_settings`: a fresh `kafka.topic_prefix`), so the tests
can share the broker with each other and with running workers. Where the topic and the key of
each event type should be is written out here from contract §1.3, not taken from the code under
test; the partition is checked against `partition_of` (Kafka's default partitioner).
"""
from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.routes import ROUTES
from topologies.admin import TopicSpec, consumer_lag, ensure_topics, group_members, input_topic_specs, produce_records
from topologies.codec import decode_dead_letter
from topologies.partitioning import partition_of
from tuike.lab.generate import generate_shop, write_events
from schemas.records import read_records

from tests.support.streaming import free_port, ok, tuike

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(promoters=20, customers=150, orders=200)

# contract §1.3, written out: type -> (topic without the prefix, key field)
CONTRACT = {
    "promoter.joined": ("promoters", "promoter_id"),
    "promoter.banned": ("promoters", "promoter_id"),
    "promoter.agreed": ("promoters", "promoter_id"),  # added by issue 6 (README: additions to the contract)
    "click": ("clicks", "click_id"),
    "customer.bound": ("binds", "customer_id"),
    "order.paid": ("orders", "order_id"),
    "order.completed": ("orders", "order_id"),
    "order.refunded": ("orders", "order_id"),
    "order.cancelled": ("orders", "order_id"),
    "review.decided": ("orders", "order_id"),
    "order.settled": ("orders", "order_id"),  # written by tuike settle (README: additions to the contract)
}


@pytest.fixture
def config(tmp_path: Path, kafka_settings) -> Path:
    path = tmp_path / "tuike.yaml"
    path.write_text(f"kafka:\n  topic_prefix: {kafka_settings.topic_prefix}\n  partitions: {kafka_settings.partitions}\n")
    return path


def read_topics(broker: str, topics: list[str]) -> list[tuple[str, int, int, bytes | None, bytes]]:
    """Every message of the topics: (topic, partition, offset, key, value), in offset order per partition."""
    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        assert all(t["error_code"] == 0 for t in described), described
        tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out = []
            deadline = asyncio.get_running_loop().time() + 30
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                assert asyncio.get_running_loop().time() < deadline, "messages did not arrive within 30 s"
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, msgs in batches.items():
                    out += [(m.topic, m.partition, m.offset, m.key, m.value) for m in msgs]
            return sorted(out, key=lambda m: (m[0], m[1], m[2]))
        finally:
            await consumer.stop()
    return asyncio.run(run())


# --- without a broker ----------------------------------------------------------------------


def test_routes_cover_every_event_type_as_the_contract_says():
    from schemas.events import EVENT_MODELS

    assert ROUTES == CONTRACT
    assert set(ROUTES) == set(EVENT_MODELS)


def test_unreachable_broker_is_a_clear_exit_1(tmp_path: Path):
    events = tmp_path / "e.jsonl"
    events.write_text('{"type":"click","click_id":"K1","promoter_id":"P1"}\n')
    broker = f"127.0.0.1:{free_port()}"
    for args in (("produce", "--events", str(events)), ("lag",)):
        p = ok(tuike(*args, "--broker", broker, cwd=tmp_path), 1)
        assert f"cannot reach Kafka at {broker}: start it with `make kafka-up` or pass --broker" in p.stderr
        assert p.stderr.count("\n") == 1, p.stderr  # one message, no aiokafka log lines


def test_bad_broker_and_missing_file_are_bad_input(tmp_path: Path):
    p = ok(tuike("produce", "--events", str(tmp_path / "nope.jsonl"), cwd=tmp_path), 2)
    assert "nope.jsonl: no such file" in p.stderr
    events = tmp_path / "e.jsonl"
    events.write_text("{}\n")
    p = ok(tuike("produce", "--events", str(events), "--broker", "localhost", cwd=tmp_path), 2)
    assert "--broker 'localhost': expected HOST:PORT" in p.stderr
    (tmp_path / "bad.yaml").write_text("kafka:\n  partitions: 0\n")
    p = ok(tuike("lag", "--config", str(tmp_path / "bad.yaml"), cwd=tmp_path), 2)
    assert "kafka.partitions" in p.stderr


# --- with the broker -------------------------------------------------------------------------


def test_produce_puts_every_event_in_its_topic_partition_and_order(tmp_path, kafka_broker, kafka_settings, config):
    s = kafka_settings
    events = tmp_path / "shop.jsonl"
    write_events(generate_shop(3, **SMALL), events)
    lines = events.read_bytes().splitlines()

    expected = defaultdict(list)  # (topic, key) -> values in file order
    for line in lines:
        obj = orjson.loads(line)
        name, key_field = CONTRACT[obj["type"]]
        expected[(s.topic(name), obj[key_field])].append(line)
    per_topic = Counter(topic for (topic, _), values in expected.items() for _ in values)

    p = ok(tuike("produce", "--events", str(events), "--config", str(config), "--broker", kafka_broker, cwd=tmp_path))
    for topic in s.inputs:
        assert re.search(rf"{re.escape(topic)}\s+{per_topic[topic]:,}\b", p.stdout), p.stdout
    assert re.search(r"read\s+" + f"{len(lines):,}", p.stdout), p.stdout
    assert "events/s" in p.stdout

    messages = read_topics(kafka_broker, [*s.inputs, s.deadletter])
    assert len(messages) == len(lines)
    assert Counter(m[0] for m in messages) == per_topic  # and nothing in the dead letters
    got = defaultdict(list)
    for topic, partition, _offset, key, value in messages:
        assert partition == partition_of(key.decode(), s.partitions), (topic, key)
        got[(topic, key.decode())].append(value)
    assert got == expected  # same keys, same values byte for byte, in file order per key


def test_unroutable_lines_go_to_the_dead_letters_and_exit_2(tmp_path, kafka_broker, kafka_settings, config):
    s = kafka_settings
    lines = [
        '{"type":"click","event_id":"e1","ts":"2026-11-11T10:00:00+08:00","click_id":"K1","promoter_id":"P1"}',
        '{"type":"order.paid","order_id":',                                       # 2 bad JSON
        '[1, 2]',                                                                  # 3 not an object
        '{"event_id":"e4","order_id":"O4"}',                                       # 4 no type
        '{"type":"order.shipped","event_id":"e5","order_id":"O5"}',                # 5 unknown type
        '{"type":"order.completed","event_id":"e6","ts":"2026-11-11T10:00:00+08:00"}',  # 6 no key
        '{"type":"customer.bound","event_id":"e7","customer_id":7,"promoter_id":"P1"}',  # 7 key not a string
        # routable but invalid (float money): published, the workers dead-letter it
        '{"type":"order.paid","event_id":"e8","ts":"2026-11-11T10:00:00+08:00","order_id":"O8","customer_id":"C1",'
        '"currency":"CNY","items":[{"sku":"S1","category":"toys","price":199.0,"qty":1}]}',
    ]
    events = tmp_path / "mixed.jsonl"
    events.write_text("\n".join(lines) + "\n")

    p = ok(tuike("produce", "--events", str(events), "--config", str(config), "--broker", kafka_broker, cwd=tmp_path), 2)
    assert f"6 of 8 lines could not be routed to an input topic and went to {s.deadletter}" in p.stderr
    assert "dead letters by reason:" in p.stdout
    assert "bad JSON" in p.stdout and "order.completed: order_id" in p.stdout

    messages = read_topics(kafka_broker, [*s.inputs, s.deadletter])
    by_topic = defaultdict(list)
    for topic, _partition, _offset, key, value in messages:
        by_topic[topic].append((key, value))
    assert by_topic[s.topic("clicks")] == [(b"K1", lines[0].encode())]
    assert by_topic[s.topic("orders")] == [(b"O8", lines[7].encode())]
    dead = {d.position: d for d in (decode_dead_letter(v) for _k, v in by_topic[s.deadletter])}
    assert sorted(dead, key=int) == ["2", "3", "4", "5", "6", "7"]
    for position, d in dead.items():
        assert d.source == "mixed.jsonl"
        assert d.raw == lines[int(position) - 1]
    assert "bad JSON" in dead["2"].reason
    assert "not an object" in dead["3"].reason
    assert dead["4"].reason.startswith("type: required field is missing")
    assert "order.shipped" in dead["5"].reason
    assert dead["6"].reason.startswith("order.completed: order_id: required field is missing")
    assert dead["7"].reason.startswith("customer.bound: ") and "customer_id: ids are strings" in dead["7"].reason
    assert dead["4"].key == "O4" and dead["5"].key == "O5" and dead["6"].key == ""
    keys = {k for k, _v in by_topic[s.deadletter]}
    assert b"O4" in keys and b"O5" in keys  # dead letters keep the original key (§1.3)


def test_lag_prints_committed_end_and_lag(tmp_path, kafka_broker, kafka_settings, config):
    s = kafka_settings
    events = tmp_path / "shop.jsonl"
    write_events(generate_shop(5, **SMALL), events)
    asyncio.run(ensure_topics(kafka_broker, input_topic_specs(s)))
    stats = asyncio.run(produce_records(kafka_broker, s, read_records(events)))
    assert stats.records == sum(stats.published.values()) and stats.dead_lettered == 0

    group = s.app_id(0)  # what `tuike lag` reads by default
    orders, clicks = s.topic("orders"), s.topic("clicks")
    commits = {TopicPartition(orders, 0): 5, TopicPartition(orders, 2): 0, TopicPartition(clicks, 1): 7}

    async def commit_and_count():
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(list(commits))
            await consumer.commit(commits)
        finally:
            await consumer.stop()
        members_idle = await group_members(kafka_broker, group)
        rows = await consumer_lag(kafka_broker, group, settings=s)
        ends_consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker)
        await ends_consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in (*s.inputs, s.deadletter) for p in range(s.partitions)]
            ends = await ends_consumer.end_offsets(tps)
        finally:
            await ends_consumer.stop()
        return members_idle, rows, ends

    members_idle, rows, ends = asyncio.run(commit_and_count())
    assert members_idle == 0
    assert [(r.topic, r.partition) for r in rows] == sorted((tp.topic, tp.partition) for tp in ends
                                                           if tp.topic != s.deadletter)
    for r in rows:
        tp = TopicPartition(r.topic, r.partition)
        assert r.end == ends[tp]
        assert r.committed == commits.get(tp)
        assert r.lag == ends[tp] - commits.get(tp, 0)

    p = ok(tuike("lag", "--config", str(config), "--broker", kafka_broker, cwd=tmp_path))
    table = {}
    for line in p.stdout.splitlines():
        cells = line.split()
        if len(cells) == 5 and cells[0].startswith(s.topic_prefix + "."):
            table[(cells[0], int(cells[1]))] = (cells[2], int(cells[3].replace(",", "")), int(cells[4].replace(",", "")))
    assert len(table) == 5 * s.partitions, p.stdout  # the inputs, and the dead letters of the sink group
    for (topic, partition), (committed, end, lag) in table.items():
        tp = TopicPartition(topic, partition)
        assert end == ends[tp]
        assert committed == (f"{commits[tp]:,}" if tp in commits else "-")
        assert lag == ends[tp] - commits.get(tp, 0)
    total = sum(ends.values()) - sum(commits.values())
    assert (f"total lag {total:,} messages over {5 * s.partitions} partitions; group {group} (0 members) "
            f"and its sink group {s.sink_group(0)}") in p.stdout

    # another group: nothing committed, and no topics beyond the inputs
    p = ok(tuike("lag", "--config", str(config), "--broker", kafka_broker, "--group", "nobody-" + s.topic_prefix,
                 cwd=tmp_path))
    assert f"total lag {sum(o for tp, o in ends.items() if tp.topic != s.deadletter):,} messages" in p.stdout


def test_group_members_counts_a_running_consumer(kafka_broker, kafka_settings):
    s = kafka_settings
    group = s.app_id(0)

    async def run():
        await ensure_topics(kafka_broker, [TopicSpec(s.topic("orders"), 1)])
        consumer = AIOKafkaConsumer(s.topic("orders"), bootstrap_servers=kafka_broker, group_id=group)
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=500)  # joins the group
            return await group_members(kafka_broker, group)
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == 1


def test_topic_with_another_partition_count_is_refused(tmp_path, kafka_broker, kafka_settings, config):
    s = kafka_settings
    asyncio.run(ensure_topics(kafka_broker, [(s.topic("orders"), 2, False)]))
    events = tmp_path / "e.jsonl"
    events.write_text('{"type":"order.completed","event_id":"e1","ts":"2026-11-11T10:00:00+08:00","order_id":"O1"}\n')
    p = ok(tuike("produce", "--events", str(events), "--config", str(config), "--broker", kafka_broker, cwd=tmp_path), 2)
    assert f"topic {s.topic('orders')} has 2 partitions, tuike expects {s.partitions}" in p.stderr
    assert "kafka.partitions: 2" in p.stderr and "kafka.topic_prefix" in p.stderr
    assert read_topics(kafka_broker, [s.topic("orders")]) == []  # nothing was published


def test_a_worker_refuses_a_generation_of_the_older_six_agent_layout(tmp_path, kafka_broker, kafka_settings, config,
                                                                       clickhouse_url):
    """Messages waiting in the old internal topics would never be read: the worker says to replay."""
    s = kafka_settings
    asyncio.run(ensure_topics(kafka_broker, [(s.routed_topic(0, "customers"), s.partitions, False)]))
    p = ok(tuike("worker", "--web-port", "0", "--config", str(config), "--broker", kafka_broker, "--clickhouse", clickhouse_url,
                 "--data-dir", str(tmp_path / "w"), cwd=tmp_path, timeout=120), 2)
    assert "generation 0 was written by an older tuike" in p.stderr and s.routed_topic(0, "customers") in p.stderr
    assert "run `tuike replay`" in p.stderr
    assert not (tmp_path / "w" / "stream").exists()  # refused before any state or topic of its own


def test_ensure_topics_is_safe_when_processes_race(kafka_broker, kafka_settings):
    s = kafka_settings
    specs = input_topic_specs(s)

    async def run():
        created = await asyncio.gather(*(ensure_topics(kafka_broker, specs) for _ in range(3)))
        again = await ensure_topics(kafka_broker, specs)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker)
        await admin.start()
        try:
            described = await admin.describe_topics([spec.name for spec in specs])
            configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.control)])
        finally:
            await admin.close()
        return created, again, described, configs

    created, again, described, configs = asyncio.run(run())
    assert sorted(n for c in created for n in c) == sorted(spec.name for spec in specs)  # each created once
    assert again == []
    assert {t["topic"]: len(t["partitions"]) for t in described} == {spec.name: spec.partitions for spec in specs}
    assert {spec.name for spec in specs} == {*s.inputs, s.deadletter, s.control}
    entries = {e[0]: e[1] for r in configs for res in r.resources for e in res[4]}
    assert entries["cleanup.policy"] == "compact"


def test_a_control_topic_that_is_not_compacted_is_refused(kafka_broker, kafka_settings):
    from topologies.admin import TopicLayoutError

    s = kafka_settings
    asyncio.run(ensure_topics(kafka_broker, [(s.control, 1, False)]))
    with pytest.raises(TopicLayoutError, match=rf"topic {re.escape(s.control)} has cleanup.policy=delete"):
        asyncio.run(ensure_topics(kafka_broker, [(s.control, 1, True)]))
