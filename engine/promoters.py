"""Promoter facts (joins, bans) and the fan-out of their changes to whoever read them.

``promoter.joined`` never creates money (no pay for recruiting); it only extends chains.
When a promoter's facts change, the ``watchers`` processor tells every customer whose
attribution read them to recompute (a *recheck*): that is how a late join or a ban reaches
orders that were already attributed.
"""
from __future__ import annotations

from schemas.events import PromoterBanned, PromoterJoined

from engine.chain import ChainView
from engine.dataflow import CUSTOMERS, WATCHERS, Context, Message, Output


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
    out.messages.append(Message(WATCHERS, event.promoter_id, "changed", {"facts": _copy(state)}, msg.cause))
    return state


def _copy(facts: dict) -> dict:
    """A copy to send: the state itself changes in place later."""
    return {"joins": [list(j) for j in facts["joins"]], "bans": [list(b) for b in facts["bans"]], "v": facts["v"]}


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
    """Keep who read a promoter and the promoter's latest facts; send each reader a recheck
    carrying those facts whenever they change, or when a reader saw an older version.

    The facts travel with the recheck because a reader's own view of promoters (a GlobalTable
    replica in streaming) may lag behind the change that triggered it. This processor is the one
    place that sees every change of its promoter in order, so every reader converges on the
    latest facts, whatever the replica shows.
    """
    state = state or {"c": {}, "f": None}
    if msg.kind == "watch":
        customer, seen = msg.body["customer"], msg.body["v"]
        if customer in state["c"]:
            return state
        state["c"][customer] = 1
        facts = state["f"]
        if facts and facts["v"] > seen:  # changed between the read and this registration
            out.messages.append(_recheck(customer, msg, facts))
        return state
    facts = msg.body["facts"]  # "changed"
    if state["f"] is not None and state["f"]["v"] >= facts["v"]:
        return state  # a redelivered or older change
    state["f"] = facts
    for customer in state["c"]:
        out.messages.append(_recheck(customer, msg, facts))
    return state


def _recheck(customer: str, msg: Message, facts: dict) -> Message:
    return Message(CUSTOMERS, customer, "recheck", {"promoter": msg.key, "facts": facts}, msg.cause)
