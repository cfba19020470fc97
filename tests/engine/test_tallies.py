"""Commission tallies (engine/tallies.py): per beneficiary, the running totals equal the
ledger's sums, and a batch of rows counted once whatever is sent again."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dataflow import TALLIES, Message, Output
from engine.tallies import handle_tally
from schemas.events import validate_event
from tests.support.shop import Run
from tests.behaviour.test_properties import CONFIGS, shops
from tuike.lab.generate import generate_shop


def ledger_sums(entries) -> dict[str, dict[str, dict[str, Decimal]]]:
    """Per beneficiary: net by status_after, by kind and by level, zeros dropped."""
    acc: dict = defaultdict(lambda: {"status": defaultdict(Decimal), "kind": defaultdict(Decimal),
                                      "level": defaultdict(Decimal)})
    for e in entries:
        t = acc[e.beneficiary_id]
        t["status"][e.status_after] += e.amount
        t["kind"][e.kind] += e.amount
        t["level"][str(e.level)] += e.amount
    return {who: {part: {k: v for k, v in sums.items() if v != 0} for part, sums in t.items()}
            for who, t in acc.items()}


def tally_sums(tallies: dict[str, dict]) -> dict[str, dict[str, dict[str, Decimal]]]:
    return {who: {part: {k: Decimal(v) for k, v in t[part].items() if Decimal(v) != 0}
                  for part in ("status", "kind", "level")} for who, t in tallies.items()}


def test_a_generated_shop_tallies_every_ledger_row_once():
    events = [e for e in generate_shop(7, events=6_000, duplicates=0.02) if isinstance(e, dict)]
    run = Run([])
    for e in events:
        run.engine.feed(validate_event(e), run.out)
    tallies = run.engine.store.tables[TALLIES]
    assert len(run.entries) > 5_000
    assert tally_sums(tallies) == ledger_sums(run.entries)
    assert sum(t["rows"] for t in tallies.values()) == len(run.entries)
    top = max(tallies, key=lambda who: Decimal(tallies[who]["status"].get("confirmed", "0")))
    assert Decimal(tallies[top]["status"]["confirmed"]) > 0


@settings(max_examples=60, deadline=None)
@given(events=shops(), config=st.sampled_from(CONFIGS))
def test_tallies_equal_the_ledger_for_any_shop(events, config):
    run = Run(events, config)
    assert tally_sums(run.engine.store.tables[TALLIES]) == ledger_sums(run.entries)


def _rows(src, seq, *amounts):
    return Message(TALLIES, "P1", "rows", {"src": src, "seq": seq,
                                           "rows": [["accrue", "pending", 1, a] for a in amounts]}, "e1")


def test_a_batch_sent_again_is_counted_once_and_sources_are_independent():
    state, out = None, Output()
    for msg in (_rows("0", 10, "1.00", "2.50"), _rows("0", 10, "1.00", "2.50"),  # the same batch again
                _rows("1", 3, "4.00"),  # another partition's batch, a lower seq of its own
                _rows("0", 7, "9.99"),  # an earlier batch of partition 0, re-sent after a later one
                _rows("0", 11, "-0.50")):
        state = handle_tally(state, msg, None, out)
    assert state["status"] == {"pending": "7.00"}
    assert state["rows"] == 4
    assert state["hw"] == {"0": 11, "1": 3}
    assert out.duplicates == 2
