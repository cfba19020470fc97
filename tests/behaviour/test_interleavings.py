"""Property tests of the dataflow as the streaming deployment runs it.

Kafka keeps the order of messages within one topic partition and nothing else; the promoter
facts the customers and promoters handlers read (a GlobalTable replica) may lag behind the
promoters table. :class:`Interleaved` runs the processors of :mod:`engine.runner` that way:

- a FIFO queue per (processor, partition, topic), partition = crc32(salt:key) % PARTITIONS
  (the salt, drawn per example, varies which keys share a partition), topic = input events or
  internal messages. Hypothesis picks which non-empty queue delivers next, so every partition
  keeps its order and everything else interleaves. (Inputs and internal messages of a
  processor in one shared topic give the same set of delivery orders: an input may be
  produced into the shared partition at any moment before it is delivered.) The input events
  are produced in an order hypothesis permutes.
- a promoter replica that copies one promoter's authoritative facts only when hypothesis
  decides to replicate it, so handlers may read no facts, or old facts, for any promoter,
  up to the end.
- the scheduler mixes uniform picks with picks by a per-example priority of each partition
  (and of each promoter's replication), so that some partitions or the replica stay behind
  for long stretches: the orderings that break things are rarely reached by uniform picks.
- optionally, at-least-once redelivery: a message delivered again right away, and Kafka-style
  replays (a partition rewound to an earlier committed offset: its last k messages again, in
  order). State is kept across a redelivery (it is committed before the offset).

The net money (per order, item, beneficiary, level, and per beneficiary and status) must equal
that of the embedded engine fed the same events in file order. Entry ids may differ.
"""
from __future__ import annotations

import copy
import random
import zlib
from collections import defaultdict, deque
from decimal import Decimal

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from engine.config import Config, parse_config
from engine.dataflow import CUSTOMERS, ORDERS, PROMOTERS, Context, Message, Output
from engine.runner import HANDLERS, first_messages
from engine.store import MemoryStore
from schemas.events import validate_event
from tests.support.shop import (Run, banned, bound, cancelled, click, completed, item, joined, paid, refunded, ts,
                        with_ids)
from tests.behaviour.test_properties import CONFIGS, shops

PARTITIONS = 4
MAX_STEPS = 20_000  # a livelock (messages that never stop) fails instead of hanging
MAX_REWINDS = 3


def partition(key: str, salt: int = 0) -> int:
    """A stable hash of the key; the salt (drawn per example) varies which keys share a partition."""
    return zlib.crc32(f"{salt}:{key}".encode()) % PARTITIONS


def _wire(msg: Message) -> Message:
    """What the consumer gets: internal bodies are serialized, so they share nothing with the sender."""
    if msg.kind == "event":
        return msg  # a frozen pydantic model
    return Message(msg.processor, msg.key, msg.kind, copy.deepcopy(msg.body), msg.cause)


def _describe(msg: Message) -> str:
    if msg.kind == "event":
        e = msg.body
        return f"{msg.processor}[{msg.key}] {e.type} {e.event_id}"
    body = dict(msg.body)
    if "facts" in body:
        f = body.pop("facts")
        body["facts"] = f"v{f['v']} joins={[j[1:] for j in f['joins']]} bans={[b[1] for b in f['bans']]}"
    return f"{msg.processor}[{msg.key}] {msg.kind} {body} (cause {msg.cause})"


