"""Every analytical query (schemas/analytics.py: the dashboard panels) timed on a generated ledger
of 10,000,000 rows, on the embedded chDB ledger and on the ClickHouse server.

    python -m benchmarks.dashboard_queries [--rows 10000000] [--runs 10]     (make bench-dashboard)
        [--clickhouse clickhouse://127.0.0.1:9000/tuike_bench_dashboard] [--engines chdb,server]
        [--panels kpis,roi_by_rule] [--warmup 1] [--budget 8] [--timeout 40] [--rebuild | --build-only | --dry-run] [--seed 1]

1. *build*: a shop of twelve months (2025-12 .. 2026-11) written straight into the ledgers as
   :class:`sinks.Batch` writes of about 200k ledger rows (no engine run, which would
   dominate): ~20,000 promoters in a tree (``promoter.joined`` rows with their parent), ~2.5M
   orders of 1-3 items (a click on ~60% of them, ~3 clicks per order, 8 campaign tags), and for
   the orders a promoter earned on: ``accrue`` rows for levels 1-3 of every item, a ``confirm``
   move (pending -> confirmed) 10-20 days later for most, ~5% refunds and cancellations
   (``reverse``), ~0.5% fraud holds (``hold`` into ``held``, a ``fraud_scores`` row, half of them
   reviewed), bindings, order events, and every past month settled (``settlements`` rows and
   ``bonus``/``tax``/``settle`` rows in the settlement generation). Everything scales with
   ``--rows`` (the ledger rows, about 10M by default); the seed is fixed. The ledgers live in
   ``bench-data/dashboard/chdb`` and in database ``tuike_bench_dashboard`` of the server, each
   with a ``bench_build`` marker table: a second run finds them and only times. The shop is
   generated into chDB (the work of a write is Python's: converting rows to typed columns) and
   the server gets a copy of chDB's tables through TabSeparated files and ``clickhouse-client``.
   After a build every table is ``OPTIMIZE … FINAL``-ed (one part per partition: the steady state
   of a shop whose background merges have caught up, and the same on both engines).
2. *time*: per engine, every panel for the last 30 days of the data (bucket ``hour``), again for
   one busy promoter, and for all twelve months (bucket ``day``), through :func:`tuike.insights.panels.run_panel`
   (the dashboard's path: SQL, result conversion, cost ratios): ``--warmup`` runs (1), then ``--runs``
   timed runs (``--budget S``: at least 5, then stop once a panel has taken S seconds); a run
   longer than ``--timeout`` (40 s) is abandoned (killed on the server) and the panel reported as
   timed out. A baseline query (``SELECT count() FROM ledger_entries``) is timed in the same run,
   before the panels and a few times between them; the machine is shared and noisy, so the ratio
   of a panel's p50 to the baseline's p50 is what compares across runs. Panels whose p95 is over
   300 ms are marked ``!``.

Progress goes to stderr, the tables to stdout. If the server cannot be reached, only chDB is timed.
"""
from __future__ import annotations

import argparse
from itertools import accumulate
import bisect
import gc
import hashlib
import logging
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from random import Random
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "bench-data" / "dashboard" / "chdb"
DEFAULT_URL = "clickhouse://127.0.0.1:9000/tuike_bench_dashboard"
SPEC_VERSION = 3  # bump when the generated shop changes: cached ledgers are rebuilt
SLOW_MS = 300.0

