"""The local runner of the dataflow: one input event in, everything it causes out.

Routes the event to the processor that owns its key, then drains the messages that follow
through a FIFO queue, reading and writing state through a :class:`~engine.store.Store`.
Deterministic: the same events in the same order give the same rows with the same ids.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from schemas.events import Click, CustomerBound, Event, PromoterAgreed, PromoterBanned, PromoterJoined

from engine.config import Config
from engine.customers import handle_customer
from engine.dataflow import CUSTOMERS, ORDERS, PROMOTERS, PROPAGATION, RISK, TALLIES, WATCHERS, Context, Message, Output
from engine.orders import handle_order
from engine.promoters import handle_promoter, handle_watchers
from engine.propagation import click_message, handle_propagation
from engine.risk import handle_risk
from engine.store import Store
from engine.tallies import handle_tally, tally_messages

Handler = Callable[[dict | None, Message, Context, Output], dict | None]

HANDLERS: dict[str, Handler] = {
    PROMOTERS: handle_promoter,
    WATCHERS: handle_watchers,
    CUSTOMERS: handle_customer,
    ORDERS: handle_order,
    TALLIES: handle_tally,
    RISK: handle_risk,
    PROPAGATION: handle_propagation,
}


def first_messages(event: Event) -> list[Message]:
    """The processors an admitted event visits first, and under which key. (Which input topic it
    arrives on, and keyed how, is the route table's: schemas/routes.py.)"""
    cause = event.event_id
    if isinstance(event, PromoterJoined) and (event.device_id or event.ip):  # their own device: self-purchase
        own = Message(RISK, f"p:{event.promoter_id}", "own", {"d": event.device_id, "i": event.ip}, cause)
        return [Message(PROMOTERS, event.promoter_id, "event", event, cause), own]
    if isinstance(event, (PromoterJoined, PromoterBanned)):
        return [Message(PROMOTERS, event.promoter_id, "event", event, cause)]
    if isinstance(event, PromoterAgreed):  # no money: a fact, and evidence (tuike settle logs it)
        return [Message(RISK, f"p:{event.promoter_id}", "agreed", {"e": event.event_id, "a": event.payout_account},
                        cause)]
    if isinstance(event, CustomerBound):
        return [Message(CUSTOMERS, event.customer_id, "event", event, cause)]
    if isinstance(event, Click):  # the visitor's attribution, and the click's place in its share cascade
        who = event.customer_id or event.visitor_id
        return ([Message(CUSTOMERS, who, "event", event, cause)] if who else []) + [click_message(event)]
    # order.*: the order processor tells the customer's key once it accepts a payment (in Kafka, a repartition
    # when the customer's key is in another partition)
    return [Message(ORDERS, event.order_id, "event", event, cause)]  # type: ignore[attr-defined]


def step(msg: Message, store: Store, ctx: Context, out: Output) -> list[Message]:
    """Run one message through the processor that owns it; return the messages it produced.

    The one unit both runners share: the embedded runner drains them through a local queue,
    the streaming runner handles them locally or sends them to the partition owning their key.
    """
    state = store.get(msg.processor, msg.key)
    first = len(out.messages)
    new_state = HANDLERS[msg.processor](state, msg, ctx, out)
    if new_state is not None:
        store.put(msg.processor, msg.key, new_state)
    produced = out.messages[first:]
    del out.messages[first:]
    return produced


class Engine:
    """Feeds events through the processors against a store."""

    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store
        self.ctx = Context(config, lambda pid: store.get(PROMOTERS, pid))

    def feed(self, event: Event, out: Output | None = None) -> Output:
        out = out if out is not None else Output()
        first = len(out.entries)
        queue = deque(first_messages(event))
        while queue:
            queue.extend(step(queue.popleft(), self.store, self.ctx, out))
        for msg in tally_messages(out.entries[first:], event.event_id):
            step(msg, self.store, self.ctx, out)
        return out
