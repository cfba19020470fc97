"""A rejected input: never dropped, always explained (contract §1.1, §4)."""
from __future__ import annotations

from dataclasses import dataclass

from schemas.ledger_entry import entry_id


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_letter_id: str
    source: str  # where it came from: a file name, "http", a topic
    position: str  # line number, offset, request id: enough to find the original
    key: str  # the id the event would have been keyed by, or ""
    raw: str  # the input exactly as received (decoded as UTF-8 with replacement)
    reason: str  # names the field and the problem

    @classmethod
    def of(cls, source: str, position: object, raw: str, reason: str, key: str = "") -> "DeadLetter":
        # Same input at the same place → same id, so re-running a file counts it once.
        return cls(entry_id("dead", source, position, raw), source, str(position), key, raw, reason)