UTC = timezone.utc
START = int(datetime(2025, 12, 1, tzinfo=UTC).timestamp())
END = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())  # exclusive: "now" of the generated shop
MONTHS = [int(datetime(2025 + (11 + k) // 12, (11 + k) % 12 + 1, 1, tzinfo=UTC).timestamp()) for k in range(13)]
PERIODS = [f"{2025 + (11 + k) // 12:04d}-{(11 + k) % 12 + 1:02d}" for k in range(12)]
SETTLED_MONTHS = 11  # 2025-12 .. 2026-10 are settled; 2026-11 is the current month
DAY = 86400

# commission rules: rates in millionths for levels 1..3 (the rule id is what the ledger keeps)
RULES = {"cosmetics": ("r-cosmetics", (150_000, 50_000, 20_000)),
         "electronics": ("r-electronics", (30_000, 10_000, 5_000))}
DEFAULT_RULE = ("default", (80_000, 30_000, 10_000))
CAP_CENTS = 8_000  # a line earns at most 80.00 per level ("+capped")
CATEGORIES = (("cosmetics", 30, 5.0), ("apparel", 20, 5.0), ("food", 15, 3.8), ("home", 15, 4.8),
              ("electronics", 10, 6.5), ("baby", 10, 4.6))  # (category, share %, log-price mean)
CAMPAIGNS = ("", "double11", "newyear", "spring", "618", "live", "moments", "vip", "koc")
HOUR_WEIGHTS = (3, 2, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 9, 8, 8, 8, 8, 8, 9, 11, 13, 14, 12, 7)
USER_AGENTS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) MicroMessenger/8.0.54",
               "Mozilla/5.0 (Linux; Android 15; V2309A) MicroMessenger/8.0.53",
               "Mozilla/5.0 (Linux; Android 14; 23127PN0CC) aweme/32.5.0",
               "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) Mobile/15E148",
               "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36",
               "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Safari/605.1.15")
REASONS = ("F01", "F02", "F03", "F04", "F05", "F06", "F07", "F08", "F09", "F10", "F11", "F12", "F13", "F14", "F15")
# fact tables the shop writes (their base tables are <name>_raw)
FACTS = ("promoters", "orders", "order_items", "clicks", "bindings", "order_events", "fraud_scores", "settlements")
BUILT_TABLES = ("ledger_entries",) + tuple(f"{t}_raw" for t in FACTS)
# derived from the ledger: one row per order, which the per-order panels read (engine/standing.py;
# the engine writes it as it goes, the build bypasses the engine so it is derived once the ledger
# is written), and the hourly sums (every write of ledger rows keeps them)
DERIVED_TABLES = ("order_standings_raw", "ledger_hours_raw")


def say(*parts: Any, end: str = "\n") -> None:
    print(*parts, file=sys.stderr, end=end, flush=True)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# The shop


@dataclass
class Scale:
    rows: int
    promoters: int
    orders: int
    customers: int
    skus: int
    promoted: float  # share of customers a promoter brought (their orders earn commission)

    @classmethod
    def of(cls, rows: int) -> "Scale":
        s = rows / 10_000_000
        return cls(rows, max(60, round(20_000 * s)), max(250, round(2_500_000 * s)),
                   max(100, round(900_000 * s)), max(100, min(3_000, round(3_000 * s ** 0.5))), PROMOTED)


# Share of customers bound to a promoter; with it the shop's ledger is about 4 rows per order
# (≈ --rows for 2.5M orders per 10M rows). Measured with --dry-run.
PROMOTED = 0.335


@dataclass
class Counts:
    ledger: int = 0
    settlement_rows: int = 0
    facts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def fact_rows(self) -> int:
        return sum(self.facts.values())


class Cents:
    """Exact money from integer cents, cached (a shop has few distinct amounts)."""

    def __init__(self) -> None:
        self._cache: dict[int, Decimal] = {}

    def __call__(self, c: int) -> Decimal:
        d = self._cache.get(c)
        if d is None:
            d = self._cache[c] = Decimal(c).scaleb(-2)
        return d


def _day_weight(d: date) -> float:
    w = 1.0 + 0.6 * (d - date(2025, 12, 1)).days / 365  # a growing shop
    if d.weekday() >= 5:
        w *= 1.25
    if d.month == 11 and d.day <= 11:  # 双十一: pre-sales from the 1st, the peak on the 11th
        w *= 1.6 + (5.0 if d.day == 11 else 1.0 if d.day == 10 else 0.0)
    elif d.month == 12 and d.day == 12:
        w *= 3.0
    elif d.month == 6 and 16 <= d.day <= 18:
        w *= 2.5
    elif d.month == 2 and 14 <= d.day <= 22:  # Spring Festival: couriers rest
        w *= 0.5
    return w


def _split(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders), summing exactly."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    out = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[: total - sum(out)]:
        out[i] += 1
    return out


def _blake(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Shop:
    """A deterministic shop: its promoter tree, customers and products, and the stream of batches."""

    def __init__(self, scale: Scale, seed: int) -> None:
        self.scale = scale
        self.rng = rng = Random(seed)
        P = scale.promoters
        # promoters: 70% joined before the data starts, the rest during it; early ones are busiest
        before = int(P * 0.7)
        t0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
        joins = sorted([t0 + int(rng.random() * (START - t0)) for _ in range(before)]
                       + [START + int(rng.random() * (END - 10 * DAY - START)) for _ in range(P - before)])
        self.join_ts = joins
        self.pid = [f"P{i:06d}" for i in range(P)]
        roots = max(3, min(20, P // 200))  # founders: busy, and nobody above them
        self.parent = [-1 if i < roots or rng.random() < 0.06 else int(i * rng.random() ** 1.6) for i in range(P)]
        self.chain: list[tuple[int, ...]] = []
        for i in range(P):
            c = [i]
            while len(c) < 3 and self.parent[c[-1]] >= 0:
                c.append(self.parent[c[-1]])
            self.chain.append(tuple(c))
        w = [1.0 / (i + 8) ** 0.9 * rng.lognormvariate(0, 0.5) for i in range(P)]
        self.promoter_cum = _cumulative(w)
        # customers: repeat buyers are few and frequent
        C = scale.customers
        self.customer_cum = _cumulative([1.0 / (i + 50) ** 0.6 for i in range(C)])
        # products
        cats = [c for c, share, _ in CATEGORIES for _ in range(share)]
        mu = {c: m for c, _, m in CATEGORIES}
        self.sku: list[tuple[str, str, int]] = []  # (sku, category, price cents)
        for k in range(scale.skus):
            cat = cats[int(rng.random() * len(cats))]
            price = max(990, int(math.exp(rng.gauss(mu[cat], 0.6))) * 100 - 10)  # ….90
            self.sku.append((f"SKU{k:05d}", cat, price))
        self.sku_cum = _cumulative([1.0 / (k + 10) ** 0.8 for k in range(scale.skus)])
        # promotion links: a promoter shares a few products (and the shop's page, sku ''), not the
        # whole catalogue; a click lands on one of their links
        self.links = [tuple(self.sku[bisect.bisect_right(self.sku_cum, rng.random() * self.sku_cum[-1])][0]
                            if rng.random() < 0.8 else "" for _ in range(1 + min(12, int(rng.lognormvariate(0.8, 0.7)))))
                      for _ in range(P)]
        self.money = Cents()
        ppm = {r * k for _, rr in (DEFAULT_RULE, *RULES.values()) for r in rr for k in (1, 2)}  # 2: double11
        self.rates = {m: Decimal(m).scaleb(-6) for m in ppm}  # Decimal('0.150000')

    # -- the stream ------------------------------------------------------------------------------

    def batches(self, batch_rows: int) -> Iterator[tuple[list, dict[str, list[dict]], int]]:
        """``(entries, facts, generation)`` of about ``batch_rows`` ledger rows each, in order."""
        from schemas.ledger_entry import LedgerEntry, entry_id
        from schemas.analytics import SETTLEMENT_GENERATION

        sc, rng, money = self.scale, self.rng, self.money
        pid, chain, join_ts = self.pid, self.chain, self.join_ts
        P = sc.promoters
        rates = self.rates
        entries: list = []
        facts: dict[str, list[dict]] = defaultdict(list)
        facts["promoters"] = [
            {"event_id": f"pj-{pid[i]}", "type": "promoter.joined", "ts": join_ts[i], "promoter_id": pid[i],
             "parent_id": pid[self.parent[i]] if self.parent[i] >= 0 else "", "device_id": f"D{9_000_000 + i}",
             "ip": f"36.{i % 251}.{i // 251 % 251}.{i % 89 + 1}", "reason": ""} for i in range(P)]
        bound: dict[int, int] = {}  # customer -> promoter (promoted customers)
        unbound: set[int] = set()
        conf = [defaultdict(int) for _ in range(SETTLED_MONTHS)]  # month -> payee -> cents into confirmed
        own_gmv = [defaultdict(int) for _ in range(SETTLED_MONTHS)]
        carry: dict[int, int] = defaultdict(int)
        month_of = lambda ts: bisect.bisect_right(MONTHS, ts) - 1  # noqa: E731
        n_order = n_click = n_visitor = 0
        days = [date(2025, 12, 1) + timedelta(days=k) for k in range((END - START) // DAY)]
        per_day = _split(sc.orders, [_day_weight(d) for d in days])
        p_click_other = max(0.0, (0.60 - 0.9 * sc.promoted) / (1 - sc.promoted))
        extra_clicks = (0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5)  # mean 2.5: ~3 clicks per order with its own
        hour_cum = _cumulative(list(HOUR_WEIGHTS))
        hours = range(24)
        items_of = (1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3)
        qty_of = (1,) * 17 + (2, 2, 3)

        rand = rng.random
        p_cum, p_total = self.promoter_cum, self.promoter_cum[-1]
        s_cum, s_total = self.sku_cum, self.sku_cum[-1]
        sku_table = self.sku

        def pick_promoter(t: int) -> int:  # weighted, among those who had joined by t
            for _ in range(6):
                i = bisect.bisect_right(p_cum, rand() * p_total)
                if join_ts[i] <= t:
                    return i
            return 0

        def link_of(promoter: int) -> str:  # the product of one of the promoter's links ('' for the shop)
            skus = self.links[promoter]
            return skus[int(rand() * len(skus))]

        def add(part: str, event: str, ts: int, sku: str, benef: int, level: int, kind: str, cents: int,
                rate: Decimal, rule: str, status: str) -> None:
            """One ledger row of the current order (``oid``, ``cid``)."""
            entries.append(LedgerEntry(_blake(f"{oid}|{sku}|{level}|{part}"), event, ts * 1000, oid,
                                       sku, cid, pid[benef], level, kind, money(cents), rate, rule, "CNY", status))
            if status == "confirmed":
                m = month_of(ts)
                if m < SETTLED_MONTHS:
                    conf[m][benef] += cents

        def settle(m: int) -> Iterator[tuple[list, dict[str, list[dict]], int]]:
            """Period ``m`` (an index into PERIODS) as `tuike settle` leaves it."""
            period, period_end = PERIODS[m], MONTHS[m + 1]
            settled_at = period_end + 2 * DAY + 10 * 3600
            rows, sett = [], []
            for payee in sorted(set(conf[m]) | set(own_gmv[m]) | {p for p, c in carry.items() if c}):
                balance = carry[payee] + conf[m][payee]
                gmv = own_gmv[m][payee]
                tier, brate = ("5000", 20_000) if gmv >= 500_000 else ("1000", 10_000) if gmv >= 100_000 else ("", 0)
                bonus = (gmv * brate + 500_000) // 1_000_000
                gross = balance + bonus
                taxable = rate = quick = tax = net = 0
                if gross <= 0:
                    status = "carried" if gross < 0 or bonus else "nothing"
                else:
                    if gross <= 80_000:
                        pass
                    elif gross <= 400_000:
                        taxable, rate = gross - 80_000, 20
                    else:
                        taxable = gross * 8 // 10
                        rate, quick = (20, 0) if taxable <= 2_000_000 else (30, 200_000) if taxable <= 5_000_000 else (40, 700_000)
                    tax = max(0, (taxable * rate + 50) // 100 - quick) if rate else 0
                    net = gross - tax
                    status = "paid" if net >= 1_000 else "carried"
                    if status == "carried":
                        tax = net = 0
                carried = gross if status != "paid" else 0
                carry[payee] = carried
                p = pid[payee]
                tv = "cn-labor-2019"
                sett.append({"period": period, "payee": p, "payer": "tuike-shop", "balance": money(balance),
                             "gmv": money(gmv), "tier": tier, "bonus_rate": rates_bonus[brate], "bonus": money(bonus),
                             "income": money(gross if status == "paid" else 0), "taxable": money(taxable),
                             "rate": rates_bonus[rate * 10_000], "quick_deduction": money(quick), "tax": money(tax),
                             "net": money(net), "carried": money(carried), "status": status, "method": "per_payment",
                             "table_version": tv if status == "paid" else "",
                             "statement_sha256": hashlib.sha256(f"{period}/{p}/{net}".encode()).hexdigest(),
                             "settled_at": settled_at})
                ts_ms = (period_end - 1) * 1000
                cause = f"settle:{period}"

                def srow(kind: str, part: str, cents: int, status_after: str, r: Decimal, rule: str) -> None:
                    rows.append(LedgerEntry(entry_id("settlement", period, p, kind, part), cause, ts_ms, "", "", "", p, 0,
                                            kind, money(cents), r, rule, "CNY", status_after))

                if bonus:
                    srow("bonus", "", bonus, "confirmed", rates_bonus[brate], f"tier:{tier}")
                if status == "paid":
                    if tax:
                        srow("tax", "", -tax, "confirmed", rates_bonus[rate * 10_000], tv)
                    srow("settle", "out", -net, "confirmed", ZERO6, tv)
                    srow("settle", "in", net, "settled", ZERO6, tv)
            conf[m].clear()
            own_gmv[m].clear()
            yield rows, {"settlements": sett}, SETTLEMENT_GENERATION

        rates_bonus = {m: Decimal(m).scaleb(-6) for m in (0, 10_000, 20_000, 200_000, 300_000, 400_000)}

        for d_index, (day, n_orders) in enumerate(zip(days, per_day)):
            day_start = START + d_index * DAY
            m_today = month_of(day_start)
            if day.day == 1 and 1 <= m_today <= SETTLED_MONTHS:
                yield from settle(m_today - 1)
            campaigns_today = _campaign_weights(day)
            camp_cum = _cumulative(campaigns_today)
            camp_total = camp_cum[-1]
            double11 = day.month == 11 and day.day <= 11
            times = sorted(day_start + h * 3600 + int(rand() * 3600)
                           for h in rng.choices(hours, cum_weights=hour_cum, k=n_orders))
            custs = rng.choices(range(sc.customers), cum_weights=self.customer_cum, k=n_orders)
            for t, cust in zip(times, custs):
                n_order += 1
                oid = f"O{n_order:08d}"
                cid = f"C{cust:07d}"
                # who brought the customer
                promoter = bound.get(cust, -1)
                if promoter < 0 and cust not in unbound:
                    if rand() < sc.promoted:
                        promoter = pick_promoter(t)
                    else:
                        unbound.add(cust)
                attributed = promoter >= 0
                click_id = ""
                campaign = ""
                if (rand() < 0.9) if attributed else (rand() < p_click_other):
                    n_click += 1
                    click_id = f"K{n_click:09d}"
                    campaign = CAMPAIGNS[bisect.bisect_right(camp_cum, rand() * camp_total)]
                    cp = promoter if attributed else pick_promoter(t)
                    ct = t - int(rand() * 7200)
                    n_visitor += 1
                    facts["clicks"].append(_click(click_id, ct, pid[cp], n_visitor, cid, link_of(cp), campaign))
                    if attributed and cust not in bound:
                        facts["bindings"].append({"event_id": f"bd-{cid}", "ts": ct + 5, "customer_id": cid,
                                                  "promoter_id": pid[cp], "via": "click", "click_id": click_id})
                if attributed and cust not in bound:
                    bound[cust] = promoter
                    if not click_id:  # bound by a shared poster (no click)
                        facts["bindings"].append({"event_id": f"bd-{cid}", "ts": t - 60, "customer_id": cid,
                                                  "promoter_id": pid[promoter], "via": "poster", "click_id": ""})
                # browsing clicks that led to nothing (a few bind a visitor who never ordered)
                for _ in range(extra_clicks[int(rand() * len(extra_clicks))]):
                    n_click += 1
                    n_visitor += 1
                    k = f"K{n_click:09d}"
                    cp = pick_promoter(t)
                    ct = day_start + int(rand() * DAY)
                    camp = CAMPAIGNS[bisect.bisect_right(camp_cum, rand() * camp_total)]
                    facts["clicks"].append(_click(k, ct, pid[cp], n_visitor, "", link_of(cp), camp))
                    if rand() < 0.04:
                        v = f"V{n_visitor:09d}"
                        facts["bindings"].append({"event_id": f"bd-{v}", "ts": ct + 3, "customer_id": v,
                                                  "promoter_id": pid[cp], "via": "click", "click_id": k})
                # the order and its items
                n_items = items_of[int(rand() * len(items_of))]
                skus = set()
                lines = []
                for k in [bisect.bisect_right(s_cum, rand() * s_total) for _ in range(n_items)]:
                    if k in skus:
                        continue
                    skus.add(k)
                    sku, cat, price = self.sku[k]
                    qty = qty_of[int(rand() * len(qty_of))]
                    lines.append((sku, cat, price * qty))
                    facts["order_items"].append({"order_id": oid, "sku": sku, "category": cat, "price": money(price),
                                                 "qty": qty, "paid_amount": money(price * qty), "ts": t})
                paid = sum(x[2] for x in lines)
                facts["orders"].append({"event_id": f"{oid}:paid", "order_id": oid, "ts": t, "customer_id": cid,
                                        "currency": "CNY", "shop_id": "shop-1", "promoter_id": pid[promoter] if attributed else "",
                                        "click_id": click_id, "device_id": f"D{cust}", "ip": _ip(cust),
                                        "item_count": len(lines), "paid_amount": money(paid)})
                # what happens to the order later
                r = rand()
                refund_t = t + DAY + int(rand() * 24 * DAY) if r < 0.05 else 0
                done_t = t + 3 * DAY + int(rand() * 4 * DAY)
                confirm_t = done_t + 7 * DAY + int(rand() * 3 * DAY)
                if refund_t and refund_t < END:
                    kind = "order.refunded" if rand() < 0.7 else "order.cancelled"
                    facts["order_events"].append({"event_id": f"{oid}:refund", "type": kind, "order_id": oid, "ts": refund_t,
                                                  "refund_id": f"R{oid}" if kind == "order.refunded" else "",
                                                  "amount": money(paid) if kind == "order.refunded" else money(0),
                                                  "detail": ";".join(f"{s}={money(a)}" for s, _, a in lines)
                                                  if kind == "order.refunded" else "customer"})
                elif not refund_t and done_t < END:
                    facts["order_events"].append({"event_id": f"{oid}:done", "type": "order.completed", "order_id": oid,
                                                  "ts": done_t, "refund_id": "", "amount": money(0), "detail": ""})
                if not attributed:
                    continue
                # the commission: accrue at payment, then hold / refund / confirm
                terms = []
                for sku, cat, line_paid in lines:
                    rule, rr = RULES.get(cat, DEFAULT_RULE)
                    if double11 and campaign == "double11":
                        rule, rr = rule + "*double11", tuple(2 * x for x in rr)
                    for level, benef in enumerate(chain[promoter], 1):
                        rm = rr[level - 1]
                        a = (line_paid * rm + 500_000) // 1_000_000
                        lr = rule
                        if a > CAP_CENTS:
                            a, lr = CAP_CENTS, rule + "+capped"
                        if a:
                            terms.append((sku, benef, level, a, rates[rm], lr, line_paid))
                for sku, benef, level, a, rate, rule, _ in terms:
                    add("a", f"{oid}:paid", t, sku, benef, level, "accrue", a, rate, rule, "pending")
                state = "pending"
                if rand() < 0.005 / 0.95 and not refund_t:  # fraud hold
                    hold_t = t + 60 + int(rand() * 600)
                    score = 80 + int(rand() * 120)
                    codes = sorted(rng.sample(REASONS, 1 + int(rand() * 3)))
                    facts["fraud_scores"].append({"score_id": _blake(f"score|{oid}|{','.join(codes)}"), "order_id": oid,
                                                  "ts": hold_t, "customer_id": cid, "promoter_id": pid[promoter],
                                                  "score": money(score), "reasons": ",".join(codes),
                                                  "features": '{"clicks_1h": %d, "orders_24h": %d}' % (score // 7, score // 40),
                                                  "held": 1})
                    for sku, benef, level, a, rate, rule, _ in terms:
                        add("h-", f"{oid}:hold", hold_t, sku, benef, level, "hold", -a, rate, rule, "pending")
                        add("h+", f"{oid}:hold", hold_t, sku, benef, level, "hold", a, rate, rule, "held")
                    state = "held"
                    if rand() < 0.5:  # reviewed
                        review_t = hold_t + DAY + int(rand() * 3 * DAY)
                        if review_t < END:
                            approve = rand() < 0.7
                            facts["order_events"].append({"event_id": f"{oid}:review", "type": "review.decided",
                                                          "order_id": oid, "ts": review_t, "refund_id": "", "amount": money(0),
                                                          "detail": "approve" if approve else "reject"})
                            for sku, benef, level, a, rate, rule, _ in terms:
                                if approve:
                                    add("v-", f"{oid}:review", review_t, sku, benef, level, "release", -a, rate, rule, "held")
                                    add("v+", f"{oid}:review", review_t, sku, benef, level, "release", a, rate, rule, "pending")
                                else:
                                    add("x", f"{oid}:review", review_t, sku, benef, level, "reverse", -a, rate, rule, "held")
                            state = "pending" if approve else "reversed"
                elif rand() < 0.01:  # scored but not held
                    facts["fraud_scores"].append({"score_id": _blake(f"score|{oid}|F11"), "order_id": oid, "ts": t + 30,
                                                  "customer_id": cid, "promoter_id": pid[promoter], "score": money(40),
                                                  "reasons": "F11", "features": '{"value_ratio": 6.2}', "held": 0})
                if state == "pending":
                    confirm_first = not refund_t or (refund_t > confirm_t and rand() < 0.4)
                    if confirm_first and confirm_t < END:
                        for sku, benef, level, a, rate, rule, line_paid in terms:
                            add("c-", f"{oid}:done", confirm_t, sku, benef, level, "confirm", -a, rate, rule, "pending")
                            add("c+", f"{oid}:done", confirm_t, sku, benef, level, "confirm", a, rate, rule, "confirmed")
                            if level == 1:
                                m = month_of(confirm_t)
                                if m < SETTLED_MONTHS:
                                    own_gmv[m][benef] += line_paid
                        state = "confirmed"
                    if refund_t and refund_t < END:
                        refund_t = max(refund_t, confirm_t + 3600) if state == "confirmed" else refund_t
                        if refund_t < END:
                            for sku, benef, level, a, rate, rule, _ in terms:
                                add("r", f"{oid}:refund", refund_t, sku, benef, level, "reverse", -a, rate, rule, state)
                if len(entries) >= batch_rows:
                    yield entries, facts, 0
                    entries, facts = [], defaultdict(list)
        if entries or any(facts.values()):
            yield entries, facts, 0


ZERO6 = Decimal("0.000000")


def _cumulative(weights) -> list[float]:
    return list(accumulate(weights))


def _campaign_weights(d: date) -> list[float]:
    # '', double11, newyear, spring, 618, live, moments, vip, koc
    w = [40.0, 1.0, 1.0, 1.0, 1.0, 12.0, 10.0, 5.0, 6.0]
    if (d.month == 10 and d.day >= 20) or (d.month == 11 and d.day <= 11):
        w[1] = 60.0
    if d.month in (12, 1) and (d.month == 1 or d.day >= 20):
        w[2] = 25.0
    if d.month in (3, 4):
        w[3] = 25.0
    if d.month == 6 and d.day <= 18:
        w[4] = 40.0
    return w


def _ip(n: int) -> str:
    return f"{112 + n % 11}.{n // 11 % 251}.{n // 2761 % 251}.{n % 241 + 1}"


def _click(click_id: str, ts: int, promoter: str, visitor: int, customer: str, sku: str, campaign: str) -> dict:
    return {"event_id": f"ck-{click_id}", "click_id": click_id, "ts": ts, "promoter_id": promoter,
            "visitor_id": f"V{visitor:09d}", "customer_id": customer, "device_id": f"D{visitor * 7 % 10_000_019}",
            "ip": _ip(visitor), "user_agent": USER_AGENTS[visitor % len(USER_AGENTS)], "sku": sku,
            "campaign": campaign, "parent_click_id": ""}


# ---------------------------------------------------------------------------------------------
# Building the ledgers (cached)


@dataclass
class Target:
    name: str  # chdb | server
    label: str
    ledger: Any
    version: str = ""
    reopen: Any = None  # () -> a fresh ledger, after a reset
    marker: str = ""  # a comment in every timed query, to find (and kill) an abandoned one on the server

    def timed_query(self, sql: str) -> Any:
        return self.ledger.query(f"/* {self.marker} */{sql}" if self.marker else sql)


def spec_of(rows: int, seed: int) -> str:
    return f"dashboard-v{SPEC_VERSION} rows={rows} seed={seed}"


def cached(t: Target, spec: str) -> tuple[bool, str]:
    """Whether ``t`` already holds the shop of ``spec`` (its marker, and the row count it names)."""
    q = t.ledger.query
    if not q("SELECT name FROM system.tables WHERE database = currentDatabase() AND name = 'bench_build'").rows:
        return False, "no build marker"
    marks = q("SELECT spec, ledger_rows, fact_rows, build_seconds FROM bench_build ORDER BY built_at DESC LIMIT 1").rows
    if not marks:
        return False, "an empty build marker (an interrupted build)"
    got_spec, ledger_rows, fact_rows, seconds = marks[0]
    if got_spec != spec:
        return False, f"built for {got_spec!r}, not {spec!r}"
    n = int(q("SELECT count() FROM ledger_entries").rows[0][0])
    facts = int(q("SELECT " + " + ".join(f"(SELECT count() FROM {tb})" for tb in BUILT_TABLES[1:])).rows[0][0])
    if n != int(ledger_rows) or facts != int(fact_rows):
        return False, f"holds {n:,} ledger rows and {facts:,} fact rows, the marker says {int(ledger_rows):,} and {int(fact_rows):,}"
    return True, f"{n:,} ledger rows and {facts:,} fact rows, built in {float(seconds):.0f} s"


def build(targets: list[Target], scale: Scale, seed: int, batch_rows: int, dry_run: bool = False) -> tuple[Counts, float]:
    """Generate the shop once and write every batch into each target (one ``Ledger.write`` per batch)."""
    from sinks import Batch

    who = "+".join(t.name for t in targets) or "dry run"
    shop = Shop(scale, seed)
    counts = Counts()
    gc.disable()  # millions of short-lived rows and no cycles: the collector would only rescan them
    t0, c0 = time.perf_counter(), time.process_time()
    write_s = {t.name: 0.0 for t in targets}
    last = t0

    def progress(final: bool = False) -> str:
        secs = time.perf_counter() - t0
        writes = "".join(f", {n} writes {s:,.0f} s" for n, s in write_s.items())
        return (f"build {who}: {counts.ledger:,} ledger rows + {counts.fact_rows:,} fact rows in {secs:,.{1 if final else 0}f} s "
                f"({(counts.ledger + counts.fact_rows) / secs:,.0f} rows/s{writes}; cpu {time.process_time() - c0:,.0f} s; "
                f"peak RSS {rss_mb():,.0f} MB)")

    for entries, facts, generation in shop.batches(batch_rows):
        batch = Batch(entries, dict(facts), [], generation)
        for t in targets:
            w0 = time.perf_counter()
            if not dry_run:
                t.ledger.write(batch)
            write_s[t.name] += time.perf_counter() - w0
        counts.ledger += len(entries)
        if generation:
            counts.settlement_rows += len(entries)
        for name, rows in facts.items():
            counts.facts[name] += len(rows)
        del batch, entries, facts
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            say(progress())
    secs = time.perf_counter() - t0
    gc.enable()
    say(progress(final=True))
    say(f"build {who}: {counts.settlement_rows:,} of the ledger rows are settlement rows; facts: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.facts.items())))
    return counts, secs


def optimize(t: Target) -> float:
    t0 = time.perf_counter()
    for table in BUILT_TABLES + DERIVED_TABLES:
        t.ledger.query(f"OPTIMIZE TABLE {table} FINAL")
    return time.perf_counter() - t0


def mark(t: Target, spec: str, ledger_rows: int, fact_rows: int, seconds: float) -> None:
    q = t.ledger.query
    q("CREATE TABLE IF NOT EXISTS bench_build (spec String, ledger_rows UInt64, fact_rows UInt64, "
      "build_seconds Float64, built_at DateTime) ENGINE = TinyLog")
    q(f"INSERT INTO bench_build SELECT '{spec}', {ledger_rows}, {fact_rows}, {seconds:.1f}, now()")


# ---------------------------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    panel: str
    variant: str  # the filter's label: 30d, 30d+promoter, 12 months
    ms: list[float]
    rows: int
    timed_out: float = 0.0  # seconds the run took when it was abandoned (no p50/p95 then)

    @property
    def slow(self) -> bool:
        return bool(self.timed_out) or self.p95 > SLOW_MS

    @property
    def p50(self) -> float:
        return percentile(self.ms, 0.50)

    @property
    def p95(self) -> float:
        return percentile(self.ms, 0.95)


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))] if s else float("nan")


class PanelTimeout(Exception):
    pass


def arm_timeout(t: Target, args: argparse.Namespace) -> None:
    """Make a query that runs longer than ``--timeout`` fail instead of holding the benchmark: the
    engine's ``max_execution_time`` and, for the server, a socket timeout (18.16 does not check
    the limit in every phase, e.g. while sorting) on a connection that does not retry."""
    if t.name == "server":
        from sinks.server_sink import ServerLedger

        t.ledger.close()
        t.ledger = ServerLedger(args.clickhouse, retries=0, send_receive_timeout=args.timeout + 15)
        t.marker = f"bench-dashboard {os.getpid()}-{time.time_ns()}"
    t.ledger.query(f"SET max_execution_time = {int(args.timeout)}")


def after_timeout(t: Target, args: argparse.Namespace) -> str:
    """Clean up after an abandoned run; returns a note for the report ('' if nothing to say)."""
    from sinks import LedgerError

    if t.name == "chdb":
        for _ in range(2):  # the query after a cancelled one can read the rest of its output
            try:
                t.ledger.query("SELECT 1")
            except LedgerError:
                pass
        return ""
    t.ledger.query(f"SET max_execution_time = {int(args.timeout)}")  # a new connection
    t.ledger.query(f"KILL QUERY WHERE query LIKE '%{t.marker}%' AND query NOT LIKE '%KILL QUERY%' ASYNC")
    for _ in range(30):
        left = t.ledger.query(f"SELECT count() FROM system.processes WHERE query LIKE '%{t.marker}%' "
                              f"AND query NOT LIKE '%system.processes%'").rows[0][0]
        if not left:
            return ""
        time.sleep(2)
    return ("the server did not stop the abandoned query within 60 s (18.16 does not cancel a query in every "
            "phase): it keeps running, and the timings after it compete with it")


def time_engine(t: Target, filters: list[tuple[str, Any]], panels: list[str], args: argparse.Namespace,
                ) -> tuple[list[Timing], Timing, dict, str]:
    """Each panel under each filter: warm-ups, then ``--runs`` timed runs (fewer, but at least 5, when
    ``--budget`` is set and the panel's runs would take longer), with the baseline timed before
    the panels and 3 times after each. A run over ``--timeout`` ends the panel (timed out). Returns
    the timings, the baseline, the answers of each (to compare engines) and the error or note
    that the run ended with, if any."""
    from sinks import LedgerError, LedgerUnavailable
    from tuike.insights.panels import run_panel

    runs, budget_s = args.runs, args.budget
    query = t.timed_query
    base_sql = "SELECT count() FROM ledger_entries"
    baseline: list[float] = []
    out: list[Timing] = []
    answers: dict = {}
    notes: list[str] = []

    def time_baseline(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            query(base_sql)
            baseline.append((time.perf_counter() - t0) * 1000)

    def once(name: str, f: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        try:
            data = run_panel(query, name, f)
        except LedgerError as exc:
            secs = time.perf_counter() - t0
            if "Code: 159." in str(exc) or (isinstance(exc, LedgerUnavailable) and secs >= args.timeout):
                note = after_timeout(t, args)
                if note and note not in notes:
                    notes.append(note)
                raise PanelTimeout(secs) from None
            raise
        return data, (time.perf_counter() - t0) * 1000

    total = len(filters) * len(panels)
    try:
        for _ in range(3):  # the baseline's warm-ups
            query(base_sql)
        time_baseline(runs)
        for variant, f in filters:
            for name in panels:
                started = time.perf_counter()
                ms: list[float] = []
                x = Timing(name, variant, ms, 0)
                try:
                    for _ in range(args.warmup):
                        data, _ms = once(name, f)
                    while len(ms) < runs:
                        data, took = once(name, f)
                        ms.append(took)
                        if budget_s and len(ms) >= 5 and time.perf_counter() - started > budget_s:
                            break
                    answers[(variant, name)] = data.rows
                    x.rows = len(data.rows)
                    say(f"{t.name} {len(out) + 1}/{total} {name} ({variant}): p50 {x.p50:,.1f} ms, "
                        f"p95 {x.p95:,.1f} ms ({len(ms)} runs, {time.perf_counter() - started:,.0f} s)")
                except PanelTimeout as exc:
                    x.timed_out = exc.args[0]
                    say(f"{t.name} {len(out) + 1}/{total} {name} ({variant}): timed out after "
                        f"{x.timed_out:,.0f} s (--timeout {args.timeout:g})")
                out.append(x)
                time_baseline(3)
    except LedgerError as exc:
        say(f"{t.name}: stopped: {exc}")
        notes.append("stopped early: " + str(exc).splitlines()[0])
    return out, Timing("baseline", "", baseline, 1), answers, "; ".join(notes)


def report(t: Target, timings: list[Timing], base: Timing, header: str, error: str, runs: int) -> str:
    b50 = base.p50
    lines = [f"\n{t.label}: {header}",
             f"  {'panel':<22}{'filter':<14}{'rows':>6}{'runs':>6}{'p50 ms':>10}{'p95 ms':>10}{'p50/base':>10}",
             f"  {'baseline count()':<22}{'':<14}{1:>6}{len(base.ms):>6}{b50:>10.1f}{base.p95:>10.1f}{1:>10.1f}"]
    for x in timings:
        if x.timed_out:
            lines.append(f"  {x.panel:<22}{x.variant:<14}{'-':>6}{len(x.ms):>6}"
                         f"{'timed out after ' + format(x.timed_out, ',.0f') + ' s':>30}  !")
            continue
        flag = "  !" if x.slow else ""
        lines.append(f"  {x.panel:<22}{x.variant:<14}{x.rows:>6}{len(x.ms):>6}{x.p50:>10.1f}{x.p95:>10.1f}"
                     f"{x.p50 / b50:>10.1f}{flag}")
    if error:
        lines.append(f"  note: {error}")
    lines.append(f"  ! = p95 over {SLOW_MS:.0f} ms; rows = rows the panel returned; p50/base = p50 / the baseline's p50 "
                 f"(SELECT count() FROM ledger_entries, timed {len(base.ms)} times across the run)")
    return "\n".join(lines)


def summary(t: Target, timings: list[Timing], base: Timing, error: str) -> str:
    if not timings:
        return f"{t.name}: no panel timed ({error})"
    slow = [x for x in timings if x.slow]
    done = [x for x in timings if not x.timed_out]
    timed_out = [f"{x.panel} ({x.variant})" for x in timings if x.timed_out]
    p50s = sum(x.p50 for x in done)
    worst = max(done, key=lambda x: x.p95) if done else None
    return (f"{t.name}: {len(done)} panel queries timed, p50 sum {p50s:,.0f} ms = {p50s / base.p50:,.0f} x the baseline "
            f"(p50 {base.p50:.1f} ms)"
            + (f"; worst p95 {worst.p95:,.0f} ms ({worst.panel}, {worst.variant})" if worst else "")
            + f"; {len(slow)} of {len(timings)} with p95 over {SLOW_MS:.0f} ms"
            + (f" ({len({x.panel for x in slow})} panels)" if slow else "")
            + (f"; timed out: {', '.join(timed_out)}" if timed_out else ""))


# ---------------------------------------------------------------------------------------------


def open_targets(args: argparse.Namespace) -> list[Target]:
    from sinks import LedgerError, open_ledger

    targets = []
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "chdb" in engines:
        args.dir.mkdir(parents=True, exist_ok=True)
        (args.dir / "BENCH-DASHBOARD").write_text("made by benchmarks/dashboard_queries.py; safe to delete\n")
        ledger = open_ledger(None, args.dir)
        targets.append(Target("chdb", f"chDB {ledger.query('SELECT version()').rows[0][0]} (embedded, {args.dir.relative_to(ROOT) if args.dir.is_relative_to(ROOT) else args.dir})",
                              ledger, reopen=lambda: open_ledger(None, args.dir)))
    if "server" in engines:
        try:
            ledger = open_ledger(args.clickhouse, args.dir)
        except LedgerError as exc:
            say(f"server: {exc}")
            print(f"ClickHouse server at {args.clickhouse} is not reachable: timing chDB only")
        else:
            targets.append(Target("server", f"ClickHouse server {ledger.query('SELECT version()').rows[0][0]} "
                                            f"({ledger.identity})", ledger,
                                  reopen=lambda: open_ledger(args.clickhouse, args.dir)))
    return targets


def reset(t: Target, args: argparse.Namespace) -> None:
    """Empty a target before building into it (only a ledger this benchmark made)."""
    if t.name == "chdb":
        t.ledger.close()
        for child in (args.dir / "ledger",):
            shutil.rmtree(child, ignore_errors=True)
    else:
        db = t.ledger.database
        if not db.startswith("tuike_bench"):
            owned = t.ledger.query("SELECT name FROM system.tables WHERE database = currentDatabase() AND name = 'bench_build'").rows
            if not owned:
                raise SystemExit(f"database {db} was not made by this benchmark (no bench_build table, name not "
                                 f"tuike_bench*): refusing to empty it; pass another --clickhouse database")
        t.ledger.query(f"DROP DATABASE IF EXISTS {db}")
        t.ledger.close()
    t.ledger = t.reopen()


def build_into(todo: list[Target], args: argparse.Namespace, scale: Scale, spec: str) -> None:
    from sinks.schema import standings_backfill

    for t in todo:
        reset(t, args)
    say(f"generating a shop of ~{scale.rows:,} ledger rows: {scale.orders:,} orders, {scale.promoters:,} promoters, "
        f"{scale.customers:,} customers, {scale.skus:,} products (seed {args.seed}) into {', '.join(t.name for t in todo)}")
    counts, secs = build(todo, scale, args.seed, args.batch_rows)
    for t in todo:
        d0 = time.perf_counter()
        t.ledger.query(standings_backfill(t.ledger.database))
        say(f"build {t.name}: order standings derived from the ledger in {time.perf_counter() - d0:,.1f} s")
        o = optimize(t)
        say(f"build {t.name}: OPTIMIZE TABLE … FINAL of {len(BUILT_TABLES)} tables: {o:.1f} s; "
            f"generate + write + optimize: {secs + o:,.1f} s")
        mark(t, spec, counts.ledger, counts.fact_rows, secs + o)


def copy_to_server(src: Target, dst: Target, args: argparse.Namespace) -> float:
    """Fill the server's ledger with a copy of chDB's: each built table leaves chDB as a
    TabSeparated file and enters the server through ``clickhouse-client`` (C++ on both sides; the
    same rows written through the Python sink would take the better part of an hour). The tables
    have the same DDL on both engines, so ``SELECT *`` lines up; the row counts are checked."""
    client = shutil.which("clickhouse-client") or "/usr/bin/clickhouse-client"
    if not Path(client).exists():
        raise SystemExit("clickhouse-client is not installed: run deploy/clickhouse.sh up (it installs it), then this again")
    url = dst.ledger.url
    reset(dst, args)
    t0 = time.perf_counter()
    tmp = args.dir.parent / "copy.tsv"
    for table in BUILT_TABLES + DERIVED_TABLES:
        src_cols, dst_cols = ([tuple(r[:2]) for r in t.ledger.query(f"DESCRIBE TABLE {table}").rows] for t in (src, dst))
        if src_cols != dst_cols:
            raise SystemExit(f"{table}: chDB and the server have different columns: {src_cols} vs {dst_cols}")
        tmp.unlink(missing_ok=True)
        src.ledger.query(f"INSERT INTO FUNCTION file('{tmp}', 'TabSeparated') SELECT * FROM {table}")
        cmd = [client, "--host", url.host, "--port", str(url.port), "--user", url.user, "--database", url.database,
               "--query", f"INSERT INTO {table} FORMAT TabSeparated"] + (["--password", url.password] if url.password else [])
        with tmp.open("rb") as f:
            done = subprocess.run(cmd, stdin=f, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{table}: clickhouse-client failed (exit {done.returncode}): {done.stderr.strip()[:400]}")
        n_src = int(src.ledger.query(f"SELECT count() FROM {table}").rows[0][0])
        n_dst = int(dst.ledger.query(f"SELECT count() FROM {table}").rows[0][0])
        if n_src != n_dst:
            raise SystemExit(f"{table}: copied {n_dst:,} rows of {n_src:,}")
        say(f"build server: {table}: {n_dst:,} rows copied from chDB ({tmp.stat().st_size / 1e6:,.0f} MB of TSV; "
            f"{time.perf_counter() - t0:,.0f} s so far)")
    tmp.unlink(missing_ok=True)
    return time.perf_counter() - t0


def ensure_built(targets: list[Target], args: argparse.Namespace, scale: Scale, spec: str) -> set[str]:
    """Build the targets that do not hold the shop yet; returns their names. The shop is generated
    into chDB (opened for the purpose if only the server is timed) and the server gets a copy."""
    status = {}
    for t in targets:
        status[t.name] = (False, "--rebuild") if args.rebuild else cached(t, spec)
        say(f"{t.name}: {'cached: ' if status[t.name][0] else 'to build: '}{status[t.name][1]}")
    built: set[str] = set()
    server = next((t for t in targets if t.name == "server" and not status["server"][0]), None)
    chdb = next((t for t in targets if t.name == "chdb"), None)
    if chdb is None and server is not None:
        chdb = open_targets(argparse.Namespace(**{**vars(args), "engines": "chdb"}))[0]
        status["chdb"] = (False, "--rebuild") if args.rebuild else cached(chdb, spec)
    if chdb is not None and not status["chdb"][0]:
        build_into([chdb], args, scale, spec)
        built.add("chdb")
    if server is not None:
        secs = copy_to_server(chdb, server, args)
        o = optimize(server)
        say(f"build server: copied in {secs:,.1f} s, OPTIMIZE … FINAL {o:.1f} s")
        ledger_rows, fact_rows = chdb.ledger.query(
            "SELECT ledger_rows, fact_rows FROM bench_build ORDER BY built_at DESC LIMIT 1").rows[0]
        mark(server, spec, int(ledger_rows), int(fact_rows), secs + o)
        built.add("server")
    if chdb not in targets:
        chdb.ledger.close()
    return built


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_queries", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="ledger rows to generate (default 10,000,000)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per panel (after the warm-ups; default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of a panel before its timed runs (default 1)")
    ap.add_argument("--budget", type=float, default=8, metavar="SECONDS",
                    help="stop timing a panel after this long once it has 5 runs (default 8; 0: always --runs)")
    ap.add_argument("--timeout", type=float, default=40, metavar="SECONDS",
                    help="a panel run longer than this is abandoned and the panel reported as timed out (default 40)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clickhouse", default=DEFAULT_URL, help=f"the server ledger (default {DEFAULT_URL})")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the chDB data dir (default bench-data/dashboard/chdb)")
    ap.add_argument("--engines", default="chdb,server", help="chdb,server (default both)")
    ap.add_argument("--panels", default="", help="only these panels (comma-separated names)")
    ap.add_argument("--batch-rows", type=int, default=200_000, help="ledger rows per write (default 200,000)")
    ap.add_argument("--rebuild", action="store_true", help="build again even if a cached ledger matches")
    ap.add_argument("--build-only", action="store_true", help="build (or check the cache) and stop")
    ap.add_argument("--dry-run", action="store_true", help="generate the shop and count its rows, write nothing")
    args = ap.parse_args(argv)
    args.dir = args.dir.resolve()
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)  # its retries log tracebacks; the sink says why

    from schemas.analytics import PANELS, Filters
    from sinks import LedgerError

    scale = Scale.of(args.rows)
    spec = spec_of(args.rows, args.seed)
    if args.dry_run:
        counts, secs = build([], scale, args.seed, args.batch_rows, dry_run=True)
        print(f"dry run: {counts.ledger:,} ledger rows, {counts.fact_rows:,} fact rows in {secs:.1f} s")
        return 0
    panels = [p.name for p in PANELS]
    if args.panels:
        wanted = [x.strip() for x in args.panels.split(",") if x.strip()]
        unknown = set(wanted) - set(panels)
        if unknown:
            raise SystemExit(f"unknown panels: {', '.join(sorted(unknown))} (known: {', '.join(panels)})")
        panels = wanted

    targets = open_targets(args)
    if not targets:
        raise SystemExit("nothing to time")
    try:
        built = ensure_built(targets, args, scale, spec)
        if args.build_only:
            return 0
        end = END
        default = Filters(end - 30 * DAY, end + 1, "hour")
        first = targets[0].ledger
        busy = first.query(
            f"SELECT beneficiary_id, count() AS n FROM ledger_entries WHERE level = 1 AND kind = 'accrue' "
            f"AND ts >= toDateTime({default.start_s}) AND ts < toDateTime({default.end_s}) "
            f"GROUP BY beneficiary_id ORDER BY n DESC, beneficiary_id LIMIT 1").rows
        promoter = busy[0][0] if busy else "P000000"
        orders_busy = int(busy[0][1]) if busy else 0
        filters = [("30d", default), ("30d+promoter", Filters(default.start_s, default.end_s, "hour", promoter=promoter)),
                   ("12 months", Filters(START, end + 1, "day"))]
        header_range = (f"{datetime.fromtimestamp(default.start_s, UTC):%Y-%m-%d %H:%M} .. "
                        f"{datetime.fromtimestamp(default.end_s, UTC):%Y-%m-%d %H:%M:%S} UTC, bucket hour (12 months: bucket day); "
                        f"promoter = {promoter} ({orders_busy:,} level-1 accruals in the range)")
        sql_id = hashlib.sha256((ROOT / "schemas" / "analytics.py").read_bytes()).hexdigest()[:12]
        print(f"dashboard queries (schemas/analytics.py {sql_id}): {len(panels)} panels x {len(filters)} filters, {args.warmup} warm-ups + "
              f"{args.runs} timed runs each" + (f" (at most {args.budget:g} s a panel once it has 5)" if args.budget else "")
              + f", --timeout {args.timeout:g} s; {header_range}")
        results = []
        for t in targets:
            try:
                n = int(t.ledger.query("SELECT count() FROM ledger_entries").rows[0][0])
                note = ("built in this run: " if t.name in built else "cached: ") + cached(t, spec)[1]
            except LedgerError as exc:
                print(f"\n{t.label}: not timed: {str(exc).splitlines()[0]}", flush=True)
                continue
            arm_timeout(t, args)
            timings, base, answers, error = time_engine(t, filters, panels, args)
            print(report(t, timings, base, f"ledger {n:,} rows ({note})", error, args.runs), flush=True)
            results.append((t, timings, base, answers, error))
            if t.name == "chdb" and len(targets) > 1:
                t.ledger.close()  # its memory, for the server's turn
        if len(results) == 2:
            a, b = results[0][3], results[1][3]
            both = [k for k in a if k in b]
            differ = sorted({f"{name} ({v})" for (v, name) in both if a[(v, name)] != b[(v, name)]})
            print(f"\nsame answers on both engines: {len(both) - len(differ)} of {len(both)} panel queries"
                  + (f"; different: {', '.join(differ)}" if differ else ""))
        print()
        for t, timings, base, _, error in results:
            print(summary(t, timings, base, error))
    finally:
        for t in targets:
            try:
                t.ledger.close()
            except Exception:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
