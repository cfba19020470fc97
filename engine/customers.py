"""Attribution, keyed by customer: who earns on each of a customer's orders.

The customer's state holds their bind requests, their clicks and their paid orders (told by
the order processor once it has accepted the payment). After any change it recomputes the
orders' beneficiaries and sends an ``attributed`` message for each order whose answer changed;
the order processor turns that into ledger corrections. Promoters it read are registered with
the ``watchers`` processor, so that a late join or a ban comes back here as a recheck.
"""
from __future__ import annotations

from schemas.events import Click, CustomerBound

from engine.binding import bind_refusal, binding_at, last_click_at
from engine.chain import ChainView, Lookup, beneficiaries, is_upline, walk_up
from engine.dataflow import ORDERS, WATCHERS, Context, Message, Output
from engine.risk import click_messages, score_chain


def _empty() -> dict:
    return {"binds": [], "clicks": [], "orders": {}, "sent": {}, "watching": {}}


def _insert(rows: list[list], row: list) -> bool:
    """Insert ``row`` keeping (ts, event_id) order; False when that event is already there."""
    if any(r[1] == row[1] for r in rows):
        return False
    rows.append(row)
    rows.sort(key=lambda r: (r[0], r[1]))
    return True


def handle_customer(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict:
    state = state or _empty()
    event = msg.body
    if msg.kind == "recheck":
        _remember(state, msg.body["promoter"], msg.body["facts"])
    lookup = _promoters(state, ctx)
    if msg.kind == "order":  # the order processor accepted a payment by this customer
        order_id = msg.body["order"]
        state["orders"][order_id] = [msg.body["ts"], msg.body["promoter"]]
        if ctx.config.binding_mode != "new_customer_only" or min(o[0] for o in state["orders"].values()) < msg.body["ts"]:
            # a new order changes no other order's answer, unless it is a new first order,
            # which can refuse binds under new_customer_only
            _attribute(msg.key, state, msg.cause, ctx, lookup, out, only=order_id)
        else:
            _attribute(msg.key, state, msg.cause, ctx, lookup, out)
        if ctx.config.fraud.enabled:
            out.messages.append(_score(msg.key, state, msg.body, msg.cause, ctx.config.fraud.peer_groups))
        return state
    elif msg.kind == "drop":  # the payment was replaced by an earlier one of another customer
        order_id = msg.body["order"]
        state["orders"].pop(order_id, None)
        sent = state["sent"].get(order_id)
        if sent:  # keep counting versions: if this customer pays it again, the answer must be newer
            state["sent"][order_id] = [sent[0], None]
    elif isinstance(event, CustomerBound):
        if not _insert(state["binds"], [event.ts_ms, event.event_id, event.promoter_id]):
            out.duplicates += 1
            return state
        decision = bind_refusal(event.customer_id, event.promoter_id, event.ts_ms, ChainView(lookup))
        if not decision.ok and not decision.reason.startswith("parked"):
            out.reject(msg, f"customer.bound refused: {decision.reason}")
    elif isinstance(event, Click):
        if not _insert(state["clicks"], [event.ts_ms, event.event_id, event.promoter_id]):
            out.duplicates += 1
            return state
        if ctx.config.fraud.enabled:
            out.messages.extend(click_messages(event, msg.cause))
        if ctx.config.attribution != "last_click":
            return state  # kept for its own sake (a fraud signal); it does not move money
    _attribute(msg.key, state, msg.cause, ctx, lookup, out)
    return state


def _score(customer_id: str, state: dict, order: dict, cause: str, peer_groups: int) -> Message:
    """Start scoring a new order: what this customer's history says, then the risk keys'."""
    ts = order["ts"]
    seen = [r[0] for r in state["binds"]] + [r[0] for r in state["clicks"]] + [o[0] for o in state["orders"].values()]
    answer = state["sent"].get(order["order"])
    level1 = answer[1][0][0] if answer and answer[1] and answer[1][0] else None
    features = {"account_age_s": (ts - min(seen)) // 1000,
                "first_order": not any(o[0] < ts for o in state["orders"].values())}
    scored = {"d": order.get("d"), "i": order.get("i"), "p": level1, "v": order.get("v", "0"), "n": 1}
    state.setdefault("risk", {})[order["order"]] = scored  # a later attribution scores the new promoter
    return score_chain({**scored, "o": order["order"], "t": ts, "c": customer_id}, features, cause, peer_groups)


def _remember(state: dict, promoter_id: str, facts: dict) -> None:
    """Keep facts a recheck brought. They stay: the view a later computation reads may be
    another worker's replica, further behind (facts only grow, so keeping the newest is safe)."""
    told = state.setdefault("told", {})
    mine = told.get(promoter_id)
    if mine is None or mine["v"] < facts["v"]:
        told[promoter_id] = facts


def _promoters(state: dict, ctx: Context) -> Lookup:
    """The context's promoter view, overlaid with newer facts that rechecks told this customer.

    Facts only grow (a higher version holds every earlier fact), so the newer of the two is right.
    """
    told = state.get("told")
    if not told:
        return ctx.promoter

    def lookup(promoter_id: str) -> dict | None:
        mine = told.get(promoter_id)
        have = ctx.promoter(promoter_id)
        if mine is None or (have is not None and have["v"] >= mine["v"]):
            return have
        return mine

    return lookup


def _attribute(customer_id: str, state: dict, cause: str, ctx: Context, lookup: Lookup, out: Output,
               only: str | None = None) -> None:
    """Recompute the customer's orders (or ``only`` one); message those whose beneficiaries changed."""
    config = ctx.config
    view = ChainView(lookup)
    decided: dict[str, bool] = {}

    def acceptable(row: list) -> bool:
        """Whether a bind or click row may take effect; each row is judged once per call."""
        ok = decided.get(row[1])
        if ok is None:
            ok = decided[row[1]] = bind_refusal(customer_id, row[2], row[0], view).ok
        return ok

    orders = state["orders"]
    first_order = min((o[0] for o in orders.values()), default=None) if config.binding_mode == "new_customer_only" else None
    for order_id in [only] if only else sorted(orders):
        ts_ms, explicit = orders[order_id]
        if explicit is not None:
            level1: str | None = explicit
        elif config.attribution == "last_click":
            level1 = last_click_at(state["clicks"], ts_ms, config, acceptable)
        else:
            level1 = binding_at(state["binds"], first_order, ts_ms, config, acceptable)
        levels: list[str | None] = [None] * config.max_levels
        holds: list[int | None] = [None] * config.max_levels
        if level1 is not None:
            walk = walk_up(level1, ts_ms, view)
            if not is_upline(customer_id, walk):  # nobody is paid for their own purchase
                levels, holds = beneficiaries(walk, ts_ms, view, config.max_levels)
        answer = [levels, holds]
        sent = state["sent"].get(order_id)
        if sent is None or sent[1] != answer:
            version = (sent[0] + 1) if sent else 1
            state["sent"][order_id] = [version, answer]
            body = {"customer": customer_id, "v": version, "levels": levels, "holds": holds}
            out.messages.append(Message(ORDERS, order_id, "attributed", body, cause))
            scored = state.get("risk", {}).get(order_id)
            if scored is not None and levels[0] is not None and scored["p"] != levels[0]:
                # attributed after it was scored (a late bind): what the new promoter's record says
                scored["p"], scored["n"] = levels[0], scored["n"] + 1
                out.messages.append(score_chain({**scored, "o": order_id, "t": ts_ms, "c": customer_id},
                                                {}, cause, ctx.config.fraud.peer_groups, promoter_only=True))
    if only is None:
        for bind in state["binds"]:  # binds not used by an order yet still read promoters: watch those too
            acceptable(bind)
    for promoter_id, seen in view.consulted.items():
        if promoter_id not in state["watching"]:
            state["watching"][promoter_id] = seen
            out.messages.append(Message(WATCHERS, promoter_id, "watch", {"customer": customer_id, "v": seen}, cause))
