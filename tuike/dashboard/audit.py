"""The dashboard's audit log (``dashboard_audit``, schemas/audit.sql): who saw what, when, from where.

A row per page view, per panel query and per export, written on the ledger's thread before the
answer is sent: if it cannot be written the request is refused (503), so nothing is seen
unrecorded. An auto-refresh that repeats a session's filters within :data:`REPEAT_SECONDS` is
the same query and is not written again (a tab refreshes every 2 s). Refused tokens are not
logged: an anonymous request must not cause a durable write.

The table is created on first use from schemas/audit.sql (``CREATE TABLE IF NOT EXISTS``, the same
statement on ClickHouse 18.16 and chDB); rows go in with ``INSERT … SELECT`` of literals, which
both engines take through :meth:`Ledger.query`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

import orjson

from schemas.analytics import quote

TABLE = "dashboard_audit"
COLUMNS = ("at", "shop_id", "token_id", "action", "target", "detail", "client_ip", "status")
REPEAT_SECONDS = 60


class AuditUnavailable(Exception):
    """The audit row could not be written; the message names the ledger's error (503)."""


@dataclass(frozen=True)
class Entry:
    at: int
    shop_id: str
    token_id: str
    action: str  # view | query | export | export-raw
    target: str  # the page, "panels", or the exported table
    detail: dict
    client_ip: str
    status: int = 200

    def values(self) -> str:
        detail = orjson.dumps(self.detail, option=orjson.OPT_SORT_KEYS).decode()
        texts = (self.shop_id, self.token_id, self.action, self.target, detail, self.client_ip)
        return f"toDateTime({int(self.at)}), " + ", ".join(quote(t) for t in texts) + f", {int(self.status)}"


def audit_statements(database: str) -> list[str]:
    """schemas/audit.sql for one database: comments removed, one statement a string."""
    text = resources.files("schemas").joinpath("audit.sql").read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.replace("{db}", database).split(";") if s.strip()]


class AuditLog:
    """Writes entries through ``call(fn, *args)`` (the ledger's thread)."""

    def __init__(self, ledger: Any, call: Callable[..., Any], clock: Callable[[], float] = time.time):
        self.ledger, self.call, self.clock = ledger, call, clock
        self.ready = False
        self.recent: dict[tuple, float] = {}

    def repeated(self, key: tuple) -> bool:
        """Whether ``key`` (session and filters) was logged less than :data:`REPEAT_SECONDS` ago."""
        now = time.monotonic()
        for k in [k for k, t in self.recent.items() if now - t >= REPEAT_SECONDS]:
            del self.recent[k]
        return key in self.recent

    async def record(self, entry: Entry, repeat_key: tuple | None = None) -> None:
        if repeat_key is not None and self.repeated(repeat_key):
            return
        try:
            await self.call(self._write, entry)
        except Exception as exc:  # any ledger failure: the request is refused, never served unlogged
            raise AuditUnavailable(f"the dashboard audit log cannot be written ({str(exc).strip()[:300]}): "
                                   "nothing is shown until it can") from None
        if repeat_key is not None:
            self.recent[repeat_key] = time.monotonic()

    def _write(self, entry: Entry) -> None:
        database = self.ledger.database
        if not self.ready:
            for stmt in audit_statements(database):
                self.ledger.query(stmt)
            self.ready = True
        self.ledger.query(f"INSERT INTO {database}.{TABLE} ({', '.join(COLUMNS)}) SELECT {entry.values()}")
