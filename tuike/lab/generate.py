"""A realistic, deterministic shop: canonical events (contract §1.1) for demos, tests and benchmarks.

    for item in generate_shop(7, bad_lines=5):
        ...                       # a dict (a good event), or a str (a malformed line, as raw text)
    write_events(generate_shop(7, events=1_000_000), "bench.jsonl.gz")

What a generated shop contains (all ids and numbers follow from the seed):

- a recruiting network: a few top-level promoters, most recruited, a forced chain five
  promoters deep (so a level-4 ancestor exists), every promoter joining before recruits or acts,
  and signing the promoter agreement (``promoter.agreed``, with a payout account) right after;
- promotion-link clicks (visitor, device, ip, user agent, sku, campaign), re-shares that carry
  ``parent_click_id``, repeat clicks by known customers (with ``customer_id``);
- ``customer.bound`` mostly right after a click (``via`` link/qr/coupon/manual), re-binds to
  other promoters, a few self-binds (customer id = a promoter id), binds of promoters to their
  own upline (allowed) and to their own downline (to be refused), late binds whose ``ts`` is
  earlier than an order already in the file;
- ``order.paid`` with 1–5 items from a 200-SKU catalogue (category ``digital`` and the
  flagship ``SKU-0001`` used by the example configuration), some with an explicit promoter or
  a click id; a double-11 burst (2026-11-10 to 2026-11-12, +08:00); about 60 % later
  ``order.completed``, ~8 % partial refunds (per item or order-level ``amount``), ~3 % full
  refunds in 2–3 parts, ~4 % ``order.cancelled``; a few refunds arriving before their
  ``order.paid``;
- a small fraud ring (one promoter, shared device, orders minutes after binding), reviewed
  (``review.decided``) and the promoter later ``promoter.banned`` (left out with
  ``fraud_ring=False``), plus one more ban;
- a few duplicate deliveries (same ``event_id`` again, later in the file).

Lines are in arrival order: event time plus a small random delivery delay, so neighbours are
shuffled and some events arrive days late. Money is a decimal string, ``ts`` is RFC 3339 with
``+08:00``, ``event_id`` is ``e<seed>-<counter>`` in file order.

``bad_lines=N`` mixes N malformed lines into the stream as ``str`` items (bad JSON, unknown
type, float money, missing field, bad timestamp, 3-decimal money): a malformed line cannot be a
dict by nature, and :func:`write_events` writes strings verbatim. With ``bad_lines=0`` every
item is a dict that passes ``schemas.events.validate_event``.

``events=N`` scales the three counts (keeping their ratio) so the stream holds exactly N good
lines (plus the bad ones), cut at the end of time. Speed: see :data:`MEASURED`.
"""
from __future__ import annotations

import bisect
import gzip
import hashlib
import heapq
import math
import os
import random
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from tuike.progress import Progress

# Measured on the project's 2-core machine (Python 3.11.7, orjson 3.13), seed 1, events=1_000_000:
MEASURED = "generation alone 12.6 s (about 80k events/s); written to .jsonl 15.9 s, to .jsonl.gz 16.6 s; peak RSS about 210 MB"

DEFAULTS = {"promoters": 300, "customers": 5000, "orders": 8000}
TZ = "+08:00"
CURRENCY = "CNY"
SHOP_ID = "shop-001"
MAX_DEPTH = 4  # depth 0 = top level; a depth-4 promoter's order has a level-5 ancestor chain

# Good events of the default-sized shop (measured: 33,300 to 33,500 across seeds); used to scale
# the counts for ``events=N`` with a margin, then the stream is cut at exactly N.
_EVENTS_PER_DEFAULT_SHOP = 33_400

# --- the catalogue ------------------------------------------------------------------------

_CATEGORIES = (
    # name, number of SKUs, list price range in cents (prices are log-uniform inside it)
    ("apparel", 30, (3_900, 39_900)),
    ("beauty", 28, (2_900, 59_900)),
    ("digital", 22, (990, 19_900)),
    ("food", 26, (990, 12_900)),
    ("home", 24, (1_900, 69_900)),
    ("baby", 18, (1_900, 29_900)),
    ("electronics", 20, (5_900, 199_900)),
    ("books", 16, (1_500, 9_900)),
    ("sports", 16, (3_900, 59_900)),
)


