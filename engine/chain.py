"""Promoter chains, versioned by event time.

A promoter's facts are every ``promoter.joined`` (``joins``: ``[ts_ms, event_id, parent]``,
kept sorted) and every ``promoter.banned`` (``bans``: ``[ts_ms, event_id]``). The parent at
time ``t`` is the parent of the latest join at or before ``t`` (before the first join: the
first join's). Because facts can arrive in any order, loops are not refused by whoever
arrives second: among the joins that close a loop, the latest by (ts, event_id) is the one
refused. That rule depends only on the set of facts, so every arrival order agrees.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

Facts = dict  # {"joins": [[ts, eid, parent]], "bans": [[ts, eid]], "v": int}
Lookup = Callable[[str], "Facts | None"]

MAX_WALK = 10_000  # a chain deeper than this is a data error, not a network


def join_at(facts: Facts, ts_ms: int) -> list | None:
    """The join in force at ``ts_ms``: the latest one at or before it, else the first."""
    joins = facts.get("joins") or []
    if not joins:
        return None
    current = joins[0]
    for j in joins:
        if j[0] <= ts_ms:
            current = j
        else:
            break
    return current


def banned_at(facts: Facts | None, ts_ms: int) -> bool:
    """From a ban's ``ts`` on, the promoter earns nothing."""
    return bool(facts) and any(b[0] <= ts_ms for b in facts.get("bans") or ())


@dataclass
class Walk:
    """The ancestry of a promoter at one instant, as far as the facts received reach."""

    nodes: list[str]  # the promoter, its parent, grandparent, … (known or not)
    unknown: str | None = None  # first node whose promoter.joined has not arrived
    consulted: dict[str, int] = field(default_factory=dict)  # promoter → facts version seen
    refused: list[tuple[str, list]] = field(default_factory=list)  # joins cut to break a loop


def walk_up(promoter_id: str, ts_ms: int, lookup: Lookup, *, limit: int = MAX_WALK) -> Walk:
    """Walk parent links at ``ts_ms`` from ``promoter_id`` up to the root (or ``limit`` nodes)."""
    cut: dict[str, list] = {}  # node → its join refused for closing a loop
    while True:
        walk = Walk(nodes=[])
        used: list[list | None] = []
        node: str | None = promoter_id
        loop_at = -1
        while node is not None and len(walk.nodes) < limit:
            if node in walk.nodes:
                loop_at = walk.nodes.index(node)
                break
            walk.nodes.append(node)
            facts = lookup(node)
            walk.consulted[node] = facts.get("v", 0) if facts else 0
            join = join_at(facts, ts_ms) if facts else None
            used.append(join)
            if join is None:
                walk.unknown = node
                break
            node = None if cut.get(node) == join else join[2]
        if loop_at < 0:
            walk.refused = list(cut.items())
            return walk
        # Refuse the latest join of the loop, then walk again.
        members = range(loop_at, len(walk.nodes))
        latest = max(members, key=lambda i: (used[i][0], used[i][1]))  # type: ignore[index]
        cut[walk.nodes[latest]] = used[latest]  # type: ignore[assignment]


def beneficiaries(walk: Walk, ts_ms: int, lookup: Lookup, max_levels: int) -> list[str | None]:
    """Who earns at levels 1..max_levels: the chain's first nodes, minus those banned at ``ts_ms``.

    A promoter earns only once their ``promoter.joined`` has arrived: an unknown node and the
    levels above it are None (parked) until the join arrives and a recheck fills them. A banned
    promoter's level pays nothing; the other levels are unaffected.
    """
    out: list[str | None] = []
    for i in range(max_levels):
        if i >= len(walk.nodes):
            out.append(None)
            continue
        node = walk.nodes[i]
        out.append(None if node == walk.unknown or banned_at(lookup(node), ts_ms) else node)
    return out


def is_upline(candidate: str, walk: Walk) -> bool:
    """True when ``candidate`` is the walked promoter or anywhere above it (so it is in their downline)."""
    return candidate in walk.nodes
