"""How long the ledger's database keeps what it keeps (``tuike retention``; README: retention).

ClickHouse 18.16 has no TTL, so a job deletes what is past its time. The defaults follow the
two laws that pull in opposite directions:
- 网络安全法 §21: network logs are kept for at least six months, so link clicks, dead letters
  (refused requests) and the dashboard's audit log are kept 180, 180 and 365 days;
- PIPL Art. 19: nothing personal longer than needed, so they are deleted after that, and the
  dead letters' monthly data keys are destroyed with them;
- 会计档案管理办法: the ledger, orders, settlements and agreements are accounting records. They are
  never deleted here; with privacy on they hold only pseudonyms, and ``tuike forget`` shuts a
  person's sealed values.

``retention:`` in tuike.yaml sets days per table; 0 keeps a table for ever::

    retention: {clicks: 365, dead_letters: 90, dashboard_audit: 730}
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from engine.config import ConfigError, Problem
from sinks.vault import SqlLedger, wait_for_mutations

DAY_S = 86_400
MIN_DAYS = 180  # 网络安全法 §21: six months of network logs at least
# table -> (its base table, the time column, default days)
TABLES: dict[str, tuple[str, str, int]] = {
    "clicks": ("clicks_raw", "ts", 180),
    "dead_letters": ("dead_letters_raw", "received_at", 180),
    "dashboard_audit": ("dashboard_audit", "at", 365),
}


@dataclass(frozen=True)
class Expired:
    table: str
    before: int  # epoch seconds: rows older than this go
    rows: int


def retention_days(raw: dict | None) -> dict[str, int]:
    """Days per table: the defaults, then ``retention:``. Refuses fewer days than the law's minimum."""
    section = (raw or {}).get("retention") or {}
    if not isinstance(section, dict):
        raise ConfigError([Problem("retention", "expected a mapping such as {clicks: 365, dead_letters: 90}")])
    days = {name: default for name, (_, _, default) in TABLES.items()}
    problems = []
    for name, value in section.items():
        path = f"retention.{name}"
        if name not in TABLES:
            problems.append(Problem(path, f"unknown table; known: {', '.join(TABLES)} (the ledger, orders and "
                                          "settlements are accounting records and are not deleted)"))
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(Problem(path, f"expected a whole number of days (0 = for ever), got {value!r}"))
        elif 0 < value < MIN_DAYS:
            problems.append(Problem(path, f"{value} days is less than the six months (180 days) network logs "
                                          "must be kept (网络安全法 §21)"))
        else:
            days[name] = value
    if problems:
        raise ConfigError(problems)
    return days


def expired(ledger: SqlLedger, days: dict[str, int], now_s: float) -> list[Expired]:
    """What is past its time in each table (nothing is deleted)."""
    out = []
    for name, keep in days.items():
        if keep:
            table, column, _ = TABLES[name]
            before = int(now_s) - keep * DAY_S
            if ledger.query(f"EXISTS TABLE {table}").rows[0][0]:
                rows = ledger.query(f"SELECT count() FROM {table} WHERE {column} < toDateTime({before})").rows[0][0]
                out.append(Expired(name, before, int(rows)))
    return out


def apply_retention(ledger: SqlLedger, found: list[Expired]) -> None:
    """Delete what :func:`expired` found, and destroy the data keys of the dead letters' months
    that are gone, so a copy of those dead letters elsewhere (Kafka, a backup) is shut too."""
    for e in found:
        if not e.rows:
            continue
        table, column, _ = TABLES[e.table]
        ledger.query(f"ALTER TABLE {table} DELETE WHERE {column} < toDateTime({e.before})")
        if e.table == "dead_letters" and ledger.query("EXISTS TABLE person_keys").rows[0][0]:
            month = time.strftime("%Y-%m", time.gmtime(e.before))  # months wholly before the cut
            ledger.query("ALTER TABLE person_keys DELETE WHERE startsWith(owner, 'dead-letters:') "
                         f"AND owner < 'dead-letters:{month}'")
    wait_for_mutations(ledger)
