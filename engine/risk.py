"""The risk processor: running fraud evidence keyed by what it counts.

| key | state | learns from |
|---|---|---|
| ``d:<device>`` | clicks of the last 24 h (ts, promoter, automation agent), accounts, orders | clicks, orders |
| ``i:<ip>`` | clicks of the last window, devices, orders | clicks, orders |
| ``n:<prefix>`` | clicks of the last window, orders | clicks, orders |
| ``p:<promoter>`` | own devices and IPs, payout accounts, clicks and orders per hour, totals, recent order values (log), orders | joins, agreements, clicks, orders, refunds |
| ``g`` or ``g:<n>`` | the clicks, orders and refunds of a group of promoters (each other's peers) | orders, refunds |

An order is scored by a ``score`` message that travels the chain customer → device → IP →
prefix → promoter → the promoter's peer group → order: each hop records the order and adds the signals it sees
(:mod:`engine.fraud`) and the features behind them. Entity-level signals (a device farm, a click
burst, a promoter far above their peers) are sticky: once one fires, the entity's recorded
orders get a ``flag`` too, so an order scored before the farm grew is held when it does.

Windows are on event time. Every list is bounded (the newest entries are kept), so a busy key
stays small. Clicks arrive here only once (the customer processor drops redeliveries).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from decimal import Decimal, localcontext
from zlib import crc32

from engine.binding import DAY_MS
from engine.dataflow import ORDERS, RISK, Context, Message, Output
from engine.fraud import FraudRules, ip_prefix, robust_z, spread

HOUR_MS = 3_600_000
MAX_CLICKS = 400  # clicks kept per device / IP / prefix
MAX_ORDERS = 200  # orders kept per entity for late flags
MAX_VALUES = 50  # order values kept per promoter
MAX_SHOP_VALUES = 500  # order values kept for the shop (promoters with little history)
MAX_MEMBERS = 64  # accounts per device, devices per IP, own devices per promoter
RATE_FLOOR = Decimal("0.05")  # the smallest spread of peers' rates a z-score divides by
LOG_FLOOR = Decimal("0.25")
RATE = Decimal("0.000001")


def click_messages(event, cause: str) -> list[Message]:  # type: ignore[no-untyped-def]
    """What a new click tells the risk keys."""
    from engine.fraud import automation_agent

    body = {"t": event.ts_ms, "p": event.promoter_id, "d": event.device_id, "e": cause,
            "b": 1 if automation_agent(event.user_agent) else 0}
    keys = [f"p:{event.promoter_id}"]
    if event.device_id:
        keys.append(f"d:{event.device_id}")
    if event.ip:
        keys += [f"i:{event.ip}", f"n:{ip_prefix(event.ip)}"]
    out = [Message(RISK, k, "click", body, cause) for k in keys]
    if event.customer_id == event.promoter_id and (event.device_id or event.ip):  # a promoter's own click
        out.append(Message(RISK, f"p:{event.promoter_id}", "own", {"d": event.device_id, "i": event.ip}, cause))
    return out


def peers_key(promoter: str, groups: int) -> str:
    """The key of a promoter's peer group (``fraud.peer_groups``). One group (``g``) compares every
    promoter with all the others, but its state grows with the network and every order passes it:
    a network of a million promoters splits into groups by a stable hash, each a random sample of
    the network large enough for a median."""
    return "g" if groups == 1 else f"g:{crc32(promoter.encode()) % groups}"


def score_chain(order: dict, customer_features: dict, cause: str, peer_groups: int,
                promoter_only: bool = False) -> Message:
    """The first hop of an order's scoring; ``order`` holds o, t, c, d, i, p (level 1), v (value) and
    n (the how-manieth scoring: an order attributed late is scored again on its new promoter only)."""
    hops = []
    if order.get("d") and not promoter_only:
        hops.append(f"d:{order['d']}")
    if order.get("i") and not promoter_only:
        hops += [f"i:{order['i']}", f"n:{ip_prefix(order['i'])}"]
    if order.get("p"):
        hops += [f"p:{order['p']}", peers_key(order["p"], peer_groups)]
    body = {**order, "sig": {}, "f": dict(customer_features), "hops": hops}
    return _next(body, cause)


def handle_risk(state: dict | None, msg: Message, ctx: Context, out: Output) -> dict:
    rules = ctx.config.fraud
    state = state if state is not None else {}
    kind, body = msg.kind, msg.body
    entity = msg.key[0]
    if kind == "click":
        _click(entity, state, body, rules, msg, out)
    elif kind == "agreed":  # a signed agreement: kept so that a redelivery counts as one
        agreed = state.setdefault("agreed", [])
        if body["e"] in agreed:
            out.duplicates += 1
        else:
            agreed.append(body["e"])
            if body.get("a"):
                _member(state, "accounts", body["a"])
    elif kind == "own":
        own = state.setdefault("own", [])
        for v in (body.get("d"), body.get("i")):
            if v and v not in own and len(own) < MAX_MEMBERS:
                own.append(v)
                _own_learned_late(state, v, msg, out)
    elif kind == "score":
        body = {**body, "sig": dict(body["sig"]), "f": dict(body["f"])}  # never change a message (redelivery)
        {"d": _order_at_device, "i": _order_at_ip, "n": _order_at_prefix, "p": _order_at_promoter,
         "g": _order_at_peers}[entity](state, body, rules, msg, out)
        out.messages.append(_next(body, msg.cause))
    elif kind == "flag":
        _flag(state, body["code"], body["t"], body["cause"], msg, out)
    elif kind == "suspect":  # one of this promoter's orders showed a signal of its own (F15)
        suspects = state.setdefault("suspects", [])
        if body["o"] not in suspects:
            suspects.append(body["o"])
            del suspects[:-MAX_MEMBERS]
            if len(suspects) >= rules.limit("repeat_orders"):
                _flag(state, "F15", body["t"], msg.cause, msg, out)
    elif kind == "refund":
        if entity == "p":
            state["refunds"] = state.get("refunds", 0) + 1
            promoter = msg.key[2:]
            out.messages.append(Message(RISK, peers_key(promoter, rules.peer_groups), "refund",
                                        {"p": promoter, "n": _counts(state), "t": body["t"]}, msg.cause))
        else:
            _peers_update(state, body["p"], body["n"], body["t"], rules, msg.cause, out)
    return state


def _next(body: dict, cause: str) -> Message:
    """The message to the chain's next hop, or the score back to the order."""
    if body["hops"]:
        key = body["hops"][0]
        return Message(RISK, key, "score", {**body, "hops": body["hops"][1:]}, cause)
    return Message(ORDERS, body["o"], "scored", {k: body.get(k) for k in ("sig", "f", "p", "n")}, cause)


