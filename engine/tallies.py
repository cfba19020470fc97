"""Commission tallies, keyed by beneficiary: the running totals a promoter sees ("what have I
earned, what is still pending"), folded from the ledger rows written for them.

The order processor's rows reach a beneficiary's tally as one message per batch of rows:
``{"src": source, "seq": n, "rows": [[kind, status_after, level, amount], ...]}``. In streaming
``src`` is the order processor's partition and ``seq`` grows with every batch of that partition,
so a batch sent again after a crash (re-applied from the journal, ``topologies/journal.py``) is
known by ``seq <= hw[src]`` and counted once. The state stays the size of the partition count,
however many orders a popular promoter earns on (a set of order or entry ids would grow with
them). The embedded runner folds rows in the same atomic write as the orders' state and sends
no ``seq``.

State (money as decimal strings)::

    {"status": {status_after: net}, "kind": {kind: net}, "level": {"1": net, ...},
     "rows": n, "hw": {src: seq}}

``status`` is what a promoter's balance shows: the net of every row by the bucket its amount
sits in (pending, confirmed, held, …), equal to the ledger's sums per (beneficiary, status).
"""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Iterable

from engine.dataflow import TALLIES, Context, Message, Output
from schemas.ledger_entry import LedgerEntry


def tally_messages(entries: Iterable[LedgerEntry], cause: str, src: str | None = None,
                   seq: int | None = None) -> list[Message]:
    """One message per beneficiary with their rows, in the order the rows were written."""
    rows: dict[str, list[list]] = defaultdict(list)
    for e in entries:
        rows[e.beneficiary_id].append([e.kind, e.status_after, e.level, str(e.amount)])
    return [Message(TALLIES, who, "rows", {"src": src, "seq": seq, "rows": r}, cause) for who, r in rows.items()]


def handle_tally(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict:
    """Add a batch of rows to the beneficiary's totals, unless this batch was counted before."""
    state = state or {"status": {}, "kind": {}, "level": {}, "rows": 0, "hw": {}}
    src, seq = msg.body["src"], msg.body["seq"]
    if src is not None:
        if seq <= state["hw"].get(src, -1):
            out.duplicates += 1
            return state
        state["hw"][src] = seq
    for kind, status, level, amount in msg.body["rows"]:
        value = Decimal(amount)
        for totals, key in ((state["status"], status), (state["kind"], kind), (state["level"], str(level))):
            totals[key] = str(Decimal(totals.get(key, "0.00")) + value)
    state["rows"] += len(msg.body["rows"])
    return state