class Interleaved:
    """Runs the dataflow with hypothesis choosing the delivery order and the replica's lag.

    :meth:`run` lets ``rnd`` choose everything; a scripted test calls :meth:`enqueue`,
    :meth:`step`, :meth:`replicate` and :meth:`drain` itself.
    """

    def __init__(self, config: Config, rnd: random.Random | None = None, redeliver: str | None = None, salt: int = 0):
        self.rnd = rnd  # hypothesis' random: each call is a draw it can shrink
        self.redeliver = redeliver  # None, "all" (every delivery twice) or "some"
        self.salt = salt
        self.focus = 1
        self.store = MemoryStore()
        self.replica: dict[str, dict] = {}  # the lagging GlobalTable view of PROMOTERS
        self.ctx = Context(config, self.replica.get)
        self.queues: dict[tuple, deque] = {}
        self.history: dict[tuple, list[Message]] = defaultdict(list)  # delivered, by offset
        self.rewinds = 0
        self.priority: dict[tuple, int] = {}
        self.out = Output()
        self.trace: list[str] = []

    def queue_of(self, processor: str, key: str, topic: str) -> tuple:
        return processor, partition(key, self.salt), topic

    def send(self, msg: Message, topic: str) -> None:
        self.queues.setdefault(self.queue_of(msg.processor, msg.key, topic), deque()).append(_wire(msg))

    def enqueue(self, events: list) -> None:
        """The input events, produced to their topics in this order."""
        for event in events:
            for msg in first_messages(event):
                self.send(msg, "input")

    def handle(self, msg: Message) -> None:
        state = self.store.get(msg.processor, msg.key)
        first = len(self.out.messages)
        new_state = HANDLERS[msg.processor](state, msg, self.ctx, self.out)
        if new_state is not None:
            self.store.put(msg.processor, msg.key, new_state)
        produced = self.out.messages[first:]
        del self.out.messages[first:]
        for m in produced:
            self.send(m, "internal")

    def lagging(self) -> list[str]:
        """Promoters whose replica is behind the promoters table."""
        table = self.store.tables[PROMOTERS]
        return sorted(pid for pid, facts in table.items()
                      if pid not in self.replica or self.replica[pid]["v"] != facts["v"])

    def replicate(self, pid: str) -> None:
        self.replica[pid] = copy.deepcopy(self.store.get(PROMOTERS, pid))
        self.trace.append(f"replicate {pid} v{self.replica[pid]['v']}")

    def rank(self, option: tuple) -> tuple:
        """A per-example priority, drawn when an option first appears (for the focused steps)."""
        if option not in self.priority:
            self.priority[option] = self.rnd.randrange(16)
        return self.priority[option], option

    def run(self, events: list) -> None:
        self.salt = self.rnd.randrange(1000)
        self.focus = self.rnd.choice([1, 2, 4, 16])
        self.enqueue(events)
        for _ in range(MAX_STEPS):
            ready = [k for k, q in self.queues.items() if q]
            if not ready:
                return
            # what may happen next: a partition delivers, or the replica catches up on one promoter
            options = sorted(ready + [("replicate", pid) for pid in self.lagging()], key=self.rank)
            rewindable = sorted(k for k, h in self.history.items() if h) if (
                self.redeliver and self.rewinds < MAX_REWINDS) else []
            # 1 in `focus` draws picks uniformly among everything; the others take the option of
            # highest priority, which holds back whole partitions (or the replica) for long stretches
            n = len(options) + len(rewindable)
            choice = self.rnd.randrange(self.focus * n)
            if choice >= n:
                choice = 0
            if choice >= len(options):
                self.rewind(rewindable[choice - len(options)])
            elif options[choice][0] == "replicate":
                self.replicate(options[choice][1])
            else:
                self.deliver(options[choice])
        raise AssertionError(f"no quiescence after {MAX_STEPS} deliveries:\n" + "\n".join(self.trace[-50:]))

    def step(self, processor: str, key: str, kind: str = "event") -> Message:
        """Deliver the next message of the partition holding ``key``, which must be that one."""
        queue = self.queue_of(processor, key, "input" if kind == "event" else "internal")
        head = self.queues.get(queue) and self.queues[queue][0]
        assert head and (head.key, head.kind) == (key, kind), f"next in {queue} is {head}"
        self.deliver(queue)
        return head

    def drain(self) -> None:
        """Deliver everything left, one partition after another."""
        while ready := sorted(k for k, q in self.queues.items() if q):
            self.deliver(ready[0])

    def deliver(self, queue: tuple) -> None:
        msg = self.queues[queue].popleft()
        self.history[queue].append(msg)
        self.trace.append("deliver " + _describe(msg))
        self.handle(msg)
        if self.redeliver == "all" or (self.redeliver == "some" and self.rnd.randrange(2)):
            self.trace.append("  again")
            self.handle(msg)

    def rewind(self, queue: tuple) -> None:
        """Replay from an earlier committed offset: the last k delivered messages, in order, first."""
        done = self.history[queue]
        k = 1 + self.rnd.randrange(min(len(done), 8))
        replay = done[-k:]
        del done[-k:]
        self.queues[queue].extendleft(reversed(replay))
        self.rewinds += 1
        self.trace.append(f"rewind {queue} by {k}")


