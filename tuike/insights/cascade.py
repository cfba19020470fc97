"""Share cascades (传播路径): who reached whom, as trees, and their statistics.

A cascade is a tree of share events: each node (a promoter or a customer reached through a
share) has the node that reached it as its parent; a node with no parent, or whose parent is not
(yet) known, is the root of a cascade of its own.

- :class:`CascadeIndex` takes the share records one at a time, in any order. A node that
  arrives before its parent waits under the parent's id and is attached when the parent comes:
  the final trees, and every statistic, depend only on the set of records, never on the order
  (``tests/tuike/insights/test_propagation.py`` checks it over permutations).
- Downstream reach and conversions of every node are kept up to date on each ``add`` (a walk up
  the ancestors, O(depth)), so a streaming caller can read a promoter's downline at any time;
  per-cascade statistics (depth, breadth, …) are computed when asked.
- Pure: no I/O, no clock. Times are numbers (seconds) the caller gives.

Depth counts edges from the root (the root has depth 0); breadth is the largest number of nodes
at one depth; downstream counts exclude the node itself (a promoter's downline, not the promoter).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Sequence

NodeId = str


@dataclass(frozen=True)
class Share:
    """One share record: ``node`` was reached by ``parent`` (None: nobody, a root) at ``ts``."""

    node: NodeId
    parent: NodeId | None
    ts: float
    converted: bool = False
    commission: Decimal = Decimal(0)


@dataclass(frozen=True)
class Member:
    """A node as placed in its cascade."""

    node: NodeId
    parent: NodeId | None  # None for the root (also when its recorded parent is unknown)
    ts: float
    depth: int
    converted: bool
    commission: Decimal


@dataclass(frozen=True)
class CascadeStats:
    root: NodeId
    size: int  # reach of the cascade: its nodes, root included
    depth: int  # deepest node's distance from the root (root alone: 0)
    breadth: int  # most nodes at one depth
    conversions: int  # converted nodes, root included
    commission: Decimal  # sum over the nodes
    start: float  # earliest node time (normally the root's)
    end: float  # latest node time


@dataclass(frozen=True)
class NodeStats:
    node: NodeId
    reach: int  # descendants (the node itself excluded)
    conversions: int  # converted descendants


class CascadeIndex:
    """Cascades built incrementally from share records, independent of arrival order."""

    def __init__(self) -> None:
        self._shares: dict[NodeId, Share] = {}
        self._children: dict[NodeId, set[NodeId]] = {}  # also under parents not seen yet
        self._reach: dict[NodeId, int] = {}
        self._down_conv: dict[NodeId, int] = {}

    def __len__(self) -> int:
        return len(self._shares)

    def __contains__(self, node: object) -> bool:
        return node in self._shares

    def add(self, node: NodeId, parent: NodeId | None, ts: float, converted: bool = False,
            commission: Decimal = Decimal(0)) -> None:
        """Place one record. The same record again is a no-op (redelivery); a different record
        for a known node, a self-parent or a parent link that would close a loop raise ValueError
        (each node is reached once, and a cascade is a tree)."""
        share = Share(node, parent, ts, converted, commission)
        known = self._shares.get(node)
        if known is not None:
            if known == share:
                return
            raise ValueError(f"node {node!r} already recorded as {known}, not {share}")
        if parent == node:
            raise ValueError(f"node {node!r} cannot be its own parent")
        up = parent
        while up is not None and up in self._shares:
            up = self._shares[up].parent
            if up == node:
                raise ValueError(f"parent {parent!r} of {node!r} is already downstream of it: a loop")
        self._shares[node] = share
        kids = self._children.get(node, ())
        reach = sum(self._reach[k] + 1 for k in kids)
        conv = sum(self._down_conv[k] + self._shares[k].converted for k in kids)
        self._reach[node], self._down_conv[node] = reach, conv
        if parent is not None:
            self._children.setdefault(parent, set()).add(node)
            for up in self._ancestors(parent, inclusive=True):
                self._reach[up] += reach + 1
                self._down_conv[up] += conv + converted

    def _ancestors(self, node: NodeId, inclusive: bool) -> list[NodeId]:
        """``node`` (if ``inclusive``) and the known nodes above it, stopping at an unknown parent."""
        out: list[NodeId] = []
        share = self._shares.get(node)
        if share is not None and inclusive:
            out.append(node)
        while share is not None and share.parent is not None and share.parent in self._shares:
            out.append(share.parent)
            share = self._shares[share.parent]
        return out

    def parent_of(self, node: NodeId) -> NodeId | None:
        """The parent in the tree: None for a root, also when the recorded parent is unknown."""
        parent = self._shares[node].parent
        return parent if parent in self._shares else None

    def root_of(self, node: NodeId) -> NodeId:
        if node not in self._shares:
            raise KeyError(node)
        chain = self._ancestors(node, inclusive=True)
        return chain[-1]

    def roots(self) -> list[NodeId]:
        """Every cascade's root, by (root time, id)."""
        return sorted((n for n in self._shares if self.parent_of(n) is None),
                      key=lambda n: (self._shares[n].ts, n))

    def node_stats(self, node: NodeId) -> NodeStats:
        return NodeStats(node, self._reach[node], self._down_conv[node])

    def edges(self) -> list[tuple[NodeId, NodeId]]:
        """(parent, child) of every placed link, sorted: the share graph."""
        return sorted((p, n) for n in self._shares if (p := self.parent_of(n)) is not None)

    def nodes(self) -> list[NodeId]:
        return sorted(self._shares)

    def share(self, node: NodeId) -> Share:
        return self._shares[node]

    def members(self, root: NodeId) -> list[Member]:
        """The cascade under ``root``, by (depth, time, id)."""
        if root not in self._shares or self.parent_of(root) is not None:
            raise KeyError(f"{root!r} is not a root")
        out: list[Member] = []
        level, depth = [root], 0
        while level:
            for n in level:
                s = self._shares[n]
                out.append(Member(n, self.parent_of(n), s.ts, depth, s.converted, s.commission))
            nxt = [k for n in level for k in self._children.get(n, ())]
            level = sorted(nxt, key=lambda k: (self._shares[k].ts, k))
            depth += 1
        return out

    def stats(self, root: NodeId) -> CascadeStats:
        return cascade_stats(self.members(root))

    def all_stats(self) -> list[CascadeStats]:
        """Statistics of every cascade, by (start, root)."""
        return [self.stats(r) for r in self.roots()]


