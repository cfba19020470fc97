"""Where a worker's consumer stands after a rebalance (topologies/offsets.py), on the real broker.

Faust drops records it fetched but had not handed to an agent when a rebalance began, and then
asks for a seek to the committed offsets. Every input partition must end up at its committed
offset, or at the log start where nothing was committed: a partition left past dropped records
with no newer record arriving never delivers them (a stall seen in CI)."""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from topologies.admin import ensure_topics
from topologies.faust_internals import seek_to_committed


async def _positions_after_seek(broker: str, prefix: str) -> dict[str, int]:
    inputs, changelog = f"{prefix}.binds", f"{prefix}.g0-customers-changelog"
    await ensure_topics(broker, [(inputs, 3, False), (changelog, 1, True)])
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        for p in range(3):
            for i in range(5):
                await producer.send_and_wait(inputs, f"r{i}".encode(), key=b"k", partition=p)
        for i in range(5):
            await producer.send_and_wait(changelog, f"c{i}".encode(), key=f"k{i}".encode(), partition=0)
    finally:
        await producer.stop()
    tps = {"none": TopicPartition(inputs, 0), "three": TopicPartition(inputs, 1), "zero": TopicPartition(inputs, 2),
           "changelog": TopicPartition(changelog, 0)}
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=f"{prefix}.g0", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(list(tps.values()))
        await consumer.commit({tps["three"]: 3, tps["zero"]: 0})
        for tp in tps.values():  # everything fetched, as before a rebalance that dropped it
            consumer.seek(tp, 5)
        await seek_to_committed(consumer)
        return {name: await consumer.position(tp) for name, tp in tps.items()}
    finally:
        await consumer.stop()


def test_every_input_partition_goes_back_to_its_committed_offset_or_the_log_start(kafka_broker, kafka_settings):
    positions = asyncio.run(_positions_after_seek(kafka_broker, kafka_settings.topic_prefix))
    assert positions == {"none": 0, "three": 3, "zero": 0, "changelog": 5}, positions
