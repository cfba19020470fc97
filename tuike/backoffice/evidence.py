"""The evidence log (电子签约存证): an append-only, hash-chained record of what was agreed and paid.

``<data-dir>/evidence/evidence.jsonl`` holds one record a line, in canonical form (orjson, keys
sorted, no spaces, UTF-8), so a record's bytes are a function of its content::

    {"data":{...},"hash":H,"kind":"agreement","prev":P,"ref":"agreement/P1/v3","seq":1}

``hash`` is the SHA-256 of the record's canonical form without ``hash``; ``prev`` is the
previous record's ``hash`` (64 zeros for the first), which covers every byte of it. Changing,
removing, inserting or reordering a record therefore breaks the chain at that record, and
:func:`verify` names the first place it breaks. Records added after the end leave the chain
intact: compare the last hash :func:`verify_command` prints with one kept elsewhere.

``ref`` is a deterministic id of what a record proves (``agreement/<promoter>/<version>``,
``statement/2026-11/<payee>``, ``tax_export/2026-11``), so appending is idempotent: re-running a
settlement finds its records already there, and different data under a known ref is refused,
since evidence is never rewritten. Kinds are free strings; so far ``agreement`` (a
``promoter.agreed`` event: promoter_id, version, text_sha256, ts), ``statement`` and
``tax_export`` (file name and sha256).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable

import orjson

from topologies.durable import fsync_dir

EVIDENCE_FILE = Path("evidence") / "evidence.jsonl"
GENESIS = "0" * 64
FIELDS = frozenset({"seq", "kind", "ref", "data", "prev", "hash"})


class EvidenceError(RuntimeError):
    pass


class EvidenceConflict(EvidenceError):
    """A ref already holds different evidence: a correction needs a new ref, never a rewrite."""

    def __init__(self, ref: str, existing: Record, kind: str):
        super().__init__(
            f"evidence {ref} is already recorded (record {existing.seq}) with different "
            f"{'data' if existing.kind == kind else 'kind'}; evidence is never rewritten: record "
            "the correction under a new ref (a new version)")
        self.ref = ref
        self.existing = existing


class EvidenceBroken(EvidenceError):
    """The log does not verify, or changed under this reader: a new record would chain onto a wrong head."""


@dataclass(frozen=True)
class Record:
    seq: int
    kind: str
    ref: str
    data: dict[str, Any]
    prev: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """``records`` counts the records that verified: 1 .. records form an intact chain ending in
    ``last_hash``; when ``ok`` is False, ``first_bad_seq`` (records + 1) is where it breaks."""
    ok: bool
    records: int
    problem: str | None
    first_bad_seq: int | None
    last_hash: str = GENESIS


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def record_hash(body: dict[str, Any]) -> str:
    """The hash of a record's canonical form without ``hash`` (every other key, extra ones too)."""
    return hashlib.sha256(canonical({k: v for k, v in body.items() if k != "hash"})).hexdigest()


