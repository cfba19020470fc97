"""The embedded pipeline: an event file through the engine into the ledger, no Kafka.

Records are validated, turned into facts and fed to the engine one by one in file order
(deterministic, so a re-run derives the same rows with the same ids). Every ``batch_size``
records the batch's ledger rows, facts and dead letters go to the sink first, then the state
is flushed: at-least-once into an idempotent sink.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from engine.config import Config
from engine.dataflow import Output
from schemas.dead_letter import DeadLetter
from engine.runner import Engine
from schemas.facts import facts_of
from sinks import Batch, Ledger

from schemas.records import Record, parse_record
from topologies.rocks_state import RocksStore

KEY_FIELDS = ("order_id", "customer_id", "promoter_id", "click_id")


@dataclass
class RunStats:
    read: int = 0
    accepted: int = 0
    rejected: int = 0  # invalid input: bad JSON, unknown type, bad field (exit 2)
    refused: int = 0  # valid events the rules refused: self-binds, loops, second payments (dead letters)
    duplicates: int = 0
    ledger_rows: int = 0
    parked: int = 0  # events (of this and earlier runs) still waiting for their order.paid
    seconds: float = 0.0
    rejected_reasons: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


def reason_class(reason: str) -> str:
    """A short class of a rejection reason for summaries: 'order.paid: items[0].price'."""
    head, _, rest = reason.partition(": ")
    field_name = rest.split(":", 1)[0] if rest else ""
    return f"{head}: {field_name}" if field_name and len(field_name) < 40 else head


class StateRefusal(ValueError):
    """The state cannot be used with this ledger or these rules; the message says what to do."""


class StateForOtherLedger(StateRefusal):
    """The state says which rows were written; they were written to another ledger."""


def _check_same_ledger(store: RocksStore, identity: str, data_dir: Path) -> None:
    """Refuse to run state derived for one ledger against another: the rows it already wrote
    would never reach the new one (the state would call them duplicates)."""
    known = store.get("meta", "ledger")
    if known is None:
        store.put("meta", "ledger", identity)
    elif known != identity:
        raise StateForOtherLedger(
            f"the state in {data_dir / 'state'} belongs to the ledger {known}, not {identity}: rows it already "
            f"derived would never reach {identity}. Use another --data-dir for {identity} (it re-derives "
            f"everything from the events), or run against {known} again")


class RulesChangedMidBatch(StateRefusal):
    """The last run stopped between writing a batch's ledger rows and its state, and the rules now
    would date those rows differently."""


def _unfinished_terms(config: Config) -> dict:
    """What dates a ledger row besides its event: a confirmation is the completion + hold_days.
    The ledger's key leads with the row's time, so a row re-derived at another time would be a
    second row, not a copy of the first."""
    return {"hold_days": config.hold_days}


def _check_unfinished_batch(store: RocksStore, config: Config, data_dir: Path) -> None:
    """Refuse to redo a batch whose rows reached the ledger under other ``hold_days``: the redo
    would write its confirmations at other times, and the views would count both."""
    left = store.get("meta", "unfinished")
    if left and left != _unfinished_terms(config):
        raise RulesChangedMidBatch(
            f"the last run into {data_dir} stopped after writing a batch to the ledger with hold_days "
            f"{left['hold_days']}, and this configuration says {config.hold_days}: redoing it would date its "
            f"confirmations differently and count them twice. Run the same events again with hold_days: "
            f"{left['hold_days']} to finish that batch, then change hold_days")


def keeps_state_for(data_dir: Path, identity: str) -> bool:
    """Whether ``data_dir`` holds embedded state derived for the ledger ``identity``."""
    if not (data_dir / "state").is_dir():
        return False
    store = RocksStore(data_dir / "state")
    try:
        return store.get("meta", "ledger") == identity
    finally:
        store.close(flush=False)


def _key_of(obj: dict | None) -> str:
    for name in KEY_FIELDS:
        if obj and isinstance(obj.get(name), str):
            return obj[name]
    return ""


class EmbeddedPipeline:
    """The engine over RocksDB state and a ledger, fed records in order; :meth:`flush` makes what
    was fed durable (the ledger first, then the state). Used by ``tuike run`` (a file, flushed
    every batch) and ``tuike serve`` (each request's events, flushed before the answer)."""

    def __init__(self, config: Config, data_dir: Path, ledger: Ledger):
        self.ledger = ledger
        self.stats = RunStats()
        self.store = RocksStore(data_dir / "state")
        try:
            _check_same_ledger(self.store, ledger.identity, data_dir)
            _check_unfinished_batch(self.store, config, data_dir)
        except StateRefusal:
            self.store.close(flush=False)
            raise
        self.terms = _unfinished_terms(config)
        self.engine = Engine(config, self.store)
        self.waiting = self.store.get("meta", "parked") or 0  # events parked by this and earlier runs
        self._reset()

    def _reset(self) -> None:
        self.out, self.facts, self.dead = Output(), {}, []  # type: tuple[Output, dict[str, list[dict]], list[DeadLetter]]

    def feed(self, rec: Record) -> None:
        """Validate one record and run it through the engine (nothing durable until :meth:`flush`)."""
        stats = self.stats
        stats.read += 1
        parsed = parse_record(rec)
        if isinstance(parsed, str):
            stats.rejected += 1
            stats.rejected_reasons[reason_class(parsed)] += 1
            self.dead.append(DeadLetter.of(rec.source, rec.position, rec.raw, parsed, _key_of(rec.obj)))
            return
        stats.accepted += 1
        for table, row in facts_of(parsed):
            self.facts.setdefault(table, []).append(row)
        self.engine.feed(parsed, self.out)
        for table, row in self.out.facts:  # rows the engine derived (fraud_scores)
            self.facts.setdefault(table, []).append(row)
        self.out.facts.clear()

    def reject(self, dead: DeadLetter) -> None:
        """Keep a refusal made before the engine (a gateway's bad signature, …) with the next flush."""
        self.dead.append(dead)

    def flush(self) -> None:
        out, stats = self.out, self.stats
        if out.entries and self.store.get("meta", "unfinished") != self.terms:
            self.store.put_now("meta", "unfinished", self.terms)  # on disk before the rows are in the ledger
        self.ledger.write(Batch(out.entries, self.facts, self.dead + out.dead_letters))
        self.waiting += out.parked
        self.store.put("meta", "parked", self.waiting)
        self.store.put("meta", "unfinished", None)
        self.store.flush()  # only after the sink holds the rows
        stats.ledger_rows += len(out.entries)
        stats.refused += len(out.dead_letters)
        for d in out.dead_letters:
            stats.rejected_reasons[reason_class(d.reason)] += 1
        stats.duplicates += out.duplicates
        stats.parked = self.waiting
        self._reset()

    def discard(self) -> None:
        """After a failed :meth:`flush`: forget what was fed since the last good one, state included
        (its rows are not in the ledger, so the state must not say they were written)."""
        self.store.discard()
        self.waiting = self.store.get("meta", "parked") or 0
        self._reset()

    def close(self, *, keep: bool = True) -> None:
        """Close the state; ``keep=False`` drops what was fed since the last flush (it never
        reached the ledger, so its state must not be kept either)."""
        self.store.close(flush=keep)


def run_events(
    records: Iterable[Record],
    *,
    config: Config,
    data_dir: Path,
    ledger: Ledger,
    progress: Callable[[RunStats], None] | None = None,
    batch_size: int = 20_000,
) -> RunStats:
    """Process records in order; return what happened. Safe to run again on the same records."""
    started = time.perf_counter()
    pipeline = EmbeddedPipeline(config, data_dir, ledger)
    stats = pipeline.stats
    try:
        for rec in records:
            pipeline.feed(rec)
            if stats.read % batch_size == 0:
                pipeline.flush()
                stats.seconds = time.perf_counter() - started
                if progress:
                    progress(stats)
        pipeline.flush()
    except BaseException:
        pipeline.close(keep=False)
        raise
    pipeline.close()
    stats.seconds = time.perf_counter() - started
    if progress:
        progress(stats)
    return stats
