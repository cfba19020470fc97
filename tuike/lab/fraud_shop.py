"""A shop with labelled fraud mixed into honest traffic: the ground truth of ``tuike fraud eval``.

    shop = labelled_shop(7)
    shop.events        # canonical events (contract §1.1) in arrival order
    shop.labels        # order_id -> pattern, for every fraudulent order.paid

The honest part is :func:`tuike.lab.generate.generate_shop` without its fraud ring, so no honest
order is fraud by construction. Fraud is injected by new promoters (``FP…``) and new customer
accounts (``FC…``) in the same weeks as the honest traffic; 1–5 % of all orders (drawn from the
seed) are fraudulent, split over :data:`PATTERNS`:

- ``self_purchase``: rings of 3–6 promoters (a leader and the members he recruited); each member
  opens their own link on their own phone and sock-puppet accounts bound to them buy 1–3 times,
  ~60 % from the member's registration device, the rest from a fresh device on the member's ip;
- ``device_farm``: one promoter per farm; 2–4 phones with 4–12 accounts each, all behind 1–2 ips
  of one /24; click → bind minutes later → order 5–90 minutes after the click, same device and ip;
- ``click_spam``: a burst of 150–600 bot clicks on the promoter's link within 1–2 hours (new
  device ids, 1–3 cloud /24s, no or automation user agents, visitor only, never converting);
  the labelled orders are 3–8 ordinary-looking accounts bound to the spammer;
- ``refund_abuse``: 6–15 new accounts per promoter, each click → bind → its only order 1–3 hours
  after the click → a full refund 20 minutes to 12 hours after paying;
- ``fake_orders``: 8–20 accounts per promoter paying 3–25 seconds after the click, from the
  click's device and ip, for an expensive electronics item or 5–10 units of one pricey item;
  about half are later completed.

Every fraud promoter also gets a few ordinary visitor clicks, as any shared link does. Event ids
are ``f<seed>-<n>`` in arrival order. Same seed, same events, byte for byte.
"""
from __future__ import annotations

import bisect
import heapq
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from tuike.lab.generate import (
    _CAMPAIGNS,
    _HOURS,
    _IP_PREFIXES,
    _ITEMS_CUM,
    _QTY_CUM,
    _SKU_CUM,
    _UAS,
    CATALOGUE,
    CURRENCY,
    SHOP_ID,
    _allocate,
    _money,
    generate_shop,
)

PATTERNS = ("self_purchase", "device_farm", "click_spam", "refund_abuse", "fake_orders")
MIN_PER_PATTERN = 8
SHARE_RANGE = (0.01, 0.05)

_TZ = timezone(timedelta(hours=8))
_DAY = 86400
_BOT_UAS = (
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "curl/8.5.0",
    "okhttp/4.12.0",
)
_CLOUD_PREFIXES = ("47.92", "47.100", "119.29", "106.52", "139.224", "8.134")  # where bots rent machines
_PRICEY_ELECTRONICS = [i for i, (_, cat, cents) in enumerate(CATALOGUE) if cat == "electronics" and cents >= 40_000]
_PRICEY = [i for i, (_, cat, cents) in enumerate(CATALOGUE) if cat != "digital" and cents >= 10_000]


@dataclass
class LabelledShop:
    """The ground truth a detector is scored against: what it sees (``events``), what it should find."""

    events: list[dict]  # canonical events in arrival order
    labels: dict[str, str]  # order_id -> pattern, for every fraudulent order.paid
    fraud_share: float  # labelled orders / all orders


class _Promoter(NamedTuple):
    id: str
    device: str  # registration device and ip
    ip: str
    joined: int


def _seconds(ts: str) -> int:
    return int(datetime.fromisoformat(ts).timestamp())


