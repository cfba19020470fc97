"""Hot nodes (热点节点): the promoters whose shares reach the most people.

Three signals per node, each divided by its largest value so they weigh alike:

- downstream reach: descendants in the cascades (how many people came in through the node);
- downstream conversions: converted descendants (reach that bought);
- PageRank on the reversed share graph (child → parent): the rank a node passes on flows to the
  one that reached it, so sources of reach rank high, and a descendant counts less the further
  down it is (each link damps by ``alpha``) — reach weighted towards the near downline.

The score is their weighted sum. The ranking then lists, in score order, first the nodes with no
higher-listed ancestor, then the others (``shadowed_by`` names the ancestor): a node inside an
already-listed node's downline adds no reach of its own to a top-k list, so a list of distinct
lines covers more people than a list of one line's members (the top three by reach are often a
root, its child and its grandchild).

k-core is not used: on a share forest every linked node has core number 1. Pure: no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from tuike.insights.cascade import CascadeIndex, NodeId


@dataclass(frozen=True)
class HotNode:
    node: NodeId
    reach: int
    conversions: int
    pagerank: float
    score: float
    rank: int  # 1 = hottest
    shadowed_by: NodeId | None  # a higher-ranked ancestor, whose downline already holds this one


def reversed_pagerank(index: CascadeIndex, alpha: float = 0.85) -> dict[NodeId, float]:
    """PageRank of the share graph with every link pointing from child to parent."""
    graph = nx.DiGraph()
    graph.add_nodes_from(index.nodes())
    graph.add_edges_from((child, parent) for parent, child in index.edges())
    return nx.pagerank(graph, alpha=alpha)


def hot_nodes(index: CascadeIndex, weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
              alpha: float = 0.85) -> list[HotNode]:
    """Every node, hottest first (``weights``: reach, conversions, PageRank)."""
    nodes = index.nodes()
    if not nodes:
        return []
    stats = {n: index.node_stats(n) for n in nodes}
    pagerank = reversed_pagerank(index, alpha)
    top_reach = max(s.reach for s in stats.values())
    top_conv = max(s.conversions for s in stats.values())
    top_pr = max(pagerank.values())

    def share(x: float, top: float) -> float:
        return x / top if top > 0 else 0.0

    score = {n: weights[0] * share(stats[n].reach, top_reach)
             + weights[1] * share(stats[n].conversions, top_conv)
             + weights[2] * share(pagerank[n], top_pr) for n in nodes}
    listed: set[NodeId] = set()
    first: list[tuple[NodeId, None]] = []
    later: list[tuple[NodeId, NodeId]] = []
    for n in sorted(nodes, key=lambda n: (-score[n], n)):
        above = _listed_ancestor(index, n, listed)
        if above is None:
            listed.add(n)
            first.append((n, None))
        else:
            later.append((n, above))
    return [HotNode(n, stats[n].reach, stats[n].conversions, pagerank[n], score[n], rank, above)
            for rank, (n, above) in enumerate([*first, *later], start=1)]


def _listed_ancestor(index: CascadeIndex, node: NodeId, listed: set[NodeId]) -> NodeId | None:
    """The nearest ancestor of ``node`` already listed, if any."""
    up = index.parent_of(node)
    while up is not None:
        if up in listed:
            return up
        up = index.parent_of(up)
    return None


def degree_ranking(index: CascadeIndex) -> list[NodeId]:
    """Nodes by out-degree in the share graph (people reached directly), then id: the baseline."""
    degree = {n: 0 for n in index.nodes()}
    for parent, _ in index.edges():
        degree[parent] += 1
    return sorted(degree, key=lambda n: (-degree[n], n))
