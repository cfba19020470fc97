"""Appending many records at once (a settlement's statements): the same chain as one by one, one sync."""
from __future__ import annotations

import os

import pytest

from tuike.backoffice.evidence import EvidenceConflict, EvidenceLog, evidence_path, verify

from tests.tuike.backoffice.test_evidence import agreement


def test_many_records_chain_as_one_by_one(tmp_path):
    one, many = evidence_path(tmp_path / "one"), evidence_path(tmp_path / "many")
    log = EvidenceLog(one)
    singles = [log.append(*agreement(i)) for i in range(1, 6)]
    assert EvidenceLog(many).append_many(agreement(i) for i in range(1, 6)) == singles
    assert many.read_bytes() == one.read_bytes() and verify(many).records == 5


def test_many_records_are_synced_once_and_known_ones_not_again(tmp_path, monkeypatch):
    path = evidence_path(tmp_path)
    EvidenceLog(path).append(*agreement(1))
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    log = EvidenceLog(path)
    records = log.append_many([agreement(1), agreement(2), agreement(3), agreement(2)])
    assert [r.seq for r in records] == [1, 2, 3, 2] and len(synced) == 1
    assert log.append_many([agreement(3)]) == [records[2]] and log.append_many([]) == [] and len(synced) == 1
    assert verify(path).records == 3 and len(log) == 3


def test_a_refused_record_writes_none_of_its_batch(tmp_path):
    path = evidence_path(tmp_path)
    log = EvidenceLog(path)
    log.append(*agreement(1))
    before = path.read_bytes()
    kind, ref, data = agreement(1)
    with pytest.raises(EvidenceConflict):
        log.append_many([agreement(2), (kind, ref, {**data, "version": "v4"})])
    assert path.read_bytes() == before and not log.has("agreement/P2/v3")
    assert log.append(*agreement(2)).seq == 2 and verify(path).ok
