"""Promoter chains, versioned by event time.

A promoter's facts are every ``promoter.joined`` (``joins``: ``[ts_ms, event_id, parent]``,
kept sorted) and every ``promoter.banned`` (``bans``: ``[ts_ms, event_id]``).

- A join is *refused* when, at its own time, its parent's chain already leads back to the
  promoter, counting only the joins that came before it by (ts, event_id). That depends only
  on the set of facts, never on which arrived first, and a refused join never takes effect.
- The parent at time ``t`` is the parent of the latest valid join at or before ``t``. Before
  their first join, and when all their joins were refused, a promoter has no parent.
- Chains are followed up to ``MAX_DEPTH`` promoters: only three levels are ever paid, and a
  deeper walk would only cost time (and Python stack) on pathological data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Facts = dict  # {"joins": [[ts, eid, parent]], "bans": [[ts, eid]], "v": int}
Lookup = Callable[[str], "Facts | None"]

MAX_DEPTH = 64  # promoters followed up a chain (loop checks and downline refusals included)
_UNKNOWN = object()


def _order(join: list) -> tuple:
    return join[0], join[1]


class ChainView:
    """Read-only access to promoter facts for one computation: memoizes join validity, records reads."""

    def __init__(self, lookup: Lookup):
        self.lookup = lookup
        self.consulted: dict[str, int] = {}  # promoter → facts version seen (for the watchers)
        self._facts: dict[str, Facts | None] = {}
        self._valid: dict[tuple[str, str], bool] = {}

    def facts(self, promoter_id: str) -> Facts | None:
        try:
            return self._facts[promoter_id]
        except KeyError:
            found = self._facts[promoter_id] = self.lookup(promoter_id)
            self.consulted[promoter_id] = found["v"] if found else 0
            return found

    def valid(self, promoter_id: str, join: list, depth: int = 0) -> bool:
        """Whether ``join`` of ``promoter_id`` takes effect (it does not close a loop at its time).

        Judging a join walks its parent's chain, which judges the joins found there: ``depth``
        bounds that nesting at ``MAX_DEPTH`` (deeper joins are taken as valid).
        """
        key = (promoter_id, join[1])
        ok = self._valid.get(key)
        if ok is None:
            if depth >= MAX_DEPTH:
                return True
            self._valid[key] = True  # joins before this one cannot depend on it: no real recursion
            ok = self._valid[key] = join[2] is None or promoter_id not in self._ancestors(
                join[2], join[0], _order(join), depth + 1)
        return ok

    def parent_at(self, promoter_id: str, ts_ms: int, before: tuple | None = None, depth: int = 0) -> object:
        """The parent in force at ``ts_ms`` (None for a root), or ``_UNKNOWN`` if no join has arrived.

        With ``before``, only joins ordered before it count (to judge a join at its own time).
        """
        facts = self.facts(promoter_id)
        if not facts or not facts["joins"]:
            return _UNKNOWN
        current = None
        for join in facts["joins"]:
            if join[0] > ts_ms or (before is not None and _order(join) >= before):
                break
            if self.valid(promoter_id, join, depth):
                current = join
        return current[2] if current else None

    def _ancestors(self, start: str, ts_ms: int, before: tuple, depth: int) -> list[str]:
        nodes: list[str] = []
        node: object = start
        while isinstance(node, str) and node not in nodes and len(nodes) < MAX_DEPTH:
            nodes.append(node)
            node = self.parent_at(node, ts_ms, before, depth)
        return nodes


def first_ban(facts: Facts | None) -> list | None:
    """The promoter's earliest ban ``[ts_ms, event_id]``, or None."""
    bans = facts.get("bans") if facts else None
    return bans[0] if bans else None


@dataclass
class Walk:
    """The ancestry of a promoter at one instant, as far as the facts received reach."""

    nodes: list[str]  # the promoter, its parent, grandparent, … (the last may be unknown)
    unknown: str | None = None  # first node whose promoter.joined has not arrived


def walk_up(promoter_id: str, ts_ms: int, view: ChainView) -> Walk:
    """Walk valid parent links at ``ts_ms`` from ``promoter_id`` up to the root."""
    walk = Walk(nodes=[])
    node: object = promoter_id
    while isinstance(node, str) and node not in walk.nodes and len(walk.nodes) < MAX_DEPTH:
        walk.nodes.append(node)
        node = view.parent_at(node, ts_ms)
        if node is _UNKNOWN:
            walk.unknown = walk.nodes[-1]
    return walk


def beneficiaries(walk: Walk, ts_ms: int, view: ChainView, max_levels: int) -> tuple[list[str | None], list[list | None]]:
    """Who earns at levels 1..max_levels, and from when each one's money is held (a later ban).

    A promoter earns only once their ``promoter.joined`` has arrived: an unknown node and the
    levels above it are None (parked) until the join arrives and a recheck fills them. A
    promoter banned at or before ``ts_ms`` earns nothing at their level; one banned later keeps
    the commission but it is held from the ban on. The other levels are unaffected.
    """
    levels: list[str | None] = []
    holds: list[list | None] = []  # per level: the ban [ts_ms, event_id] that holds its money, or None
    for i in range(max_levels):
        node = walk.nodes[i] if i < len(walk.nodes) and walk.nodes[i] != walk.unknown else None
        ban = first_ban(view.facts(node)) if node is not None else None
        if ban is not None and ban[0] <= ts_ms:
            node, ban = None, None
        levels.append(node)
        holds.append(ban)
    return levels, holds


def is_upline(candidate: str, walk: Walk) -> bool:
    """True when ``candidate`` is the walked promoter or anywhere above it (so it is in their downline)."""
    return candidate in walk.nodes