def _fire(body: dict, code: str, cause: str) -> None:
    body["sig"].setdefault(code, [body["t"], cause])


def _sticky(state: dict, body: dict) -> None:
    for code, (ts, cause) in state.get("flags", {}).items():
        _fire(body, code, cause)


def _flag(state: dict, code: str, ts: int, cause: str, msg: Message, out: Output) -> None:
    """A sticky signal on this entity: every order it recorded gets it too (once)."""
    flags = state.setdefault("flags", {})
    if code in flags:
        return
    flags[code] = [ts, cause]
    for order_id in state.get("orders", ()):
        out.messages.append(Message(ORDERS, order_id, "flag", {"code": code, "t": ts, "cause": cause}, msg.cause))


def _own_learned_late(state: dict, value: str, msg: Message, out: Output) -> None:
    """F07 whatever arrives first: a promoter's own device or IP, learned after orders paid from it
    were scored (another topic or partition was behind), flags those orders as their scoring would
    have, with the same time and cause, so the signal does not depend on the arrival order."""
    for order_id, (device, ip, ts, cause) in state.get("places", {}).items():
        if value in (device, ip):
            out.messages.append(Message(ORDERS, order_id, "flag", {"code": "F07", "t": ts, "cause": cause}, msg.cause))


def _record_order(state: dict, body: dict) -> bool:
    """Remember the order for late flags; False when it was recorded before."""
    orders = state.setdefault("orders", {})  # order id -> ts, oldest first
    if body["o"] in orders:
        return False
    orders[body["o"]] = body["t"]
    if len(orders) > MAX_ORDERS:
        del orders[next(iter(orders))]
    return True


def _window(clicks: list, ts: int, width_ms: int) -> int:
    """Clicks with a time in [ts − width, ts] (the list is sorted by time)."""
    return bisect_right(clicks, ts, key=_time) - bisect_left(clicks, ts - width_ms, key=_time)


def _time(click: list) -> int:
    return click[0]


def _add_click(clicks: list, row: list, keep_ms: int) -> None:
    insort(clicks, row)
    newest = clicks[-1][0]
    while clicks and (clicks[0][0] < newest - keep_ms or len(clicks) > MAX_CLICKS):
        clicks.pop(0)