def _build_catalogue() -> list[tuple[str, str, int]]:
    """200 SKUs (sku, category, list price in cents), the same for every seed."""
    rng = random.Random(20261111)
    cats: list[tuple[str, tuple[int, int]]] = []
    for name, share, rng_range in _CATEGORIES:
        cats.extend([(name, rng_range)] * share)
    rng.shuffle(cats)
    out = [("SKU-0001", "beauty", 19_900)]  # the flagship face cream of the example config's rule
    for i, (cat, (lo, hi)) in enumerate(cats[: 199], start=2):
        cents = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        r = rng.random()
        if r < 0.4:
            cents = max(cents // 1000 * 1000 - 100, 900) + rng.choice((0, 90))  # 59.00, 199.90 style
        elif r < 0.7:
            cents = cents // 100 * 100
        out.append((f"SKU-{i:04d}", cat, cents))
    return out


CATALOGUE = _build_catalogue()
_SKU_CUM = []  # Zipf-ish popularity; SKU-0001 is the best seller
_acc = 0.0
for _rank in range(len(CATALOGUE)):
    _acc += 1.0 / (_rank + 1) ** 0.8
    _SKU_CUM.append(_acc)
del _acc, _rank

_HOURS = [1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2, 2.2, 2.4, 2.6, 3, 2.8, 2.6, 2.6, 2.8, 3, 3.4, 4, 4.6, 5, 4.5, 2.8]
_HOURS_1110 = [w * (3 if h >= 20 else 1) for h, w in enumerate(_HOURS)]  # pre-sale opens at 20:00
_HOURS_1111 = [w * (8 if h < 2 else 1.5) for h, w in enumerate(_HOURS)]  # the midnight rush


def _cum(weights: Iterable[float]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out


_HOUR_CUM = {None: _cum(_HOURS), (11, 10): _cum(_HOURS_1110), (11, 11): _cum(_HOURS_1111)}

_UAS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49",
    "Mozilla/5.0 (Linux; Android 14; V2309A) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0 Mobile Safari/537.36 MicroMessenger/8.0.47",
    "Mozilla/5.0 (Linux; Android 13; 22081212C) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0 Mobile Safari/537.36 XWEB/1160065",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 12; HarmonyOS; NOH-AN00) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0 Mobile Safari/537.36 DouYin/28.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
)
_IP_PREFIXES = ("223.104", "117.136", "112.96", "183.192", "39.144", "120.229", "36.112", "114.88", "101.88", "221.216")
_CAMPAIGNS = ("moments-share", "group-chat", "live-room", "poster", "double-11-presale", "new-user-gift")
_CANCEL_REASONS = ("buyer changed mind", "out of stock", "address wrong", "duplicate order")
AGREEMENT_VERSION = "2026-09"
AGREEMENT_SHA256 = hashlib.sha256("推客推广服务协议 2026-09 (tuike demo text)".encode()).hexdigest()
_BAN_REASONS = ("self-dealing: orders from the promoter's own device", "fake traffic from a click farm")


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integer parts in proportion to ``weights`` (largest remainder)."""
    s = sum(weights)
    if total <= 0 or s <= 0:
        return [0] * len(weights)
    raw = [total * w / s for w in weights]
    out = [int(x) for x in raw]
    rest = total - sum(out)
    for i in sorted(range(len(raw)), key=lambda i: (out[i] - raw[i], i))[:rest]:
        out[i] += 1
    return out


def estimate_events(promoters: int, customers: int, orders: int) -> int:
    """About how many good events a shop of this size yields."""
    d = DEFAULTS
    units = (promoters / d["promoters"] * 0.01 + customers / d["customers"] * 0.49 + orders / d["orders"] * 0.50)
    return int(units * _EVENTS_PER_DEFAULT_SHOP)


def scaled_counts(events: int, promoters: int = 300, customers: int = 5000, orders: int = 8000) -> dict[str, int]:
    """Counts in the given ratio that yield a bit more than ``events`` good events."""
    f = events * 1.08 / max(estimate_events(promoters, customers, orders), 1)
    return {
        "promoters": max(5, round(promoters * f)),
        "customers": max(10, round(customers * f)),
        "orders": max(10, round(orders * f)),
    }


class _Shop:
    """The generator's state. Events are pushed into a heap keyed by arrival time and drained
    day by day, so memory holds only what is still in flight (follow-ups of recent orders)."""

    def __init__(self, seed: int, promoters: int, customers: int, orders: int, start: str | date,
                 days: int, bad_lines: int, duplicates: float, reviews: bool, fraud_ring: bool = True) -> None:
        if days < 1:
            raise ValueError("days must be at least 1")
        self.rng = random.Random(seed)
        self.seed = seed
        self.n_promoters, self.n_customers, self.n_orders = max(promoters, 1), max(customers, 1), max(orders, 0)
        self.start = start if isinstance(start, date) else date.fromisoformat(str(start))
        self.days = days
        self.span = days * 86400
        self.bad_lines = bad_lines
        self.dup_rate = duplicates
        self.reviews = reviews
        self.fraud_ring = fraud_ring
        self.heap: list[tuple[float, int, Any]] = []
        self.seq = 0
        self.emitted = 0
        self.id_prefix = f"e{seed}-"
        self._day_prefix: list[str] = []
        self._kinds: list[tuple[int, int] | None] = []
        self.order_seq = 0
        self.refund_seq = 0
        self.click_seq = 0
        self.refunded_orders = 0
        self.recent_clicks: deque[tuple[str, int, int]] = deque(maxlen=512)
        self.last_click: dict[str, tuple[str, int]] = {}
        self.customer_promoter: dict[int, int] = {}

    def rand(self, n: int) -> int:
        """A uniform integer in [0, n): randrange's job at a tenth of its cost (n is small)."""
        return int(self.rng.random() * n)

    # -- time -------------------------------------------------------------------------------

    def ts(self, t: int) -> str:
        d, s = divmod(int(t), 86400)
        while d >= len(self._day_prefix):
            self._day_prefix.append((self.start + timedelta(days=len(self._day_prefix))).isoformat())
        h, rem = divmod(s, 3600)
        m, sec = divmod(rem, 60)
        return f"{self._day_prefix[d]}T{h:02d}:{m:02d}:{sec:02d}{TZ}"

    def day_kind(self, d: int) -> tuple[int, int] | None:
        """(11, 10) or (11, 11) on the double-11 days, else None."""
        kinds = self._kinds
        while d >= len(kinds):
            day = self.start + timedelta(days=len(kinds))
            key = (day.month, day.day)
            kinds.append(key if key in ((11, 10), (11, 11)) else None)
        return kinds[d]

    def time_in_day(self, d: int) -> int:
        cum = _HOUR_CUM[self.day_kind(d)]
        h = bisect.bisect_left(cum, self.rng.random() * cum[-1])
        return d * 86400 + min(h, 23) * 3600 + self.rand(3600)

    # -- the heap -----------------------------------------------------------------------------

    def push(self, t: float, ev: Any, arrival: float | None = None) -> None:
        if arrival is None:
            r = self.rng.random()
            # most events arrive within two minutes; 2 % are delivered up to an hour late
            arrival = t + (r * 120.0 if r < 0.98 else 120.0 + (r - 0.98) * 180_000.0)
        heapq.heappush(self.heap, (arrival, self.seq, ev))
        self.seq += 1

    def drain(self, until: float) -> Iterator[Any]:
        heap, rng, dup = self.heap, self.rng, self.dup_rate
        while heap and heap[0][0] < until:
            arrival, _, ev = heapq.heappop(heap)
            if type(ev) is dict:
                if ev["event_id"] is None:
                    self.emitted += 1
                    ev["event_id"] = f"{self.id_prefix}{self.emitted:08d}"
                    if dup and rng.random() < dup:  # redelivered later: same event, same id
                        heapq.heappush(heap, (arrival + 30 + rng.random() * 7200, self.seq, ev))
                        self.seq += 1
            yield ev

    # -- people -------------------------------------------------------------------------------

    def device(self) -> str:
        return f"dv-{self.rng.getrandbits(48):012x}"

    def ip(self) -> str:
        rand = self.rand
        return f"{_IP_PREFIXES[rand(len(_IP_PREFIXES))]}.{1 + rand(254)}.{1 + rand(254)}"

    def build_network(self) -> None:
        rng, n = self.rng, self.n_promoters
        self.pids = [f"P{i:06d}" for i in range(1, n + 1)]
        n_top = min(n, max(2, round(n * 0.02)))
        joins = sorted(9 * 3600 + self.rand(3 * 3600) for _ in range(n_top))
        late_span = max(int(self.span * 0.75), 86400)
        joins += sorted(13 * 3600 + self.rand(late_span) for _ in range(n - n_top))
        self.join_t = joins
        self.ready_t = [t + 3600 for t in joins]  # a promoter acts from an hour after joining
        self.parent: list[int | None] = []
        self.depth: list[int] = []
        self.children: list[list[int]] = [[] for _ in range(n)]
        shallow: list[int] = []  # depth <= 1: the active recruiters
        eligible: list[int] = []  # depth < MAX_DEPTH
        for i in range(n):
            if i < n_top:
                p = None
            elif n_top <= i < n_top + MAX_DEPTH:  # the forced deep chain: top 0 → … → depth 4
                p = 0 if i == n_top else i - 1
            elif rng.random() < 0.6 and shallow:
                p = shallow[self.rand(len(shallow))]
            else:
                p = eligible[self.rand(len(eligible))]
            d = 0 if p is None else self.depth[p] + 1
            self.parent.append(p)
            self.depth.append(d)
            if p is not None:
                self.children[p].append(i)
            if d <= 1:
                shallow.append(i)
            if d < MAX_DEPTH:
                eligible.append(i)
        # popularity: a few star promoters bring most customers
        weights = [min(rng.paretovariate(1.2), 60.0) for _ in range(n)]
        if n > n_top + MAX_DEPTH:
            weights[n_top + MAX_DEPTH - 1] = max(weights[n_top + MAX_DEPTH - 1], 8.0)  # the deepest sells
        self.p_cum = _cum(weights)
        self.p_device = [self.device() for _ in range(n)]
        self.p_ip = [self.ip() for _ in range(n)]
        for i in range(n):
            ev = {"type": "promoter.joined", "event_id": None, "ts": self.ts(joins[i]),
                  "promoter_id": self.pids[i], "parent_id": None if self.parent[i] is None else self.pids[self.parent[i]],
                  "device_id": self.p_device[i], "ip": self.p_ip[i]}
            self.push(joins[i], ev, arrival=float(joins[i]))  # joins are delivered on time
            # then signs the promoter agreement (电子签约), naming where to be paid
            account = "alipay:" + hashlib.blake2b(self.pids[i].encode(), digest_size=5).hexdigest()
            agreed = {"type": "promoter.agreed", "event_id": None, "ts": self.ts(joins[i] + 300),
                      "promoter_id": self.pids[i], "agreement_version": AGREEMENT_VERSION,
                      "text_sha256": AGREEMENT_SHA256, "payout_account": account}
            self.push(joins[i] + 300, agreed, arrival=float(joins[i] + 300))

    def pick_promoter(self, t: float, exclude: int | None = None) -> int | None:
        k = bisect.bisect_right(self.ready_t, t)
        if k == 0:
            return None
        for _ in range(4):
            i = bisect.bisect_left(self.p_cum, self.rng.random() * self.p_cum[k - 1])
            i = min(i, k - 1)
            if i != exclude:
                return i
        return None

    def build_customers(self) -> None:
        rng, n = self.rng, self.n_customers
        self.cids = [f"C{i:07d}" for i in range(1, n + 1)]
        # arrivals: from half a day in, a little busier before double 11
        w = []
        for d in range(self.days):
            day = self.start + timedelta(days=d)
            w.append(1.8 if day.month == 11 and day.day <= 11 else 1.0)  # pre-sale promotion
        per_day = _allocate(n, w)
        arr: list[int] = []
        for d, k in enumerate(per_day):
            arr.extend(sorted(self.time_in_day(d) for _ in range(k)))
        arr = [max(t, 12 * 3600) for t in arr]
        arr.sort()
        self.c_arrival = arr
        self.c_per_day = per_day
        self.c_device = [self.device() for _ in range(n)]
        self.c_ip = [self.ip() for _ in range(n)]
        self.c_ua = [_UAS[self.rand(len(_UAS))] for _ in range(n)]

    # -- event builders -----------------------------------------------------------------------

    def click(self, t: int, promoter: int, *, visitor: str | None, customer: str | None = None,
              device: str | None = None, ip: str | None = None, ua: str | None = None,
              campaign: str | None = None, reshare: bool = False, owner: str | None = None) -> str:
        rng = self.rng
        parent_click = None
        if reshare and self.recent_clicks:
            cid, p, ct = self.recent_clicks[self.rand(len(self.recent_clicks))]
            if ct < t - 5:
                parent_click, promoter = cid, p  # a shared link keeps its promoter
        self.click_seq += 1
        click_id = f"CK{self.click_seq:09d}"
        ev: dict[str, Any] = {"type": "click", "event_id": None, "ts": self.ts(t), "click_id": click_id,
                              "promoter_id": self.pids[promoter]}
        if visitor:
            ev["visitor_id"] = visitor
        if customer:
            ev["customer_id"] = customer
        ev["device_id"] = device or self.device()
        ev["ip"] = ip or self.ip()
        ev["user_agent"] = ua or _UAS[self.rand(len(_UAS))]
        if rng.random() < 0.6:
            ev["sku"] = CATALOGUE[self.pick_sku()][0]
        if campaign or rng.random() < 0.5:
            ev["campaign"] = campaign or _CAMPAIGNS[self.rand(len(_CAMPAIGNS))]
        if parent_click:
            ev["parent_click_id"] = parent_click
        self.push(t, ev)
        self.recent_clicks.append((click_id, promoter, t))
        if customer or owner:  # remembered so the customer's next order may carry the click id
            self.last_click[customer or owner] = (click_id, t)  # type: ignore[index]
        return click_id

    def bind(self, t: int, customer: str, promoter: int, via: str, click_id: str | None = None,
             arrival: float | None = None) -> None:
        ev: dict[str, Any] = {"type": "customer.bound", "event_id": None, "ts": self.ts(t),
                              "customer_id": customer, "promoter_id": self.pids[promoter], "via": via}
        if click_id:
            ev["click_id"] = click_id
        self.push(t, ev, arrival)

    def pick_sku(self) -> int:
        return min(bisect.bisect_left(_SKU_CUM, self.rng.random() * _SKU_CUM[-1]), len(CATALOGUE) - 1)

    def order(self, t: int, customer: str, device: str, ip: str, *, promoter: int | None = None,
              click_id: str | None = None, follow_ups: bool = True, big: bool = False) -> str:
        rng = self.rng
        self.order_seq += 1
        order_id = f"O{self.order_seq:09d}"
        n_items = 1 if big else bisect.bisect_left(_ITEMS_CUM, rng.random() * _ITEMS_CUM[-1]) + 1
        skus: list[int] = []
        while len(skus) < n_items:
            s = self.pick_sku() if not big else rng.choice(_ELECTRONICS)
            if s not in skus:
                skus.append(s)
        festive = self.day_kind(int(t) // 86400) is not None
        items, paid = [], []
        for s in skus:
            sku, cat, cents = CATALOGUE[s]
            if rng.random() < (0.6 if festive else 0.25):
                cents = max(1, int(cents * (0.7 + rng.random() * 0.25)))  # discount: odd cents
            qty = 1 if cat == "digital" or big or cents > 50_000 else bisect.bisect_left(_QTY_CUM, rng.random() * _QTY_CUM[-1]) + 1
            items.append({"sku": sku, "category": cat, "price": _money(cents), "qty": qty})
            paid.append(cents * qty)
        ev: dict[str, Any] = {"type": "order.paid", "event_id": None, "ts": self.ts(t), "order_id": order_id,
                              "customer_id": customer, "currency": CURRENCY, "items": items,
                              "device_id": device, "ip": ip, "shop_id": SHOP_ID}
        if promoter is not None:
            ev["promoter_id"] = self.pids[promoter]
        if click_id:
            ev["click_id"] = click_id
        arrival = t + rng.random() * 120.0
        self.push(t, ev, arrival)
        if follow_ups:
            self.follow_ups(t, arrival, order_id, [it["sku"] for it in items], paid)
        return order_id

    def follow_ups(self, t: int, paid_arrival: float, order_id: str, skus: list[str], paid: list[int]) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.04:
            tc = t + 600 + self.rand(86400)
            self.push(tc, {"type": "order.cancelled", "event_id": None, "ts": self.ts(tc), "order_id": order_id,
                           "reason": _CANCEL_REASONS[self.rand(len(_CANCEL_REASONS))]})
            return
        completed_at = None
        if rng.random() < 0.625:
            completed_at = t + 2 * 86400 + self.rand(8 * 86400)
            self.push(completed_at, {"type": "order.completed", "event_id": None, "ts": self.ts(completed_at),
                                     "order_id": order_id})
        r = rng.random()
        if r < 0.083:
            refunds = self.partial_refund(skus, paid)
        elif r < 0.083 + 0.031:
            refunds = self.full_refund(skus, paid)
        else:
            return
        self.refunded_orders += 1
        early = self.refunded_orders % 50 == 1  # this order's first refund reaches us before its payment
        tr = t + 3600 + self.rand(12 * 86400)
        for k, body in enumerate(refunds):
            self.refund_seq += 1
            ev = {"type": "order.refunded", "event_id": None, "ts": self.ts(tr), "order_id": order_id,
                  "refund_id": f"R{self.refund_seq:08d}", **body}
            self.push(tr, ev, paid_arrival - 0.5 if early and k == 0 else None)
            tr += 3600 + self.rand(3 * 86400)

    def partial_refund(self, skus: list[str], paid: list[int]) -> list[dict]:
        rng, out = self.rng, []
        total = sum(paid)
        left = list(paid)
        for _ in range(2 if rng.random() < 0.2 else 1):
            if rng.random() < 0.6:  # per item
                idx = rng.sample(range(len(skus)), 2 if len(skus) > 2 and rng.random() < 0.3 else 1)
                body = []
                for i in idx:
                    whole = len(skus) > 1 and rng.random() < 0.4 and left[i] == paid[i]
                    amt = left[i] if whole else int(left[i] * (0.1 + rng.random() * 0.5))
                    if amt > 0:
                        body.append({"sku": skus[i], "amount": _money(amt)})
                        left[i] -= amt
                if body and sum(left) > 0:
                    out.append({"items": body})
                else:  # would have been a full refund: undo
                    for b in body:
                        left[skus.index(b["sku"])] += int(b["amount"].replace(".", ""))
            else:  # order level
                amt = int(sum(left) * (0.05 + rng.random() * 0.4))
                if 0 < amt < sum(left):
                    out.append({"amount": _money(amt)})
                    _spread(left, amt)
        if not out:
            out.append({"amount": _money(max(1, total // 10))})
        return out

    def full_refund(self, skus: list[str], paid: list[int]) -> list[dict]:
        rng = self.rng
        parts = 2 if rng.random() < 0.7 else 3
        if rng.random() < 0.5:  # per item, each item refunded in parts
            left = list(paid)
            out = []
            for k in range(parts):
                body = []
                for i, sku in enumerate(skus):
                    amt = left[i] if k == parts - 1 else int(left[i] * (0.2 + rng.random() * 0.4))
                    if amt > 0:
                        body.append({"sku": sku, "amount": _money(amt)})
                        left[i] -= amt
                if body:
                    out.append({"items": body})
            return out
        total = sum(paid)  # order level: amounts that add up to the order total
        cuts = sorted(rng.sample(range(1, total), parts - 1)) if total > parts else []
        bounds = [0, *cuts, total]
        return [{"amount": _money(b - a)} for a, b in zip(bounds, bounds[1:]) if b > a]

    # -- the story ------------------------------------------------------------------------------

    def schedule_specials(self) -> None:
        """Self-binds, binds to one's upline and downline, the fraud ring, bans, reviews."""
        rng, n = self.rng, self.n_promoters
        k = max(1, n // 100)
        recruited = [i for i in range(n) if self.parent[i] is not None and self.join_t[i] < self.span * 0.6]
        with_kids = [i for i in range(n) if self.children[i] and self.join_t[self.children[i][0]] < self.span * 0.7]
        for _ in range(k):
            if recruited:  # self-bind: a promoter shares their own link and buys through it
                p = recruited[self.rand(len(recruited))]
                t = self.ready_t[p] + self.rand(5 * 86400)
                self.bind(t, self.pids[p], p, "link")
                self.order(t + 3600 + self.rand(86400), self.pids[p], self.p_device[p], self.p_ip[p])
                p = recruited[self.rand(len(recruited))]  # bound to their own recruiter: allowed
                par = self.parent[p]
                assert par is not None
                t = self.ready_t[p] + self.rand(5 * 86400)
                self.bind(t, self.pids[p], par, "qr")
                self.order(t + 3600 + self.rand(86400), self.pids[p], self.p_device[p], self.p_ip[p])
            if with_kids:  # bound to someone in their own downline: a loop, to be refused
                p = with_kids[self.rand(len(with_kids))]
                kid = self.children[p][0]
                t = self.ready_t[kid] + self.rand(3 * 86400)
                self.bind(t, self.pids[p], kid, "manual")
                self.order(t + 3600 + self.rand(86400), self.pids[p], self.p_device[p], self.p_ip[p])

        # the fraud ring: a promoter whose "customers" share their device and buy minutes after binding
        self.fraudster = None
        early = [i for i in range(n) if self.parent[i] is not None and self.join_t[i] < self.span * 0.3]
        if self.fraud_ring and early and self.n_customers >= 20:
            f = early[self.rand(len(early))]
            self.fraudster = f
            n_fake = max(3, self.n_customers // 150)
            t0 = max(self.ready_t[f], int(self.span * 0.35))
            fake_orders = []
            for j in range(n_fake):
                t = t0 + self.rand(2 * 86400)
                cust = f"C9{self.seed % 1000:03d}{j:05d}"
                ip = f"{self.p_ip[f].rsplit('.', 1)[0]}.{1 + int(rng.random() * 254)}"
                ck = self.click(t, f, visitor=f"V9{j:07d}", device=self.p_device[f], ip=ip, campaign="new-user-gift")
                self.bind(t + 20 + self.rand(60), cust, f, "link", ck)
                to = t + 120 + self.rand(900)
                fake_orders.append((to, self.order(to, cust, self.p_device[f], ip, click_id=ck, big=True, follow_ups=rng.random() < 0.5)))
            if self.reviews:
                for to, oid in sorted(fake_orders)[:3]:
                    tr = to + 86400 + self.rand(86400)
                    self.push(tr, {"type": "review.decided", "event_id": None, "ts": self.ts(tr), "order_id": oid,
                                   "decision": "reject", "reviewer": "ops-lin", "note": "same device as the promoter"})
            tb = t0 + 5 * 86400 + self.rand(86400)
            if tb < self.span:
                self.push(tb, {"type": "promoter.banned", "event_id": None, "ts": self.ts(tb),
                               "promoter_id": self.pids[f], "reason": _BAN_REASONS[0]})
        if n >= 20:  # a second ban: a click farmer
            cands = [i for i in range(n) if i != self.fraudster and self.join_t[i] < self.span * 0.4]
            if cands:
                p = cands[self.rand(len(cands))]
                tb = int(self.span * 0.55) + self.rand(86400)
                self.push(tb, {"type": "promoter.banned", "event_id": None, "ts": self.ts(tb),
                               "promoter_id": self.pids[p], "reason": _BAN_REASONS[1]})

    def arrive(self, i: int) -> None:
        """Customer i shows up: usually a click on a promoter's link, then a bind."""
        rng = self.rng
        t = self.c_arrival[i]
        cust, dev, ip, ua = self.cids[i], self.c_device[i], self.c_ip[i], self.c_ua[i]
        visitor = f"V{i + 1:08d}"
        if rng.random() < 0.13:
            return  # organic: finds the shop alone
        p = self.pick_promoter(t)
        if p is None:
            return
        r = rng.random()
        reshare = rng.random() < 0.2
        if r < 0.68:
            via, ck = "link", None
            ck_t = t
            # the click names the promoter it really belongs to (a re-share keeps the sharer's)
            ck = self.click(ck_t, p, visitor=visitor, device=dev, ip=ip, ua=ua, reshare=reshare, owner=cust)
            p = self.recent_clicks[-1][1]
            tb = t + 5 + self.rand(600)
        elif r < 0.83:
            via, ck, tb = "qr", None, t
        elif r < 0.97:
            via = "coupon"
            self.click(t, p, visitor=visitor, device=dev, ip=ip, ua=ua, campaign="new-user-gift", owner=cust)
            ck, tb = None, t + 30 + self.rand(1800)
        else:
            via, ck, tb = "manual", None, t + self.rand(3600)
        self.customer_promoter[i] = p
        if i % 200 == 7:  # a late bind: delivered days later, after an order it should attribute
            self.bind(tb, cust, p, via, ck, arrival=tb + 86400 + self.rand(2 * 86400))
            self.order(tb + 3600 + self.rand(5 * 3600), cust, dev, ip)
        else:
            self.bind(tb, cust, p, via, ck)
        if rng.random() < 0.06:  # later, another promoter's link: a re-bind request
            t2 = tb + 2 * 86400 + self.rand(28 * 86400)
            p2 = self.pick_promoter(t2, exclude=p)
            if p2 is not None:
                ck2 = self.click(t2, p2, visitor=visitor, customer=cust, device=dev, ip=ip, ua=ua)
                self.bind(t2 + 5 + self.rand(300), cust, p2, "link", ck2)

    def day(self, d: int) -> None:
        rng = self.rng
        # customers arriving today
        lo = bisect.bisect_left(self.c_arrival, d * 86400)
        hi = bisect.bisect_left(self.c_arrival, (d + 1) * 86400)
        for i in range(lo, hi):
            self.arrive(i)
        # visitors who click and do not register; re-shares among them
        for _ in range(self.v_clicks[d]):
            t = self.time_in_day(d)
            p = self.pick_promoter(t)
            if p is not None:
                self.click(t, p, visitor=f"V{self.n_customers + rng.getrandbits(40) % 10**8:09d}",
                           reshare=rng.random() < 0.25)
        # known customers coming back through a link (the click carries customer_id)
        for _ in range(self.r_clicks[d]):
            t = self.time_in_day(d)
            k = bisect.bisect_left(self.c_arrival, t - 3600)
            if k == 0:
                continue
            i = self.rand(k)
            p = self.customer_promoter.get(i)
            if p is None or rng.random() < 0.3:
                p = self.pick_promoter(t)
            if p is not None:
                self.click(t, p, visitor=f"V{i + 1:08d}", customer=self.cids[i], device=self.c_device[i],
                           ip=self.c_ip[i], ua=self.c_ua[i])
        # today's orders
        for _ in range(self.o_per_day[d]):
            t = self.time_in_day(d)
            k = bisect.bisect_left(self.c_arrival, t - 600)
            if k == 0:
                k, t = 1, self.c_arrival[0] + 3600
            if rng.random() < 0.4:  # new customers convert: pick among the last three days' arrivals
                j = bisect.bisect_left(self.c_arrival, t - 3 * 86400)
                i = j + self.rand(k - j) if k > j else self.rand(k)
            else:
                i = self.rand(k)
            cust = self.cids[i]
            ck = None
            last = self.last_click.get(cust)
            if last and t - 86400 < last[1] < t and rng.random() < 0.5:
                ck = last[0]
            promoter = None
            if rng.random() < 0.05:  # a promoter code typed at checkout
                promoter = self.pick_promoter(t)
            self.order(t, cust, self.c_device[i], self.c_ip[i], promoter=promoter, click_id=ck)

    def bad_line(self, j: int, t: int) -> str:
        """A malformed line, one of six kinds in turn; ids cannot collide with good events."""
        eid = f"{self.id_prefix}bad{j:06d}"
        ts = self.ts(t)
        kind = j % 6
        if kind == 0:  # bad JSON: the line was cut off
            return orjson.dumps({"type": "order.paid", "event_id": eid, "ts": ts, "order_id": f"OBAD{j:06d}"}).decode()[:-20]
        if kind == 1:  # unknown type
            obj: dict[str, Any] = {"type": "order.shipped", "event_id": eid, "ts": ts, "order_id": f"OBAD{j:06d}"}
        elif kind == 2:  # float money
            obj = {"type": "order.paid", "event_id": eid, "ts": ts, "order_id": f"OBAD{j:06d}", "customer_id": "C0000001",
                   "currency": CURRENCY, "items": [{"sku": "SKU-0002", "category": CATALOGUE[1][1], "price": 59.9, "qty": 1}]}
        elif kind == 3:  # missing field
            obj = {"type": "order.paid", "event_id": eid, "ts": ts, "order_id": f"OBAD{j:06d}",
                   "currency": CURRENCY, "items": [{"sku": "SKU-0003", "category": CATALOGUE[2][1], "price": "19.90", "qty": 1}]}
        elif kind == 4:  # bad timestamp
            obj = {"type": "click", "event_id": eid, "ts": ts[:10] + " " + ts[11:19], "click_id": f"CKBAD{j:06d}",
                   "promoter_id": "P000001"}
        else:  # money with three decimals
            obj = {"type": "order.refunded", "event_id": eid, "ts": ts, "order_id": f"OBAD{j:06d}",
                   "refund_id": f"RBAD{j:06d}", "amount": "12.345"}
        return orjson.dumps(obj).decode()

    def run(self) -> Iterator[Any]:
        rng = self.rng
        self.build_network()
        self.build_customers()
        day_w = [{None: 1.0, (11, 10): 3.0, (11, 11): 7.0}[self.day_kind(d)] * (1.0 + d / (self.days * 2)) for d in range(self.days)]
        self.o_per_day = _allocate(self.n_orders, day_w)
        self.v_clicks = _allocate(int(self.n_customers * 1.6), day_w)
        self.r_clicks = _allocate(int(self.n_customers * 0.4), day_w)
        self.schedule_specials()
        for j in range(self.bad_lines):
            t = self.rand(self.span)
            self.push(t, self.bad_line(j, t))
        for d in range(self.days):
            self.day(d)
            yield from self.drain((d + 1) * 86400)
        yield from self.drain(float("inf"))


_ITEMS_CUM = _cum([55, 25, 12, 6, 2])
_QTY_CUM = _cum([75, 18, 7])
_ELECTRONICS = [i for i, (_, cat, _) in enumerate(CATALOGUE) if cat == "electronics"]


def _spread(left: list[int], amount: int) -> None:
    """Take ``amount`` off the items' remaining amounts in proportion (for bookkeeping only)."""
    total = sum(left)
    taken = 0
    for i in range(len(left)):
        share = amount * left[i] // total if total else 0
        left[i] -= share
        taken += share
    for i in range(len(left)):
        extra = min(left[i], amount - taken)
        left[i] -= extra
        taken += extra


def generate_shop(
    seed: int,
    *,
    promoters: int = DEFAULTS["promoters"],
    customers: int = DEFAULTS["customers"],
    orders: int = DEFAULTS["orders"],
    start: str | date = "2026-10-01",
    days: int = 61,
    bad_lines: int = 0,
    events: int | None = None,
    duplicates: float = 0.001,
    reviews: bool = True,
    fraud_ring: bool = True,
) -> Iterator[dict | str]:
    """The events of a shop in arrival order: dicts (good events) and, when ``bad_lines`` > 0,
    that many ``str`` items (malformed raw lines). ``events=N``: exactly N good events, the
    counts scaled from ``promoters``/``customers``/``orders`` in their ratio. ``fraud_ring=False``
    leaves out the fraud ring, so that the traffic is honest (:mod:`tuike.lab.fraud_shop` adds
    labelled fraud to it)."""
    if events is not None:
        counts = scaled_counts(events, promoters, customers, orders)
        promoters, customers, orders = counts["promoters"], counts["customers"], counts["orders"]
    shop = _Shop(seed, promoters, customers, orders, start, days, bad_lines, duplicates, reviews, fraud_ring)
    if events is None:
        yield from shop.run()
        return
    good = 0
    for item in shop.run():
        if type(item) is dict:
            if good >= events:
                continue  # past the cut: only the remaining bad lines still come out
            good += 1
        yield item


def write_events(events: Iterable[dict | str], path: str | os.PathLike[str], *,
                 progress: Progress | bool | None = None) -> int:
    """Write events as JSON Lines (gzip when the name ends in ``.gz``; byte-identical for the same
    input: no time stamp in the gzip header). Dicts are encoded with orjson, strings written as
    they are. Returns the number of lines."""
    p = Path(path)
    if isinstance(progress, Progress):
        prog = progress
    else:
        prog = Progress("wrote", "events", force=progress if isinstance(progress, bool) else None)
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    n = 0
    buf: list[bytes] = []
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as raw:
        out: Any = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=3) if p.name.endswith(".gz") else raw
        try:
            for ev in events:
                buf.append(dumps(ev, option=opt) if type(ev) is dict else (ev + "\n").encode())
                if len(buf) >= 8192:
                    out.write(b"".join(buf))
                    n += len(buf)
                    buf.clear()
                    prog(n)
            out.write(b"".join(buf))
            n += len(buf)
        finally:
            if out is not raw:
                out.close()
    prog.done(n)
    return n
