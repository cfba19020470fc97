"""A person's rights over their data (PIPL): see it (``tuike reveal``), have it deleted
(``tuike forget``); and the key work behind them (``tuike keys rotate``).

What ``forget`` does, and why that is enough (README: personal data):
- it destroys the person's data keys (sinks/vault.py), so every sealed copy of their raw values
  — fact rows, dead letters, Kafka records, journals, backups — can never be read again;
- it clears the ``sealed`` column of their fact rows and deletes their dead letters, which is
  what ClickHouse can delete;
- it keeps the ledger's money, which accounting law (会计档案) requires: those rows hold only
  pseudonyms, which cannot be turned back into the person's ids;
- the state, its changelogs and journals never held the raw values: the engine sees pseudonyms.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.analytics import quote
from sinks.vault import wait_for_mutations
from topologies.protection import Protection

# fact tables with sealed values, and the columns a person's pseudonym can be in
PERSON_COLUMNS = {
    "orders_raw": ("customer_id",),
    "clicks_raw": ("customer_id", "visitor_id"),
    "promoters_raw": ("promoter_id",),
    "agreements_raw": ("promoter_id",),
}


@dataclass
class Forgotten:
    keys: int
    fact_rows: int
    dead_letters: int


def _rows_of(pseudonym: str) -> dict[str, str]:
    return {table: " OR ".join(f"{c} = {quote(pseudonym)}" for c in cols) for table, cols in PERSON_COLUMNS.items()}


def reveal(protection: Protection, person_id: str) -> list[dict]:
    """Every fact row of the person with their sealed values opened (a subject access request)."""
    pseudonym = protection.person(person_id)
    out = []
    for table, where in _rows_of(pseudonym).items():
        for event_id, sealed in protection.vault.ledger.query(
                f"SELECT event_id, sealed FROM {table} FINAL WHERE ({where}) ORDER BY event_id").rows:
            values = orjson.loads(protection.reveal(sealed)) if sealed else {}
            out.append({"table": table.removesuffix("_raw"), "event_id": event_id, "pseudonym": pseudonym, **values})
    return out


def forget(protection: Protection, person_id: str) -> Forgotten:
    """Destroy the person's keys and delete what ClickHouse can delete (module docstring)."""
    ledger, pseudonym = protection.vault.ledger, protection.person(person_id)
    counted = 0
    for table, where in _rows_of(pseudonym).items():
        counted += ledger.query(f"SELECT count() FROM {table} WHERE ({where}) AND sealed != ''").rows[0][0]
        ledger.query(f"ALTER TABLE {table} UPDATE sealed = '' WHERE ({where}) AND sealed != ''")
    key_ids = [r[0] for r in ledger.query(f"SELECT key_id FROM person_keys WHERE owner = {quote(pseudonym)}").rows]
    dead = 0
    if key_ids:
        sealed_by = " OR ".join(f"startsWith(raw, 'tk1.{k}.')" for k in key_ids)
        dead = ledger.query(f"SELECT count() FROM dead_letters_raw WHERE {sealed_by}").rows[0][0]
        ledger.query(f"ALTER TABLE dead_letters_raw DELETE WHERE {sealed_by}")
    keys = protection.vault.forget(pseudonym)
    wait_for_mutations(ledger)
    return Forgotten(keys, int(counted), int(dead))