class _Fraud:
    """The injected events, built pattern by pattern; each pattern spends a quota of orders."""

    def __init__(self, seed: int, honest: list[dict]) -> None:
        self.rng = random.Random(f"fraud-shop:{seed}")  # not generate_shop's stream: independent draws
        self.seed = seed
        self.lo = min(_seconds(e["ts"]) for e in honest)
        self.hi = max(_seconds(e["ts"]) for e in honest if e["type"] == "order.paid")
        joins = sorted((_seconds(e["ts"]), e["promoter_id"]) for e in honest if e["type"] == "promoter.joined")
        self.join_t = [t for t, _ in joins]
        self.join_id = [p for _, p in joins]
        self.queue: list[tuple[float, int, dict]] = []  # (arrival, seq, event)
        self.labels: dict[str, str] = {}
        self.counters: dict[str, int] = {}

    # -- ids, time, people --------------------------------------------------------------------

    def new_id(self, prefix: str, width: int) -> str:
        n = self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{n:0{width}d}"

    def ts(self, t: int) -> str:
        return datetime.fromtimestamp(t, _TZ).isoformat()

    def between(self, a: float, b: float) -> int:
        return int(a + self.rng.random() * (b - a))

    def log_between(self, a: float, b: float) -> int:
        """Gaps people leave are skewed short: log-uniform in [a, b)."""
        return int(math.exp(self.rng.uniform(math.log(a), math.log(b))))

    def when(self, a: float, b: float) -> int:
        """A time in [a, b) when people are awake, with the honest shop's hour-of-day profile,
        so that the hour of an action does not give fraud away."""
        top = max(_HOURS)
        while True:
            t = self.between(a, b)
            if self.rng.random() * top < _HOURS[datetime.fromtimestamp(t, _TZ).hour]:
                return t

    def start(self, length: int) -> int:
        """The start of an episode that fits in the honest weeks: two days in (its promoters join
        before it, after the first honest ones), ``length`` before the last honest order."""
        return self.between(self.lo + 2 * _DAY, max(self.lo + 2 * _DAY + 1, self.hi - length))

    def device(self) -> str:
        return f"dv-{self.rng.getrandbits(48):012x}"

    def ip(self, prefix: str | None = None) -> str:
        rng = self.rng
        if prefix is None:
            prefix = f"{rng.choice(_IP_PREFIXES)}.{rng.randint(1, 254)}"
        return f"{prefix}.{rng.randint(1, 254)}"

    def subnet(self, prefixes: tuple[str, ...]) -> str:
        """A /24 (``a.b.c``)."""
        return f"{self.rng.choice(prefixes)}.{self.rng.randint(1, 254)}"

    # -- events -------------------------------------------------------------------------------

    def push(self, t: int, ev: dict, delay: float | None = None) -> None:
        """Queue an event at arrival ``t + delay``; by default the honest generator's delays
        (mostly under two minutes, 2 % up to an hour late)."""
        if delay is None:
            r = self.rng.random()
            delay = r * 120.0 if r < 0.98 else 120.0 + (r - 0.98) * 180_000.0
        self.queue.append((t + delay, len(self.queue), ev))

    def promoter(self, before: int, after: int | None = None, parent: str | None = None) -> _Promoter:
        """A new promoter joining in [``after``, ``before`` - 1 h) (default: the week before),
        recruited by ``parent`` or else by a random honest promoter who joined earlier (one in
        ten: top level)."""
        rng = self.rng
        join = self.when(max(self.lo, before - 7 * _DAY) if after is None else after, before - 3600)
        if parent is None:
            k = bisect.bisect_left(self.join_t, join)
            parent = self.join_id[rng.randrange(k)] if k and rng.random() < 0.9 else None
        me = _Promoter(self.new_id("FP", 5), self.device(), self.ip(), join)
        self.push(join, {"type": "promoter.joined", "event_id": None, "ts": self.ts(join), "promoter_id": me.id,
                         "parent_id": parent, "device_id": me.device, "ip": me.ip}, delay=0.0)
        for _ in range(rng.randint(0, 5)):  # the link is shared: a few strangers open it
            t = self.when(join + 3600, join + 20 * _DAY)
            if t < self.hi:
                self.click(t, me.id, self.device(), self.ip(), rng.choice(_UAS))
        return me

    def click(self, t: int, pid: str, device: str, ip: str, ua: str | None, campaign: str | None = None) -> str:
        """A click shaped like the honest generator's; ``ua=None`` leaves the user agent out."""
        rng = self.rng
        click_id = self.new_id("FK", 9)
        ev: dict[str, Any] = {"type": "click", "event_id": None, "ts": self.ts(t), "click_id": click_id,
                              "promoter_id": pid, "visitor_id": self.new_id("FV", 8), "device_id": device, "ip": ip}
        if ua is not None:
            ev["user_agent"] = ua
        if rng.random() < 0.6:
            ev["sku"] = CATALOGUE[self.pick_sku()][0]
        if campaign or rng.random() < 0.5:
            ev["campaign"] = campaign or rng.choice(_CAMPAIGNS)
        self.push(t, ev)
        return click_id

    def bind(self, t: int, customer: str, pid: str, click_id: str) -> None:
        self.push(t, {"type": "customer.bound", "event_id": None, "ts": self.ts(t), "customer_id": customer,
                      "promoter_id": pid, "via": "link", "click_id": click_id})

    def order(self, t: int, pattern: str, customer: str, device: str, ip: str, items: list[dict],
              click_id: str | None = None, completed: float = 0.6) -> str:
        """A labelled ``order.paid``, completed 2–10 days later with probability ``completed``."""
        order_id = self.new_id("FO", 8)
        ev: dict[str, Any] = {"type": "order.paid", "event_id": None, "ts": self.ts(t), "order_id": order_id,
                              "customer_id": customer, "currency": CURRENCY, "items": items,
                              "device_id": device, "ip": ip, "shop_id": SHOP_ID}
        if click_id:
            ev["click_id"] = click_id
        self.push(t, ev, delay=self.rng.random() * 120.0)
        self.labels[order_id] = pattern
        if self.rng.random() < completed:
            tc = t + self.between(2 * _DAY, 10 * _DAY)
            self.push(tc, {"type": "order.completed", "event_id": None, "ts": self.ts(tc), "order_id": order_id})
        return order_id

    # -- baskets ------------------------------------------------------------------------------

    def pick_sku(self) -> int:
        return min(bisect.bisect_left(_SKU_CUM, self.rng.random() * _SKU_CUM[-1]), len(CATALOGUE) - 1)

    def basket(self, t: int) -> list[dict]:
        """An ordinary basket, drawn as the honest generator draws one (discounts on double 11)."""
        rng = self.rng
        day = datetime.fromtimestamp(t, _TZ)
        festive = day.month == 11 and day.day in (10, 11)
        n_items = bisect.bisect_left(_ITEMS_CUM, rng.random() * _ITEMS_CUM[-1]) + 1
        skus: list[int] = []
        while len(skus) < n_items:
            s = self.pick_sku()
            if s not in skus:
                skus.append(s)
        items = []
        for s in skus:
            sku, cat, cents = CATALOGUE[s]
            if rng.random() < (0.6 if festive else 0.25):
                cents = max(1, int(cents * (0.7 + rng.random() * 0.25)))
            qty = 1 if cat == "digital" or cents > 50_000 else bisect.bisect_left(_QTY_CUM, rng.random() * _QTY_CUM[-1]) + 1
            items.append({"sku": sku, "category": cat, "price": _money(cents), "qty": qty})
        return items

    def big_basket(self) -> list[dict]:
        """Far above an honest basket: a top electronics item, or 5–10 units of one pricey item."""
        rng = self.rng
        if rng.random() < 0.5:
            sku, cat, cents = CATALOGUE[rng.choice(_PRICEY_ELECTRONICS)]
            qty = 2 if rng.random() < 0.3 else 1
        else:
            sku, cat, cents = CATALOGUE[rng.choice(_PRICEY)]
            qty = rng.randint(5, 10)
        return [{"sku": sku, "category": cat, "price": _money(cents), "qty": qty}]

    # -- the patterns -------------------------------------------------------------------------

    def self_purchase(self, quota: int) -> None:
        rng = self.rng
        while quota > 0:
            t0 = self.start(8 * _DAY)
            leader = self.promoter(t0 - _DAY)
            ring = [leader] + [self.promoter(t0, after=leader.joined + 600, parent=leader.id)
                               for _ in range(rng.randint(2, 5))]
            for member in ring:
                ua = rng.choice(_UAS)
                self.click(self.when(t0, t0 + 4 * _DAY), member.id, member.device, member.ip, ua)  # their own link
                for _ in range(rng.randint(1, 3)):
                    if quota <= 0:
                        break
                    own = rng.random() < 0.6
                    dev, p_ua = (member.device, ua) if own else (self.device(), rng.choice(_UAS))
                    cust = self.new_id("FC", 7)
                    tc = self.when(t0, t0 + 5 * _DAY)
                    ck = self.click(tc, member.id, dev, member.ip, p_ua)
                    t = tc + self.between(5, 600)
                    self.bind(t, cust, member.id, ck)
                    t += self.log_between(300, 8 * 3600)
                    for _ in range(rng.randint(1, 3)):
                        if quota <= 0 or t > self.hi:
                            break
                        self.order(t, "self_purchase", cust, dev, member.ip, self.basket(t))
                        quota -= 1
                        t = self.when(t + _DAY, t + 10 * _DAY)

    def device_farm(self, quota: int) -> None:
        rng = self.rng
        while quota > 0:
            t0 = self.start(4 * _DAY)
            farmer = self.promoter(t0)
            net = self.subnet(_IP_PREFIXES)
            ips = [self.ip(net) for _ in range(rng.randint(1, 2))]
            for _ in range(rng.randint(2, 4)):
                dev, ua = self.device(), rng.choice(_UAS)
                for _ in range(rng.randint(4, 12)):
                    if quota <= 0:
                        return
                    ip, cust = rng.choice(ips), self.new_id("FC", 7)
                    tc = self.when(t0, t0 + 3 * _DAY)
                    ck = self.click(tc, farmer.id, dev, ip, ua, campaign="new-user-gift" if rng.random() < 0.5 else None)
                    tb = tc + self.between(60, 480)
                    self.bind(tb, cust, farmer.id, ck)
                    to = tc + self.between(300, 5400)
                    self.order(max(to, tb + 30), "device_farm", cust, dev, ip, self.basket(to))
                    quota -= 1

    def click_spam(self, quota: int) -> None:
        rng = self.rng
        while quota > 0:
            t0 = self.start(5 * _DAY)
            spammer = self.promoter(t0)
            nets = [self.subnet(_CLOUD_PREFIXES) for _ in range(rng.randint(1, 3))]
            burst, length = self.between(t0, t0 + _DAY), self.between(3600, 7200)  # bots keep no hours
            bots: list[str] = []
            for _ in range(rng.randint(150, 600)):
                dev = rng.choice(bots) if bots and rng.random() < 0.15 else self.device()
                bots.append(dev)
                ua = None if rng.random() < 0.3 else rng.choice(_BOT_UAS)
                self.click(burst + self.between(0, length), spammer.id, dev, self.ip(rng.choice(nets)), ua)
            for _ in range(rng.randint(3, 8)):  # the real buyers whose commission he takes
                if quota <= 0:
                    return
                dev, ip, cust = self.device(), self.ip(), self.new_id("FC", 7)
                tc = self.when(max(spammer.joined + 3600, burst - 12 * 3600), burst + 2 * _DAY)
                ck = self.click(tc, spammer.id, dev, ip, rng.choice(_UAS))
                tb = tc + self.between(5, 600)
                self.bind(tb, cust, spammer.id, ck)
                to = tb + self.between(2 * 3600, 20 * 3600)
                self.order(to, "click_spam", cust, dev, ip, self.basket(to))
                quota -= 1

    def refund_abuse(self, quota: int) -> None:
        rng = self.rng
        while quota > 0:
            t0 = self.start(5 * _DAY)
            abuser = self.promoter(t0)
            for _ in range(rng.randint(6, 15)):
                if quota <= 0:
                    return
                dev, ip, cust = self.device(), self.ip(), self.new_id("FC", 7)
                tc = self.when(t0, t0 + 4 * _DAY)
                ck = self.click(tc, abuser.id, dev, ip, rng.choice(_UAS))
                self.bind(tc + self.between(30, 600), cust, abuser.id, ck)
                to = tc + self.between(3600, 3 * 3600)
                items = self.basket(to)
                oid = self.order(to, "refund_abuse", cust, dev, ip, items, completed=0.0)
                tr = to + self.between(1200, 12 * 3600)
                total = sum(int(it["price"].replace(".", "")) * it["qty"] for it in items)
                self.push(tr, {"type": "order.refunded", "event_id": None, "ts": self.ts(tr), "order_id": oid,
                               "refund_id": self.new_id("FR", 7), "amount": _money(total)})
                quota -= 1

    def fake_orders(self, quota: int) -> None:
        rng = self.rng
        while quota > 0:
            t0 = self.start(3 * _DAY)
            faker = self.promoter(t0)
            for _ in range(rng.randint(8, 20)):
                if quota <= 0:
                    return
                dev, ip, cust = self.device(), self.ip(), self.new_id("FC", 7)
                tc = self.when(t0, t0 + 2 * _DAY)
                ck = self.click(tc, faker.id, dev, ip, rng.choice(_UAS))
                gap = rng.randint(3, 25)
                self.bind(tc + rng.randint(1, gap - 1), cust, faker.id, ck)
                self.order(tc + gap, "fake_orders", cust, dev, ip, self.big_basket(), click_id=ck, completed=0.5)
                quota -= 1

    # -- the mix ------------------------------------------------------------------------------

    def merge(self, honest: list[dict]) -> list[dict]:
        """Honest events keep their order, keyed by the latest event time seen so far (their
        arrival clock; refunds do not advance it, as some arrive before their payment on
        purpose); injected ones go in by arrival time and get ids in that order."""
        keyed, clock = [], 0
        for i, ev in enumerate(honest):
            if ev["type"] != "order.refunded":
                clock = max(clock, _seconds(ev["ts"]))
            keyed.append((clock, 0, i, ev))
        injected = sorted((a, 1, s, ev) for a, s, ev in self.queue)
        out, n = [], 0
        for _, source, _, ev in heapq.merge(keyed, injected):
            if source:
                n += 1
                ev["event_id"] = f"f{self.seed}-{n}"
            out.append(ev)
        return out