def _net(entries) -> dict:
    acc: dict = defaultdict(Decimal)
    for r in entries:
        acc[(r.order_id, r.item_sku, r.beneficiary_id, r.level)] += r.amount
    return {k: v for k, v in acc.items() if v}


def _by_status(entries) -> dict:
    acc: dict = defaultdict(Decimal)
    for r in entries:
        acc[(r.beneficiary_id, r.status_after)] += r.amount
    return {k: v for k, v in acc.items() if v}


def _check(events: list[dict], config: dict, data, rnd: random.Random, redeliver: str | None) -> None:
    reference = Run(events, config)
    # the producers' order may differ from the file's: the ledger must not depend on it
    inputs = data.draw(st.permutations(events))
    run = Interleaved(parse_config(config), rnd, redeliver)
    try:
        run.run([validate_event(e) for e in inputs])
    finally:
        note("trace:\n" + "\n".join(run.trace))
    assert _net(run.out.entries) == _net(reference.entries)
    assert _by_status(run.out.entries) == _by_status(reference.entries)
    assert _standings(run.out.facts) == _standings_of(run.out.entries)


def _standings(facts: list) -> dict:
    """order -> (promoter1, promoter2, promoter3, commission) of the order_standings rows written:
    per (order, payment time) the highest version, an empty row (a replaced payment) left out."""
    latest: dict = {}
    for table, row in facts:
        if table == "order_standings":
            key = (row["order_id"], row["ts"])
            if key not in latest or latest[key]["version"] < row["version"]:
                latest[key] = row
    return {r["order_id"]: (r["promoter1"], r["promoter2"], r["promoter3"], r["commission1"], r["commission2"],
                            r["commission3"]) for r in latest.values() if r["promoter1"] or r["promoter2"] or r["promoter3"]}


def _standings_of(entries) -> dict:
    """The same from the ledger rows, as schemas.analytics.STANDINGS_FROM_LEDGER defines it."""
    net: dict = defaultdict(lambda: defaultdict(Decimal))
    commission: dict = defaultdict(Decimal)
    for r in entries:
        if r.level > 0:
            commission[(r.order_id, r.level)] += r.amount
            if r.kind in ("accrue", "reverse"):
                net[r.order_id][(r.level, r.beneficiary_id)] += r.amount
    out = {}
    for order, nets in net.items():
        holders = ["", "", ""]
        for level in (1, 2, 3):
            mine = [(v, who) for (lv, who), v in nets.items() if lv == level]
            holders[level - 1] = max(mine)[1] if mine else ""
        out[order] = (*holders, *(commission[(order, level)] for level in (1, 2, 3)))
    return out


SCHEDULES = st.randoms(use_true_random=False)  # who delivers next, when the replica catches up
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(events=shops(), config=st.sampled_from(CONFIGS), data=st.data(), rnd=SCHEDULES)
def test_any_interleaving_with_a_lagging_replica_gives_the_same_net_money(events, config, data, rnd):
    _check(events, config, data, rnd, None)


@SETTINGS
@given(events=shops(), config=st.sampled_from(CONFIGS), redeliver=st.sampled_from(["all", "some"]), data=st.data(),
       rnd=SCHEDULES)