def cascade_stats(members: Sequence[Member]) -> CascadeStats:
    """Size, depth, breadth, conversions, commission and time span of one cascade's members."""
    per_depth = Counter(m.depth for m in members)
    root = next(m.node for m in members if m.depth == 0)
    return CascadeStats(
        root=root,
        size=len(members),
        depth=max(per_depth),
        breadth=max(per_depth.values()),
        conversions=sum(m.converted for m in members),
        commission=sum((m.commission for m in members), Decimal(0)),
        start=min(m.ts for m in members),
        end=max(m.ts for m in members),
    )


def build_cascades(records: Iterable[Sequence]) -> CascadeIndex:
    """A CascadeIndex of ``(node, parent, ts[, converted[, commission]])`` records."""
    index = CascadeIndex()
    for rec in records:
        index.add(*rec)
    return index


def first_contacts(messages: Iterable[tuple[NodeId, NodeId, float]]) -> list[tuple[NodeId, NodeId | None, float]]:
    """Who-reached-whom records from timestamped contacts ``(src, dst, ts)`` (a message, a share).

    Contacts are taken by time (ties: in the given order). A user enters at their first contact:
    reached by ``src`` if they first appear as its recipient, a root if they first appear as a
    sender (they were active before anybody reached them, so a later message to them reaches
    nobody new). Each user is reached once, by the earliest contact; a parent has always entered
    no later than its child, so the result is a forest (a loop would need a child before its
    parent). Self-contacts are ignored. Records come in entry order.
    """
    joined: set[NodeId] = set()
    out: list[tuple[NodeId, NodeId | None, float]] = []
    ordered = sorted(enumerate(messages), key=lambda im: (im[1][2], im[0]))
    for _, (src, dst, ts) in ordered:
        if src == dst:
            continue
        if src not in joined:
            joined.add(src)
            out.append((src, None, ts))
        if dst not in joined:
            joined.add(dst)
            out.append((dst, src, ts))
    return out