def labelled_shop(seed: int, *, orders: int = 6000, promoters: int = 250, customers: int = 4000) -> LabelledShop:
    """Honest traffic plus labelled fraud (see the module doc); at least
    :data:`MIN_PER_PATTERN` orders per pattern, so a tiny shop may exceed 5 %."""
    honest = [e for e in generate_shop(seed, promoters=promoters, customers=customers, orders=orders,
                                       bad_lines=0, duplicates=0, reviews=False, fraud_ring=False)
              if isinstance(e, dict)]
    n_honest = sum(e["type"] == "order.paid" for e in honest)
    fraud = _Fraud(seed, honest)
    rng = fraud.rng
    lo, hi = SHARE_RANGE
    share = rng.uniform(lo, hi)
    n_fraud = min(max(round(share * n_honest / (1 - share)), math.ceil(lo * n_honest / (1 - lo))),
                  math.floor(hi * n_honest / (1 - hi)))
    extra = max(0, n_fraud - MIN_PER_PATTERN * len(PATTERNS))
    parts = _allocate(extra, [rng.uniform(0.5, 1.5) for _ in PATTERNS])
    for pattern, part in zip(PATTERNS, parts):
        getattr(fraud, pattern)(MIN_PER_PATTERN + part)
    events = fraud.merge(honest)
    return LabelledShop(events, fraud.labels, len(fraud.labels) / (n_honest + len(fraud.labels)))
