"""The evidence log: appends chain and are idempotent by ref; verify names the first tampered record."""
from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import orjson
import pytest

from tuike.backoffice.evidence import (GENESIS, EvidenceBroken, EvidenceConflict, EvidenceLog,
                            evidence_path, record_hash, sha256_file, sha256_text, verify,
                            verify_command)


def agreement(i: int) -> tuple[str, str, dict]:
    text = f"推客服务协议 v3, promoter P{i}"
    data = {"promoter_id": f"P{i}", "version": "v3", "text_sha256": sha256_text(text), "ts": f"2026-11-01T00:00:{i % 60:02d}Z"}
    return "agreement", f"agreement/P{i}/v3", data


def make_log(tmp_path: Path, n: int = 10) -> Path:
    path = evidence_path(tmp_path)
    log = EvidenceLog(path)
    for i in range(1, n + 1):
        log.append(*agreement(i))
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_append_chains_records_and_verifies(tmp_path):
    path = evidence_path(tmp_path)
    assert not EvidenceLog(path).has("agreement/P1/v3") and not path.parent.exists()  # reading creates nothing
    log = EvidenceLog(path)
    first = log.append(*agreement(1))
    second = log.append("statement", "statement/2026-11/P1", {"file": "P1.csv", "sha256": "ab" * 32})
    assert (first.seq, first.prev) == (1, GENESIS)
    assert (second.seq, second.prev) == (2, first.hash)
    raw = lines(path)
    assert raw[0] == orjson.dumps(orjson.loads(raw[0]), option=orjson.OPT_SORT_KEYS) + b"\n"  # canonical
    assert orjson.loads(raw[1])["hash"] == record_hash(orjson.loads(raw[1])) == second.hash
    assert verify(path).ok and verify(path).records == 2 and verify(path).last_hash == second.hash


def test_reappending_the_same_evidence_writes_nothing(tmp_path):
    path = make_log(tmp_path, 3)
    size = path.stat().st_size
    log = EvidenceLog(path)  # a re-run after reopening: the index comes from the file
    kind, ref, data = agreement(2)
    again = log.append(kind, ref, dict(reversed(list(data.items()))))  # key order is not content
    assert again.seq == 2 and again == log.get(ref)
    assert path.stat().st_size == size and verify(path).records == 3


def test_different_evidence_under_a_known_ref_is_refused(tmp_path):
    path = make_log(tmp_path, 3)
    before = path.read_bytes()
    kind, ref, data = agreement(2)
    log = EvidenceLog(path)
    with pytest.raises(EvidenceConflict, match="agreement/P2/v3 is already recorded .record 2. with different data"):
        log.append(kind, ref, {**data, "text_sha256": sha256_text("another text")})
    with pytest.raises(EvidenceConflict, match="different kind"):
        log.append("statement", ref, data)
    assert path.read_bytes() == before


def test_each_append_is_fsynced(tmp_path, monkeypatch):
    log = EvidenceLog(evidence_path(tmp_path))
    log.append(*agreement(1))  # creates the file (and syncs its directory too)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    log.append(*agreement(1))  # idempotent: no write, no sync
    log.append(*agreement(2))
    log.append(*agreement(3))
    assert len(synced) == 2


def test_a_second_writer_cannot_fork_the_chain(tmp_path):
    path = make_log(tmp_path, 2)
    first, second = EvidenceLog(path), EvidenceLog(path)
    first.append(*agreement(3))
    with pytest.raises(EvidenceBroken, match="another writer appended to it; open the log again"):
        second.append(*agreement(4))
    with pytest.raises(EvidenceBroken):  # its view stays refused: its head is not the file's
        second.append(*agreement(5))
    assert verify(path).ok and verify(path).records == 3
    assert EvidenceLog(path).append(*agreement(4)).seq == 4


def test_the_chain_survives_reopening(tmp_path):
    path = make_log(tmp_path, 5)
    log = EvidenceLog(path)
    head = log.head
    assert len(log) == 5 and log.get("agreement/P5/v3").hash == head
    record = log.append(*agreement(6))
    assert (record.seq, record.prev) == (6, head)
    assert verify(path).ok and verify(path).records == 6


def test_a_changed_byte_in_a_record_names_that_record(tmp_path):
    path = make_log(tmp_path)
    raw = lines(path)
    raw[6] = raw[6].replace(b'"promoter_id":"P7"', b'"promoter_id":"P8"')
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert (result.ok, result.first_bad_seq, result.records) == (False, 7, 6)
    assert result.problem == "record 7 (agreement/P7/v3) was altered: its hash does not match its content"


def test_a_reformatted_record_is_not_canonical(tmp_path):
    path = make_log(tmp_path)
    raw = lines(path)
    raw[2] = raw[2].replace(b'"seq":3', b'"seq": 3')
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.first_bad_seq == 3 and "record 3 (agreement/P3/v3) was edited" in result.problem


def test_a_removed_record_is_named(tmp_path):
    path = make_log(tmp_path)
    raw = lines(path)
    del raw[4]
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.first_bad_seq == 5
    assert result.problem.startswith("record 5 is missing: line 5 holds record 6 (agreement/P6/v3)")


def test_swapped_records_are_caught(tmp_path):
    path = make_log(tmp_path)
    raw = lines(path)
    raw[4], raw[5] = raw[5], raw[4]
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.first_bad_seq == 5 and "reordered" in result.problem