def sha256_text(text: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``text`` exactly as shown (no newline or space clean-up)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def evidence_path(data_dir: Path) -> Path:
    return data_dir / EVIDENCE_FILE


def _why_not_a_record(obj: Any) -> str | None:
    if not isinstance(obj, dict) or obj.keys() != FIELDS:
        return f"it is not an evidence record (its keys must be {', '.join(sorted(FIELDS))})"
    if type(obj["seq"]) is not int or not isinstance(obj["data"], dict) \
            or not all(isinstance(obj[k], str) for k in ("kind", "ref", "prev", "hash")):
        return "it is not an evidence record (seq must be an integer, data an object, the rest strings)"
    return None


@dataclass(frozen=True)
class _Walk:
    records: list[Record]
    problem: str | None

    def result(self) -> VerifyResult:
        n = len(self.records)
        last = self.records[-1].hash if self.records else GENESIS
        if self.problem is None:
            return VerifyResult(True, n, None, None, last)
        return VerifyResult(False, n, self.problem, n + 1, last)


def _walk(raw: bytes) -> _Walk:
    """Read records while they chain; stop at the first that does not, saying why."""
    records: list[Record] = []
    refs: dict[str, int] = {}
    head, pos = GENESIS, 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        if end < 0:
            after = f"after record {len(records)}" if records else "at the start"
            return _Walk(records, f"the last line ({len(raw) - pos} bytes {after}) is an incomplete append, "
                                  f"cut short by a crash or truncation; truncate the file to {pos} bytes "
                                  "to drop it")
        line, expected = raw[pos:end], len(records) + 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return _Walk(records, f"line {expected} (where record {expected} belongs) is not valid JSON")
        why = _why_not_a_record(obj)
        if why:
            return _Walk(records, f"line {expected} (where record {expected} belongs): {why}")
        seq, ref = obj["seq"], obj["ref"]
        if record_hash(obj) != obj["hash"]:
            problem = f"record {expected} ({ref}) was altered: its hash does not match its content"
        elif canonical(obj) != line:
            problem = f"record {expected} ({ref}) was edited: its bytes are not the canonical form of its content"
        elif seq > expected:
            problem = (f"record {expected} is missing: line {expected} holds record {seq} ({ref}); "
                       "a record was removed or the records were reordered")
        elif seq < expected:
            problem = (f"line {expected} holds record {seq} ({ref}) again where record {expected} belongs: "
                       "a record was inserted or the records were reordered")
        elif obj["prev"] != head:
            problem = (f"record {seq} ({ref}) does not follow record {seq - 1}: "
                       "a record was removed, inserted or reordered before it")
        elif ref in refs:
            problem = f"record {seq} repeats ref {ref} of record {refs[ref]}: a ref is recorded once"
        else:
            records.append(Record(**obj))
            refs[ref] = seq
            head, pos = obj["hash"], end + 1
            continue
        return _Walk(records, problem)
    return _Walk(records, None)


def _read(path: Path) -> bytes:
    """The file's bytes under a shared lock, so an append in progress is not taken for a crash."""
    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        return f.read()


def verify(path: Path) -> VerifyResult:
    """Walk the whole log and name the first record that is altered, missing or out of place."""
    return _walk(_read(Path(path))).result()


class EvidenceLog:
    """Reads the log once, then appends to it; holds no file between appends, so needs no closing.

    Each append locks the file and checks it still ends where this reader left it: a second
    writer's record would otherwise chain onto the same head as ours."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            raw = _read(self.path)
        except FileNotFoundError:
            raw = b""
        walk = _walk(raw)
        self._size = len(raw)
        self._refusal = None if walk.problem is None else \
            f"{self.path}: {walk.problem}. Nothing is appended after it until it is repaired"
        self._by_ref = {r.ref: r for r in walk.records}
        self._last = walk.records[-1] if walk.records else None

    def __len__(self) -> int:
        return self._last.seq if self._last else 0

    @property
    def head(self) -> str:
        """The last record's hash: the whole chain's fingerprint, worth keeping elsewhere."""
        return self._last.hash if self._last else GENESIS

    def has(self, ref: str) -> bool:
        return ref in self._by_ref

    def refs(self, prefix: str) -> list[str]:
        """The refs logged that start with ``prefix``, in log order."""
        return [ref for ref in self._by_ref if ref.startswith(prefix)]

    def get(self, ref: str) -> Record | None:
        return self._by_ref.get(ref)

    def append(self, kind: str, ref: str, data: dict[str, Any]) -> Record:
        """Record ``data`` under ``ref``, durably; a ref already there with the same kind and
        data returns its record and writes nothing (re-runs do not grow the log)."""
        return self.append_many([(kind, ref, data)])[0]

    def append_many(self, entries: Iterable[tuple[str, str, dict[str, Any]]]) -> list[Record]:
        """:meth:`append` each ``(kind, ref, data)`` in order, with one write and one sync for them
        all: a settlement logs a statement per payee, and a sync each took seconds at 10,000 payees.
        All are checked before any is written, so a refused one writes none."""
        if self._refusal is not None:
            raise EvidenceBroken(self._refusal)
        out: list[Record] = []
        new: dict[str, Record] = {}
        last = self._last
        for kind, ref, data in entries:
            if not kind or not ref or not isinstance(data, dict):
                raise ValueError("evidence needs a kind, a ref and a dict of data")
            data_bytes = canonical(data)
            existing = new.get(ref) or self._by_ref.get(ref)
            if existing is not None:
                if existing.kind == kind and canonical(existing.data) == data_bytes:
                    out.append(existing)
                    continue
                raise EvidenceConflict(ref, existing, kind)
            body = {"seq": last.seq + 1 if last else 1, "kind": kind, "ref": ref, "data": orjson.loads(data_bytes),
                    "prev": last.hash if last else GENESIS}
            last = new[ref] = Record(**body, hash=record_hash(body))
            out.append(last)
        if new:
            self._write(list(new.values()))
            self._by_ref.update(new)
            self._last = last
        return out

    def _write(self, records: list[Record]) -> None:
        lines = b"".join(canonical(vars(r)) + b"\n" for r in records)  # vars: asdict deep-copies each
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # owner-only: it names promoters and their statements (with privacy on, by pseudonym)
        with os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released by closing
            size = os.fstat(f.fileno()).st_size
            if size != self._size:
                self._refusal = (f"{self.path} changed since it was read ({size} bytes, not {self._size}): "
                                 "another writer appended to it; open the log again")
                raise EvidenceBroken(self._refusal)
            try:
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())
            except BaseException as exc:
                first, end = records[0], records[-1]
                which = f"record {first.seq} ({first.ref})" if first is end else f"records {first.seq}-{end.seq}"
                self._refusal = (f"appending {which} to {self.path} failed ({exc!r}); "
                                 "open the log again to check its end")
                raise
        if size == 0:  # a new file: make its name as durable as its first record
            fsync_dir(self.path.parent)
        self._size += len(lines)


def verify_command(data_dir: Path, out: IO[str]) -> int:
    """``tuike evidence verify``: 0 when the log verifies (or there is none yet), 1 when it does not."""
    path = evidence_path(data_dir)
    if not path.exists():
        print(f"No evidence log at {path}: nothing to verify", file=out)
        return 0
    result = verify(path)
    if result.ok:
        print(f"evidence log OK: {result.records} records, last hash {result.last_hash}", file=out)
        return 0
    intact = f"records 1-{result.records} are intact" if result.records else "no record is intact"
    print(f"evidence log {path} does not verify: {result.problem} ({intact})", file=out)
    return 1
