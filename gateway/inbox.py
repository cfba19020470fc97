"""The embedded gateway's inbox: an append-only, fsynced log of the requests it acknowledged.

Why: ``tuike serve`` (embedded) answers a webhook once its delivery is on local disk — one
``fdatasync`` for every request that arrived meanwhile (group fsync) — instead of after an engine
run and a ledger flush. A consumer applies the inbox to the pipeline in order and keeps the
sequence number it reached with the state, so a restart replays what follows it: a request
answered 200 survives a SIGKILL, and a replay counts once (the engine's deterministic ids, the
idempotent ledger).

Layout: ``<dir>/<first seq, 20 digits>.log`` segments, each a run of records::

    length u32 | crc32 u32 (of seq and payload) | seq u64   (little-endian)   then `length` bytes

A record cut short or failing its CRC is the torn tail of a crash (it was never acknowledged):
reading stops there and opening the inbox truncates it away. Segments are rotated at
``segment_bytes`` and deleted once every record in them is applied (:meth:`Inbox.release`).
One thread appends; another may release; both take :attr:`Inbox.lock`.
"""
from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterator

from topologies.durable import fsync_dir

HEADER = struct.Struct("<IIQ")  # length, crc32, seq
SEQ = struct.Struct("<Q")
SUFFIX = ".log"
SEGMENT_BYTES = 64 * 1024 * 1024
MAX_RECORD = 256 * 1024 * 1024  # a longer length is garbage, not a record


def _crc(seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(SEQ.pack(seq)))


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def read_segment(path: Path) -> tuple[list[tuple[int, bytes]], int]:
    """The whole records of one segment file, in order, and the byte offset where they end (a
    torn or corrupt tail starts there)."""
    data = path.read_bytes()
    records: list[tuple[int, bytes]] = []
    at = 0
    while at + HEADER.size <= len(data):
        length, crc, seq = HEADER.unpack_from(data, at)
        end = at + HEADER.size + length
        if length > MAX_RECORD or end > len(data):
            break
        payload = data[at + HEADER.size:end]
        if _crc(seq, payload) != crc:
            break
        records.append((seq, payload))
        at = end
    return records, at


class Inbox:
    """Sequence-numbered payloads appended durably to segment files in ``directory``.

    ``applied`` is the last sequence number the reader already holds elsewhere (the state): new
    numbers continue after it even if the segments holding it were deleted."""

    def __init__(self, directory: Path, *, applied: int = 0, segment_bytes: int = SEGMENT_BYTES):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.lock = threading.Lock()
        segments = self.segments()
        last_seq, self._fd, self._size = applied, -1, 0
        if segments:
            first, path = segments[-1]
            records, good_end = read_segment(path)
            if good_end < path.stat().st_size:  # a torn tail: never acknowledged, cut it off
                with open(path, "r+b") as f:
                    f.truncate(good_end)
                    os.fsync(f.fileno())
            last_seq = max(last_seq, records[-1][0] if records else first - 1)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._size = good_end
            self._active_first = first
        self.next_seq = last_seq + 1
        if self._fd < 0:
            self._open_segment(self.next_seq)

    def segments(self) -> list[tuple[int, Path]]:
        """(first seq, path) of every segment, oldest first."""
        found = []
        for p in self.dir.glob(f"*{SUFFIX}"):
            stem = p.name[:-len(SUFFIX)]
            if stem.isdigit():
                found.append((int(stem), p))
        return sorted(found)

    def _open_segment(self, first_seq: int) -> None:
        path = self.dir / _segment_name(first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fsync_dir(self.dir)  # the new file's name is durable before a record in it is acknowledged
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._size, self._active_first = fd, 0, first_seq

    def append(self, payloads: list[bytes]) -> int:
        """Write the payloads as the next records and fsync once; the last seq written. After a
        failure nothing of the call counts: the file is cut back and the numbers are reused."""
        with self.lock:
            if self._size >= self.segment_bytes:
                self._open_segment(self.next_seq)
            seq = self.next_seq
            parts = []
            for payload in payloads:
                parts.append(HEADER.pack(len(payload), _crc(seq, payload), seq))
                parts.append(payload)
                seq += 1
            blob = b"".join(parts)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(self._fd, view):]
                os.fdatasync(self._fd)
            except BaseException:
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass  # what stays is not acknowledged; a replay of it counts once anyway
                raise
            self._size += len(blob)
            self.next_seq = seq
            return seq - 1

    def replay(self, after: int) -> Iterator[tuple[int, bytes]]:
        """Every record with a sequence number above ``after``, in order (a torn tail ends a segment)."""
        segments = self.segments()
        for i, (first, path) in enumerate(segments):
            if i + 1 < len(segments) and segments[i + 1][0] <= after + 1:
                continue  # wholly applied
            records, _ = read_segment(path)
            for seq, payload in records:
                if seq > after:
                    yield seq, payload

    def release(self, applied: int) -> int:
        """Delete the segments whose every record is at or below ``applied`` (never the one being
        appended to); how many were deleted."""
        with self.lock:
            segments = self.segments()
            gone = 0
            for (first, path), (next_first, _) in zip(segments, segments[1:]):
                if next_first <= applied + 1 and first != self._active_first:
                    path.unlink(missing_ok=True)
                    gone += 1
            return gone

    def close(self) -> None:
        with self.lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
