"""Share cascades (传播路径): who re-shared to whom, kept up to date as clicks stream in.

A click that names a ``parent_click_id`` was opened from a share of the parent click's link; a
click without one starts a cascade (its root). The ``propagation`` processor is keyed by click
id, so a click's place in its cascade is known only where the click lives:

- ``click``: the click itself. A root is placed at once (depth 0); a child asks its parent
  (``child``), and the parent answers ``placed`` with the root and the depth below it — at once
  if it is placed, or when it is (a child may arrive before its parent, on another partition);
- ``placed``: a click learns its root and depth, writes its ``cascade_nodes`` row, tells its own
  children, and reports itself (``node``) and its conversions (``rconv``) to the root;
- ``conv``: an order paid through this click (from the order processor);
- ``node`` / ``rconv`` at the root: the cascade's running statistics — reach, depth, breadth (the
  most nodes at one depth), conversions and their GMV, first and last click — written as a
  ``cascade_stats`` row whose ``version`` counts what the root has taken in, so the row with the
  highest version is the latest (ReplacingMergeTree(version) keeps it).

Every fact is keyed by ids, so a redelivery changes nothing, and where a click lands depends on
its ancestry only, never on the order things arrive in: any interleaving ends with the same
rows. A click whose parent never arrives (or whose ancestry loops) stays unplaced.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from engine.dataflow import PROPAGATION, Context, Message, Output


def click_message(event) -> Message:
    """The propagation processor's copy of an input click."""
    body = {"p": event.parent_click_id, "t": event.ts_ms, "pr": event.promoter_id, "cp": event.campaign or "",
            "sku": event.sku or ""}
    return Message(PROPAGATION, event.click_id, "click", body, event.event_id)


def handle_propagation(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict | None:
    state = state if state is not None else {}
    kind, body, key = msg.kind, msg.body, msg.key
    if kind == "click":
        if "t" in state:
            return None  # the same click again: nothing changes
        parent = body["p"] if body["p"] and body["p"] != key else None
        state.update(t=body["t"], p=parent, pr=body["pr"], cp=body["cp"], sku=body["sku"])
        if parent is None:
            _place(state, key, key, 0, msg, out)
        else:
            out.messages.append(Message(PROPAGATION, parent, "child", {"c": key}, msg.cause))
    elif kind == "child":
        kids = state.setdefault("kids", {})  # a dict for a set: JSON-able, O(1) membership
        if body["c"] not in kids:
            kids[body["c"]] = 1
        elif "r" not in state:
            return None
        if "r" in state:  # asked again (a redelivery): answering again is harmless
            out.messages.append(Message(PROPAGATION, body["c"], "placed", {"r": state["r"], "d": state["d"] + 1},
                                        msg.cause))
    elif kind == "placed":
        if "r" in state or "t" not in state:
            return None  # placed already (placement never changes), or a child's answer before the click itself
        _place(state, key, body["r"], body["d"], msg, out)
    elif kind == "conv":
        conv = state.setdefault("conv", {})
        if body["o"] in conv:
            return None
        conv[body["o"]] = body["v"]
        if "r" in state:
            out.messages.append(Message(PROPAGATION, state["r"], "rconv", {"o": body["o"], "v": body["v"]}, msg.cause))
    elif kind == "node":
        agg = state.setdefault("agg", _new_agg())
        if body["n"] in agg["nodes"]:
            return None
        agg["nodes"][body["n"]] = body["d"]
        per = agg["per"]
        per[str(body["d"])] = per.get(str(body["d"]), 0) + 1
        agg["depth"], agg["breadth"] = max(agg["depth"], body["d"]), max(agg["breadth"], per[str(body["d"])])
        agg["first"] = body["t"] if agg["first"] is None else min(agg["first"], body["t"])
        agg["last"] = body["t"] if agg["last"] is None else max(agg["last"], body["t"])
        out.facts.append(("cascade_stats", stats_row(key, state)))
    elif kind == "rconv":
        agg = state.setdefault("agg", _new_agg())
        if body["o"] in agg["conv"]:
            return None
        agg["conv"][body["o"]] = body["v"]
        if agg["nodes"]:
            out.facts.append(("cascade_stats", stats_row(key, state)))
    return state


def _place(state: dict, key: str, root: str, depth: int, msg: Message, out: Output) -> None:
    state.update(r=root, d=depth)
    out.facts.append(("cascade_nodes", {
        "click_id": key, "root_id": root, "parent_click_id": state["p"] or "", "depth": depth, "ts": _dt(state["t"]),
        "promoter_id": state["pr"], "campaign": state["cp"], "sku": state["sku"]}))
    out.messages.append(Message(PROPAGATION, root, "node", {"n": key, "d": depth, "t": state["t"]}, msg.cause))
    for kid in state.get("kids", ()):
        out.messages.append(Message(PROPAGATION, kid, "placed", {"r": root, "d": depth + 1}, msg.cause))
    for order, value in state.get("conv", {}).items():
        out.messages.append(Message(PROPAGATION, root, "rconv", {"o": order, "v": value}, msg.cause))


def _new_agg() -> dict:
    """A root's running statistics: nodes and conversions seen (for idempotency), clicks per
    depth, and the maxima kept as they grow (a new click costs O(1), not a recount)."""
    return {"nodes": {}, "conv": {}, "per": {}, "depth": 0, "breadth": 0, "first": None, "last": None}


def stats_row(root: str, state: dict) -> dict:
    """The cascade's statistics as the root holds them now."""
    agg = state["agg"]
    return {
        "root_id": root, "version": len(agg["nodes"]) + len(agg["conv"]), "reach": len(agg["nodes"]),
        "depth": agg["depth"], "breadth": agg["breadth"], "conversions": len(agg["conv"]),
        "gmv": sum((Decimal(v) for v in agg["conv"].values()), Decimal("0.00")),
        "first_ts": _dt(agg["first"]), "last_ts": _dt(agg["last"]),
        "promoter_id": state.get("pr", ""), "campaign": state.get("cp", ""),
    }


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)
