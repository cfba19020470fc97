"""Promoter facts (joins, bans) and the fan-out of their changes to whoever read them.

``promoter.joined`` never creates money (no pay for recruiting); it only extends chains.
When a promoter's facts change, the ``watchers`` processor tells every customer whose
attribution read them to recompute (a *recheck*): that is how a late join or a ban reaches
orders that were already attributed.
"""
from __future__ import annotations

from schemas.events import PromoterBanned, PromoterJoined

from .chain import ChainView
from .dataflow import CUSTOMERS, WATCHERS, Context, Message, Output


def handle_promoter(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict | None:
    """Store a join or ban (deduplicated by event_id) and announce the change."""
    event = msg.body
    state = state or {"joins": [], "bans": [], "v": 0}
    if isinstance(event, PromoterJoined):
        if any(j[1] == event.event_id for j in state["joins"]):
            out.duplicates += 1
            return state
        join = [event.ts_ms, event.event_id, event.parent_id]
        state["joins"] = sorted(state["joins"] + [join], key=lambda j: (j[0], j[1]))
    elif isinstance(event, PromoterBanned):
        if any(b[1] == event.event_id for b in state["bans"]):
            out.duplicates += 1
            return state
        state["bans"] = sorted(state["bans"] + [[event.ts_ms, event.event_id]])
    state["v"] += 1
    if isinstance(event, PromoterJoined):
        _refuse_loop(msg, state, ctx, out)
    out.messages.append(Message(WATCHERS, event.promoter_id, "changed", {"v": state["v"]}, msg.cause))
    return state


def _refuse_loop(msg: Message, state: dict, ctx: Context, out: Output) -> None:
    """Dead-letter a join that closes a loop at its time. It stays a fact; it never takes effect."""
    event = msg.body

    def lookup(pid: str) -> dict | None:
        return state if pid == event.promoter_id else ctx.promoter(pid)

    join = next(j for j in state["joins"] if j[1] == event.event_id)
    if not ChainView(lookup).valid(event.promoter_id, join):
        out.reject(msg, f"promoter.joined: parent {event.parent_id} would loop back to {event.promoter_id} "
                        "(a promoter cannot be recruited by their own downline)")


def handle_watchers(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict | None:
    """Keep who read a promoter; on a change, send each of them a recheck."""
    state = state or {"c": {}}
    if msg.kind == "watch":
        customer, seen = msg.body["customer"], msg.body["v"]
        if customer in state["c"]:
            return state
        state["c"][customer] = 1
        facts = ctx.promoter(msg.key)
        if facts and facts["v"] > seen:  # changed between the read and this registration
            out.messages.append(Message(CUSTOMERS, customer, "recheck", {"promoter": msg.key}, msg.cause))
        return state
    for customer in state["c"]:  # "changed"
        out.messages.append(Message(CUSTOMERS, customer, "recheck", {"promoter": msg.key}, msg.cause))
    return state
