"""Which partition a key lives in: Kafka's default partitioner (murmur2 of the key bytes,
as the Java client and aiokafka compute it).

Every tuike topic has the same partition count, so a key is in the same partition number of
every topic, and Faust's assignor gives that partition number of every topic to one worker
(co-partitioning). ``tuike produce``, the workers' re-keyed messages and the tables all place
keys with this one function, so a key's state and every message for it meet on one worker.
"""
from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=262_144)
def partition_of(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