def test_a_forged_record_is_caught_even_with_a_consistent_hash(tmp_path):
    path = make_log(tmp_path)
    raw = lines(path)
    prev = orjson.loads(raw[3])["hash"]
    forged = {"seq": 5, "kind": "agreement", "ref": "agreement/P99/v3", "prev": prev,
              "data": {"promoter_id": "P99", "version": "v3", "text_sha256": sha256_text("x"), "ts": "2026-11-01T00:00:00Z"}}
    forged["hash"] = record_hash(forged)
    raw.insert(4, orjson.dumps(forged, option=orjson.OPT_SORT_KEYS) + b"\n")
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.first_bad_seq == 6  # records 1-5 chain (the forgery among them); line 6 does not follow
    assert result.problem.startswith("line 6 holds record 5 (agreement/P5/v3) again") and "inserted" in result.problem


def test_a_renumbered_record_does_not_follow_its_predecessor(tmp_path):
    path = make_log(tmp_path)
    raw = lines(path)
    record = orjson.loads(raw[7])
    record["seq"] = 7
    record["hash"] = record_hash(record)
    raw[6:8] = [orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"]  # drop 7, pass 8 off as 7
    path.write_bytes(b"".join(raw))
    assert verify(path).problem == ("record 7 (agreement/P8/v3) does not follow record 6: "
                                    "a record was removed, inserted or reordered before it")


def test_a_rechained_forgery_changes_the_last_hash(tmp_path):
    """Rewriting every record after a change verifies: only a head kept elsewhere exposes it."""
    path = make_log(tmp_path, 3)
    head = verify(path).last_hash
    prev, out = GENESIS, []
    for line in lines(path):
        record = orjson.loads(line)
        record["data"]["version"] = "v4"
        record["prev"] = prev
        record["hash"] = prev = record_hash(record)
        out.append(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n")
    path.write_bytes(b"".join(out))
    assert verify(path).ok and verify(path).last_hash != head


def test_a_repeated_ref_is_caught(tmp_path):
    """Appends are idempotent by ref, so a second record of a ref was not written by the log."""
    path = make_log(tmp_path, 3)
    raw = lines(path)
    copy = orjson.loads(raw[1])
    copy.update(seq=4, prev=orjson.loads(raw[2])["hash"])
    copy["hash"] = record_hash(copy)
    path.write_bytes(b"".join(raw) + orjson.dumps(copy, option=orjson.OPT_SORT_KEYS) + b"\n")
    assert verify(path).problem == "record 4 repeats ref agreement/P2/v3 of record 2: a ref is recorded once"


def test_a_line_that_is_not_json(tmp_path):
    path = make_log(tmp_path)
    raw = lines(path)
    raw[2] = b"{not json\n"
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.first_bad_seq == 3 and result.problem == "line 3 (where record 3 belongs) is not valid JSON"


def test_an_incomplete_last_line_blocks_appends_until_repaired(tmp_path):
    path = make_log(tmp_path)
    raw = lines(path)
    intact = sum(map(len, raw[:-1]))
    path.write_bytes(b"".join(raw)[:-10])  # a crash mid-append
    result = verify(path)
    assert (result.ok, result.records, result.first_bad_seq) == (False, 9, 10)
    assert "incomplete append" in result.problem and f"truncate the file to {intact} bytes" in result.problem
    with pytest.raises(EvidenceBroken, match="incomplete append.*Nothing is appended after it until it is repaired"):
        EvidenceLog(path).append(*agreement(11))
    os.truncate(path, intact)
    assert EvidenceLog(path).append(*agreement(10)).seq == 10
    assert verify(path).ok


def test_verify_command(tmp_path):
    out = io.StringIO()
    assert verify_command(tmp_path, out) == 0 and "No evidence log at" in out.getvalue()
    path = make_log(tmp_path, 2)
    out = io.StringIO()
    assert verify_command(tmp_path, out) == 0
    assert out.getvalue() == f"evidence log OK: 2 records, last hash {verify(path).last_hash}\n"
    path.write_bytes(path.read_bytes().replace(b"P2", b"P3"))
    out = io.StringIO()
    assert verify_command(tmp_path, out) == 1
    assert "record 2 (agreement/P3/v3) was altered" in out.getvalue() and "records 1-1 are intact" in out.getvalue()


def test_file_and_text_hashes(tmp_path):
    statement = tmp_path / "P1.csv"
    statement.write_bytes(b"order,amount\n1,9.90\n")
    assert sha256_file(statement) == hashlib.sha256(b"order,amount\n1,9.90\n").hexdigest()
    assert sha256_text("协议") == sha256_text("协议") != sha256_text("协议\n")


def test_ten_thousand_appends_and_a_verify_are_quick(tmp_path):
    path = evidence_path(tmp_path)
    start = time.perf_counter()
    log = EvidenceLog(path)
    for i in range(10_000):
        log.append("statement", f"statement/2026-11/P{i}", {"file": f"P{i}.csv", "sha256": sha256_text(str(i))})
    appended = time.perf_counter()
    result = verify(path)
    verified = time.perf_counter()
    assert result.ok and result.records == 10_000
    # one fsync each: ~1 ms on an idle disk, several times that on the shared CI machine under load
    assert appended - start < 60, f"appends took {appended - start:.1f}s (mostly one fsync each)"
    assert verified - appended < 2, f"verify took {verified - appended:.1f}s"