def test_redelivered_messages_give_the_same_net_money(events, config, redeliver, data, rnd):
    _check(events, config, data, rnd, redeliver)


FEW_PROMOTERS = ["p0", "p1", "p2", "p3"]
FEW_CUSTOMERS = ["c0", "c1", "p2"]  # p2 is both
instant = st.builds(lambda d, h: ts(d, h), st.integers(1, 6), st.sampled_from([0, 12]))


@st.composite
def crowded_shops(draw):
    """Few keys and many collisions: `shops` pays an order at most twice and spreads its keys, so
    payers replacing each other (up to three payments an order), joins missing, moved or
    looping, and binds to the same few promoters come up far more often here.
    """
    events: list[dict] = []
    for i, pid in enumerate(FEW_PROMOTERS):
        if draw(st.integers(0, 5)):  # sometimes never joins: binds to them stay parked
            events.append({**joined(pid, draw(st.sampled_from([None] + FEW_PROMOTERS[:i]))), "ts": draw(instant)})
    for _ in range(draw(st.integers(0, 3))):
        events.append({**joined(draw(st.sampled_from(FEW_PROMOTERS)), draw(st.sampled_from([None] + FEW_PROMOTERS))),
                       "ts": draw(instant)})
    for _ in range(draw(st.integers(0, 2))):
        events.append(banned(draw(st.sampled_from(FEW_PROMOTERS)), draw(instant)))
    for _ in range(draw(st.integers(0, 4))):
        events.append(bound(draw(st.sampled_from(FEW_CUSTOMERS)), draw(st.sampled_from(FEW_PROMOTERS)), draw(instant)))
    for _ in range(draw(st.integers(0, 3))):
        events.append(click(draw(st.sampled_from(FEW_PROMOTERS)), draw(st.sampled_from(FEW_CUSTOMERS)), draw(instant),
                            cid=f"k{len(events)}"))  # ids from the draw: a click's key decides its partition
    for n in range(draw(st.integers(1, 3))):
        oid = f"o{n}"
        line = item("s1", draw(st.sampled_from(["3.00", "10.00", "100.00"])))
        for _ in range(draw(st.integers(1, 3))):
            events.append(paid(oid, draw(st.sampled_from(FEW_CUSTOMERS)), draw(instant), line,
                               promoter=draw(st.sampled_from([None, None, None] + FEW_PROMOTERS))))
        if draw(st.booleans()):
            events.append(refunded(oid, f"{oid}-r", draw(instant), amount="1.00"))
        if draw(st.booleans()):
            events.append(completed(oid, draw(instant)))
        if draw(st.integers(0, 3)) == 0:
            events.append(cancelled(oid, draw(instant)))
    return [{**e, "event_id": f"e{i}"} for i, e in enumerate(events)]


@settings(SETTINGS, max_examples=300)
@given(events=crowded_shops(), config=st.sampled_from(CONFIGS), redeliver=st.sampled_from([None, "some"]),
       data=st.data(), rnd=SCHEDULES)
def test_crowded_shops_give_the_same_net_money_in_any_interleaving(events, config, redeliver, data, rnd):
    _check(events, config, data, rnd, redeliver)


