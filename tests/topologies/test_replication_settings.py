"""The replication keys of the ``kafka:`` section (topologies/settings.py): unset they work on one
broker and on three; set, they are checked and reach Faust and the topic configs."""
from __future__ import annotations

import pytest

from engine.config import ConfigError
from topologies.settings import StreamSettings, stream_settings


def test_unset_replication_leaves_it_to_the_cluster():
    s = stream_settings({"kafka": {"topic_prefix": "t"}})
    assert (s.replication_factor, s.min_insync_replicas) == (None, None)
    assert s.replication() == {"replication_factor": None, "min_insync_replicas": None}


def test_a_cluster_sets_three_replicas_and_two_in_sync():
    s = stream_settings({"kafka": {"replication_factor": 3, "min_insync_replicas": 2}})
    assert (s.replication_factor, s.min_insync_replicas) == (3, 2)
    assert s.replication() == {"replication_factor": 3, "min_insync_replicas": 2}


@pytest.mark.parametrize("section, key, words", [
    ({"replication_factor": 0}, "kafka.replication_factor", "at least 1"),
    ({"replication_factor": "3"}, "kafka.replication_factor", "whole number"),
    ({"min_insync_replicas": True}, "kafka.min_insync_replicas", "whole number"),
    ({"replication_factor": 1, "min_insync_replicas": 2}, "kafka.min_insync_replicas", "at most 1"),
])
def test_bad_replication_names_the_key_and_the_fix(section, key, words):
    with pytest.raises(ConfigError) as caught:
        stream_settings({"kafka": section})
    assert any(p.path == key and words in p.message for p in caught.value.problems), caught.value.problems


def test_faust_creates_its_own_topics_with_the_replication_factor(tmp_path):
    """Faust's own topics (its assignor's leader topic) get kafka.replication_factor, 1 unset;
    every producer of the worker waits for all in-sync replicas (acks=all)."""
    from engine.config import parse_config
    from topologies.app import Topology
    from topologies.kafka_access import KafkaAccess

    config = parse_config(None)
    for rf, want in ((None, 1), (3, 3)):
        topology = Topology(config, StreamSettings(topic_prefix="t", replication_factor=rf),
                            kafka=KafkaAccess("127.0.0.1:1"), data_dir=tmp_path / str(rf))
        assert topology.app.conf.topic_replication_factor == want
        assert topology.app.conf.producer_acks == -1