def _click(entity: str, state: dict, body: dict, rules: FraudRules, msg: Message, out: Output) -> None:
    ts, cause = body["t"], body["e"]
    window = rules.seconds("window_minutes", 60)
    if entity == "p":
        hour = str(ts // HOUR_MS)
        for name, n in (("ch", 1), ("bh", body["b"])):  # clicks, and those by automation agents, per hour
            hours = state.setdefault(name, {})
            hours[hour] = hours.get(hour, 0) + n
            _prune_hours(hours, ts)
        state["clicks"] = state.get("clicks", 0) + 1
        _check_spam(state, ts, cause, rules, msg, out)
        return
    clicks = state.setdefault("clicks", [])
    if any(c[1] == cause for c in clicks):
        return  # a redelivered message
    if entity == "d":
        _add_click(clicks, [ts, cause, body["p"], body["b"]], DAY_MS)
        fast = rules.seconds("fast_seconds", 1)
        for order_id, paid in state.get("orders", {}).items():  # a click that arrived after the order it preceded
            if ts <= paid <= ts + fast:
                out.messages.append(Message(ORDERS, order_id, "flag", {"code": "F10", "t": paid, "cause": cause}, cause))
        if _window(clicks, ts, window) >= rules.limit("device_clicks"):
            _flag(state, "F01", ts, cause, msg, out)
        day = [c for c in clicks if ts - DAY_MS <= c[0] <= ts]
        if len({c[2] for c in day}) >= rules.limit("device_promoters"):
            _flag(state, "F04", ts, cause, msg, out)
        if len(clicks) >= 3 and sum(c[3] for c in clicks) >= rules.limit("bot_share") * len(clicks):
            _flag(state, "F06", ts, cause, msg, out)
        return
    _add_click(clicks, [ts, cause], window)
    if entity == "i":
        if body.get("d"):
            _member(state, "devices", body["d"])
        if _window(clicks, ts, window) >= rules.limit("ip_clicks"):
            _flag(state, "F02", ts, cause, msg, out)
        if len(state.get("devices", ())) >= rules.limit("farm_devices"):
            _flag(state, "F09", ts, cause, msg, out)
    elif _window(clicks, ts, window) >= rules.limit("prefix_clicks"):
        _flag(state, "F03", ts, cause, msg, out)


def _member(state: dict, name: str, value: str) -> None:
    members = state.setdefault(name, [])
    if value not in members and len(members) < MAX_MEMBERS:
        members.append(value)


def _prune_hours(hours: dict, ts: int) -> None:
    oldest = ts // HOUR_MS - 48
    for h in [h for h in hours if int(h) < oldest]:
        del hours[h]


def _day_count(hours: dict, ts: int) -> int:
    now = ts // HOUR_MS
    return sum(n for h, n in hours.items() if now - 24 < int(h) <= now)


def _check_spam(state: dict, ts: int, cause: str, rules: FraudRules, msg: Message, out: Output) -> None:
    """F05: a day's burst of clicks, mostly by automation agents, that (almost) never converts —
    an honest link that goes viral gets as many clicks, but from people's browsers."""
    clicks = _day_count(state.get("ch", {}), ts)
    if (clicks >= rules.limit("spam_clicks")
            and _day_count(state.get("oh", {}), ts) <= rules.limit("spam_conversion") * clicks
            and _day_count(state.get("bh", {}), ts) >= rules.limit("bot_share") * clicks):
        _flag(state, "F05", ts, cause, msg, out)


def _order_at_device(state: dict, body: dict, rules: FraudRules, msg: Message, out: Output) -> None:
    ts, cause = body["t"], msg.cause
    _record_order(state, body)
    _member(state, "accounts", body["c"])
    clicks = state.get("clicks", [])
    before = [c for c in clicks if c[0] <= ts]
    f = body["f"]
    f["device_clicks"] = _window(clicks, ts, rules.seconds("window_minutes", 60))
    f["device_accounts"] = len(state["accounts"])
    if before:
        f["click_gap_s"] = (ts - before[-1][0]) // 1000
        if ts - before[-1][0] <= rules.seconds("fast_seconds", 1):
            _fire(body, "F10", cause)
    if len(state["accounts"]) >= rules.limit("farm_accounts"):
        _flag(state, "F08", ts, cause, msg, out)
    _sticky(state, body)


def _order_at_ip(state: dict, body: dict, rules: FraudRules, msg: Message, out: Output) -> None:
    _record_order(state, body)
    if body.get("d"):
        _member(state, "devices", body["d"])
    body["f"]["ip_devices"] = len(state.get("devices", ()))
    if len(state.get("devices", ())) >= rules.limit("farm_devices"):
        _flag(state, "F09", body["t"], msg.cause, msg, out)
    _sticky(state, body)


def _order_at_prefix(state: dict, body: dict, rules: FraudRules, msg: Message, out: Output) -> None:
    _record_order(state, body)
    _sticky(state, body)


def _order_at_promoter(state: dict, body: dict, rules: FraudRules, msg: Message, out: Output) -> None:
    ts, cause, f = body["t"], msg.cause, body["f"]
    own = state.get("own", ())
    if (body.get("d") and body["d"] in own) or (body.get("i") and body["i"] in own):
        _fire(body, "F07", cause)
    if body.get("d") or body.get("i"):  # where it was paid from, should the promoter's own device be learned later
        places = state.setdefault("places", {})
        places.setdefault(body["o"], [body.get("d"), body.get("i"), ts, cause])
        if len(places) > MAX_ORDERS:
            del places[next(iter(places))]
    value = _log(body["v"])
    logs = [Decimal(v) for v in state.get("logs", ())]
    if len(logs) >= rules.limit("value_min_orders"):
        _value_outlier(body, value, logs, rules, cause)
    else:
        body["shop_value"] = str(value)  # too little history: the peers' hop compares with the shop's
    if _record_order(state, body):
        state["n_orders"] = state.get("n_orders", 0) + 1
        state["logs"] = (state.get("logs", []) + [str(value)])[-MAX_VALUES:]
        hours = state.setdefault("oh", {})
        hours[str(ts // HOUR_MS)] = hours.get(str(ts // HOUR_MS), 0) + 1
        _prune_hours(hours, ts)
    f["promoter_clicks_24h"] = _day_count(state.get("ch", {}), ts)
    body["counts"] = _counts(state)
    _sticky(state, body)


def _value_outlier(body: dict, value: Decimal, logs: list[Decimal], rules: FraudRules, cause: str) -> None:
    z = robust_z(value, spread(logs), LOG_FLOOR)
    body["f"]["value_z"] = str(z)
    if z >= rules.limit("value_z"):
        _fire(body, "F11", cause)


def _log(value: str) -> Decimal:
    """ln(1 + value) to 4 places: order values compare on a log scale (a basket of 2,000 is as far
    above one of 200 as 200 is above 20). Decimal's ln is exact to its precision on every machine
    (a C library's log need not be), and it runs once per order."""
    with localcontext() as c:
        c.prec = 12
        return (Decimal(value) + 1).ln().quantize(Decimal("0.0001"))


def _counts(state: dict) -> list[int]:
    return [state.get("clicks", 0), state.get("n_orders", 0), state.get("refunds", 0)]


def _order_at_peers(state: dict, body: dict, rules: FraudRules, msg: Message, out: Output) -> None:
    for code, z in _peers_update(state, body["p"], body.pop("counts"), body["t"], rules, msg.cause, out).items():
        body["f"][code] = str(z)
    for code in state.get("flagged", {}).get(body["p"], ()):
        _fire(body, code, msg.cause)
    shop = state.setdefault("logs", [])
    if "shop_value" in body:
        value = body.pop("shop_value")
        if len(shop) >= MAX_VALUES:
            _value_outlier(body, Decimal(value), [Decimal(v) for v in shop], rules, msg.cause)
        shop.append(value)
        del shop[:-MAX_SHOP_VALUES]


PEER_RATES = (("F13", lambda c: (Decimal(c[2]) / c[1]).quantize(RATE)),  # refund rate
              ("F14", lambda c: (Decimal(c[1]) / max(c[0], 1)).quantize(RATE)))  # conversion rate
PEER_REFRESH = 25  # peer updates between two recomputations of the peers' median and spread
PEER_CACHED = 50  # from this many eligible peers on (below, every update recomputes: it is cheap)


def _population(state: dict, least: Decimal) -> dict:
    """The peers' median and MAD per rate, recomputed every ``PEER_REFRESH`` updates once there
    are ``PEER_CACHED`` peers: one promoter moves the median and spread of fifty or more very
    little, and this is the one hot key (every order passes it)."""
    state["age"] = state.get("age", 0) + 1
    cached = state.get("pop")
    if cached is None or state["age"] >= PEER_REFRESH or cached["size"] < PEER_CACHED:
        eligible = [c for c in state["n"].values() if c[1] >= least]
        cached = state["pop"] = {"size": len(eligible),
                                 **{code: spread([rate(c) for c in eligible]) for code, rate in PEER_RATES}}
        state["age"] = 0
    return cached


def _peers_update(state: dict, promoter: str, counts: list[int], ts: int, rules: FraudRules, cause: str,
                  out: Output) -> dict[str, Decimal]:
    """Keep a promoter's counts; flag them when their refund or conversion rate stands far above
    their peers' (robust z-scores over promoters with enough orders)."""
    peers = state.setdefault("n", {})
    peers[promoter] = counts
    least = rules.limit("peer_min_orders")
    if counts[1] < least:
        return {}
    population = _population(state, least)
    found = {}
    flagged = state.setdefault("flagged", {})  # only the promoters flagged (a group has many)
    for code, rate in PEER_RATES:
        z = robust_z(rate(counts), population[code], RATE_FLOOR)
        found[code] = z
        if z >= rules.limit("peer_z") and code not in flagged.get(promoter, ()):
            flagged.setdefault(promoter, []).append(code)
            body = {"code": code, "t": ts, "cause": cause}
            out.messages.append(Message(RISK, f"p:{promoter}", "flag", body, cause))
    return found