def test_a_replaced_payment_keeps_the_new_payers_attribution_whatever_the_loser_answers_last():
    """Order o is paid by c1, then by c2 with an earlier time, which replaces c1's payment. c1
    and c2 live in different partitions, so c1's answer for o (computed from the first payment)
    may reach o after c2's. (Fixed in c7051f0: orders keeps answers per customer.)
    """
    events = with_ids([joined("p0"), joined("p1"),
                       bound("c1", "p0", ts(1, 13)), bound("c2", "p1", ts(1, 13)),
                       paid("o", "c1", ts(5), item("s1", "100.00")),
                       paid("o", "c2", ts(4), item("s1", "100.00"))])
    reference = Run(events)
    assert reference.net() == {("o", "s1", "p1", 1): Decimal("10.00")}
    run = Interleaved(parse_config({}))
    assert partition("c1", run.salt) != partition("c2", run.salt)
    run.enqueue([validate_event(e) for e in events[:4]])
    run.drain()  # promoters joined and known to every reader, both binds in place
    for pid in ("p0", "p1"):
        run.replicate(pid)
    run.enqueue([validate_event(e) for e in events[4:]])
    run.step(ORDERS, "o")  # c1 pays: tells c1
    run.step(ORDERS, "o")  # c2 pays earlier: replaces it, tells c1 to drop o, tells c2
    run.step(CUSTOMERS, "c2", "order")  # c2's partition is ahead: attributed o to p1
    run.step(ORDERS, "o", "attributed")  # o pays p1
    run.step(CUSTOMERS, "c1", "order")  # c1's partition catches up: attributed o (to p0), late
    run.step(ORDERS, "o", "attributed")
    run.drain()  # c1 drops o; nothing else comes
    assert _net(run.out.entries) == reference.net(), "\n".join(run.trace)


def test_a_payer_replaced_and_back_again_is_attributed_anew():
    """Order o is paid by c1 (crediting p0 explicitly), then by c0 earlier, then by c1 again,
    earliest of all: c1's last payment wins and credits nobody (c1 is bound to no one).

    The drop of o at c1 restarts c1's answer versions for o at 1, so the orders processor, which
    still holds c1's answer v1 for the first payment, takes the new v1 for an old one and keeps
    paying p0. No interleaving is needed: the plain engine fed the payments in this order does
    it; fed the earliest payment first, it gets the right ledger. (Found by the crowded property.)
    """
    events = with_ids([joined("p0"), joined("p1"), bound("c0", "p1", ts(1, 13)),
                       paid("o", "c1", ts(5), item("s1", "100.00"), promoter="p0"),
                       paid("o", "c0", ts(4), item("s1", "100.00")),
                       paid("o", "c1", ts(3), item("s1", "100.00"))])
    earliest_first = events[:3] + events[3:][::-1]
    assert Run(earliest_first).net() == {}
    assert Run(events).net() == Run(earliest_first).net()


def _settled(order: str, at: str, *lines: tuple) -> dict:
    return {"type": "order.settled", "ts": at, "order_id": order, "period": "2026-11",
            "lines": [{"sku": s, "beneficiary_id": b, "level": n} for s, b, n in lines]}


@settings(SETTINGS, max_examples=150)
@given(data=st.data(), rnd=SCHEDULES, redeliver=st.sampled_from([None, "some"]))
def test_a_settlement_bans_and_a_refund_in_any_order_give_the_same_money(data, rnd, redeliver):
    """o1 was paid to p1 and p0 by a settlement at the 20th; p1 is banned after it (the 25th), p0
    before it (the 10th, reaching the engine late): neither ban holds paid money, whatever the
    order they arrive in. o2 was not paid: p1's ban holds it."""
    events = with_ids([joined("p0"), joined("p1", "p0"), bound("c1", "p1", ts(1, 13)),
                       paid("o1", "c1", ts(2), item("s1", "100.00")), completed("o1", ts(3)),
                       paid("o2", "c1", ts(4), item("s2", "50.00")), completed("o2", ts(5)),
                       _settled("o1", ts(20), ("s1", "p1", 1), ("s1", "p0", 2)),
                       banned("p1", ts(25)), banned("p0", ts(10)), refunded("o1", "r1", ts(26), amount="50.00")])
    reference = Run(events, {"hold_days": 7})
    assert reference.by_status("p1") == {"confirmed": Decimal("5.00"), "held": Decimal("5.00")}  # o1 half refunded; o2 held
    assert reference.by_status("p0") == {"confirmed": Decimal("2.50"), "held": Decimal("2.50")}
    _check(events, {"hold_days": 7}, data, rnd, redeliver)
