"""The embedded runner: records in order through the engine into the ledger, no Kafka.

Records are admitted (:func:`schemas.routes.admit`), turned into facts and fed to the engine one
by one in file order (deterministic, so a re-run derives the same rows with the same ids). Every
``batch_size`` records the :class:`EmbeddedCheckpoint` makes the batch durable: the ledger first,
then the state — at-least-once into an idempotent sink.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from engine.config import Config
from engine.dataflow import Output
from engine.runner import Engine
from schemas.dead_letter import DeadLetter
from schemas.facts import facts_of
from schemas.records import Record
from schemas.routes import admit, reason_class
from sinks import Batch, Ledger
from topologies.protection import (
    Protection,
    PseudonymsChanged,
    privacy_mark,
    protection_for,
    refuse_other_pseudonyms,
)
from topologies.rocks_state import RocksState
from topologies.state_cache import META, StateCache

CACHE_KEEP = 50_000  # state values kept cached from one batch to the next


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


class StateRefusal(ValueError):
    """The state cannot be used with this ledger or these rules; the message says what to do."""


class StateForOtherLedger(StateRefusal):
    """The state says which rows were written; they were written to another ledger."""


class RulesChangedMidBatch(StateRefusal):
    """The last run stopped between writing a batch's ledger rows and its state, and the rules now
    would date those rows differently."""


class EmbeddedCheckpoint:
    """The embedded runner's durable order, one batch at a time:

    1. a mark that the batch is unfinished, with the terms that date its rows — on disk before
       the ledger is written;
    2. the ledger: the batch's rows, facts and dead letters (one idempotent insert per table);
    3. the state: every key the batch touched, and the mark cleared, in one atomic write.

    A crash after 2 and before 3 redoes the batch from the old state: the same rows with the same
    ids, which the ledger counts once — but only under the same terms (:meth:`_check_unfinished`).
    Opening it refuses state derived for another ledger (:meth:`_check_same_ledger`)."""

    def __init__(self, state: RocksState, cache: StateCache, ledger: Ledger, config: Config, data_dir: Path):
        self.state, self.cache, self.ledger, self.data_dir = state, cache, ledger, data_dir
        self.terms = self._terms(config)
        self._check_same_ledger()
        self._check_unfinished(config)

    @staticmethod
    def _terms(config: Config) -> dict:
        """What dates a ledger row besides its event: a confirmation is the completion + hold_days.
        The ledger's key leads with the row's time, so a row re-derived at another time would be a
        second row, not a copy of the first."""
        return {"hold_days": config.hold_days}

    def _check_same_ledger(self) -> None:
        """Refuse to run state derived for one ledger against another: the rows it already wrote
        would never reach the new one (the state would call them duplicates)."""
        identity = self.ledger.identity
        known = self.cache.get(META, "ledger")
        if known is None:
            self.cache.put(META, "ledger", identity)
        elif known != identity:
            raise StateForOtherLedger(
                f"the state in {self.data_dir / 'state'} belongs to the ledger {known}, not {identity}: rows it "
                f"already derived would never reach {identity}. Use another --data-dir for {identity} (it "
                f"re-derives everything from the events), or run against {known} again")

    def _check_unfinished(self, config: Config) -> None:
        """Refuse to redo a batch whose rows reached the ledger under other ``hold_days``: the redo
        would write its confirmations at other times, and the views would count both."""
        left = self.cache.get(META, "unfinished")
        if left and left != self.terms:
            raise RulesChangedMidBatch(
                f"the last run into {self.data_dir} stopped after writing a batch to the ledger with hold_days "
                f"{left['hold_days']}, and this configuration says {config.hold_days}: redoing it would date its "
                f"confirmations differently and count them twice. Run the same events again with hold_days: "
                f"{left['hold_days']} to finish that batch, then change hold_days")

    def commit(self, batch: Batch) -> None:
        if batch.entries and self.cache.get(META, "unfinished") != self.terms:
            self.state.write_now(META, "unfinished", self.terms)  # 1.
        self.ledger.write(batch)  # 2.
        self.cache.put(META, "unfinished", None)
        self.state.write(self.cache.changes())  # 3. only after the ledger holds the rows
        self.cache.written()


def keeps_state_for(data_dir: Path, identity: str) -> bool:
    """Whether ``data_dir`` holds embedded state derived for the ledger ``identity``."""
    if not (data_dir / "state").is_dir():
        return False
    state = RocksState(data_dir / "state")
    try:
        return StateCache(state.read).get(META, "ledger") == identity
    finally:
        state.close()


class EmbeddedPipeline:
    """The engine over RocksDB state and a ledger, fed records in order; :meth:`flush` makes what
    was fed durable (:class:`EmbeddedCheckpoint`). Used by ``tuike run`` (a file, flushed every
    batch) and ``tuike serve`` (each request's events, flushed before the answer)."""

    def __init__(self, config: Config, data_dir: Path, ledger: Ledger):
        self.stats = RunStats()
        self.state = RocksState(data_dir / "state")
        self.cache = StateCache(self.state.read, keep=CACHE_KEEP)
        try:
            self.checkpoint = EmbeddedCheckpoint(self.state, self.cache, ledger, config, data_dir)
        except StateRefusal:
            self.state.close()
            raise
        self.protection = self._protection(config, ledger)
        self.engine = Engine(config, self.cache)
        self.waiting = self.cache.get(META, "parked") or 0  # events parked by this and earlier runs
        self._reset()

    def _protection(self, config: Config, ledger: Ledger) -> Protection | None:
        """Privacy as configured; refused when the state was built with other pseudonyms (or none)."""
        protection = protection_for(config.raw, ledger)
        mark, built = privacy_mark(protection), self.cache.get(META, "pseudonyms")
        if built is None:
            self.cache.put(META, "pseudonyms", mark)
            return protection
        try:
            refuse_other_pseudonyms(built, mark, "the state in this data dir",
                                    "Start from a new --data-dir and ledger database and run the events again")
        except PseudonymsChanged:
            self.state.close()
            raise
        return protection

    def _reset(self) -> None:
        self.out, self.facts, self.dead = Output(), {}, []  # type: tuple[Output, dict[str, list[dict]], list[DeadLetter]]

    def feed(self, rec: Record) -> None:
        """Admit one record and run it through the engine (nothing durable until :meth:`flush`)."""
        stats = self.stats
        stats.read += 1
        admitted = admit(rec)
        if type(admitted) is DeadLetter:
            stats.rejected += 1
            stats.rejected_reasons[reason_class(admitted.reason)] += 1
            self.dead.append(admitted)
            return
        event, sealed = admitted.event, ""  # type: ignore[union-attr]
        if self.protection is not None:
            event, sealed = self.protection.protect(event)
        stats.accepted += 1
        for table, row in facts_of(event, sealed):
            self.facts.setdefault(table, []).append(row)
        self.engine.feed(event, self.out)
        for table, row in self.out.facts:  # rows the engine derived (fraud_scores)
            self.facts.setdefault(table, []).append(row)
        self.out.facts.clear()

    def reject(self, dead: DeadLetter) -> None:
        """Keep a refusal made before the engine (a gateway's bad signature, …) with the next flush."""
        self.dead.append(dead)

    def flush(self) -> None:
        out, stats = self.out, self.stats
        self.waiting += out.parked
        self.cache.put(META, "parked", self.waiting)
        dead = self.dead + out.dead_letters
        if self.protection is not None:
            dead = [self.protection.seal_dead_letter(d) for d in dead]
            self.protection.flush()  # the data keys before what they sealed
        self.checkpoint.commit(Batch(out.entries, self.facts, dead))
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
        self.cache.discard()
        if self.protection is not None:
            self.protection.discard()
        self.waiting = self.cache.get(META, "parked") or 0
        self._reset()

    def close(self) -> None:
        """Close the state. What was fed since the last :meth:`flush` is dropped: it never reached
        the ledger, so its state must not be kept either."""
        self.state.close()


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
    finally:
        pipeline.close()
    stats.seconds = time.perf_counter() - started
    if progress:
        progress(stats)
    return stats
