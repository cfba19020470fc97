"""The analytical layer: named, documented queries over the ledger and the fact tables.

Every dashboard panel, the promoter page and the analysts' own questions read these queries;
``docs/analytics.md`` lists them with their columns (generated from :data:`PANELS` by
``python -m schemas.analytics``; a test keeps it current). Each query keeps to the SQL subset
that runs on ClickHouse 18.16 and on chDB alike (``IN`` subqueries, ``ANY LEFT JOIN … USING``,
``-If`` combinators, ``arrayJoin``; no window functions, no ``JOIN … ON``), and a test runs every
one on both.

Exactness: each query reads the base tables with ``FINAL`` (so a row written twice counts once)
and the ledger's live generation plus the settlement rows, exactly as the analysts' views do;
but it puts the time filter *inside* the ``FINAL`` read, so only the partitions (months) of the
period are read: the views would collapse the whole table first.

Per-order questions (is it attributed, who holds each level, what does it cost) read
``order_standings``, one row per order that the order processor keeps current
(engine/standing.py), rather than grouping every ledger row of the range by order: at 10M
ledger rows that grouping was most of a panel's time.

Sorting: ClickHouse 18.16 stalls (minutes, and the query cannot be cancelled) on an ``ORDER BY`` of
several keys whose first is a Decimal over a large result, so such orders sort by the amount in
cents as an integer (``toInt64(x * 100)``): the same order, exact.

Team performance (团队业绩) is for display only: it never feeds money.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

BUCKETS = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}
SETTLEMENT_GENERATION = 4294967295  # settlement rows: shown in every generation (schemas/ddl.sql)


@dataclass(frozen=True)
class Filters:
    """What a dashboard asks for: a time range (epoch seconds, end exclusive), a bucket for time
    series, and optionally one campaign (``click.campaign``) and one promoter."""

    start_s: int
    end_s: int
    bucket: str = "hour"
    campaign: str = ""
    promoter: str = ""
    limit: int = 50
    timezone: str = "UTC"  # of the buckets (the shop's: a day is the shop's day)
    # Which shops' rows (tuike/dashboard: a shop's token sees its own): None reads the whole ledger;
    # else the orders whose ``orders_raw.shop_id`` is one of ``shops`` and every row tied to them, and
    # the rows tied to no order (clicks, binds, the recruiting tree, settlements, bonus and tax) only
    # when ``unowned`` (nothing says whose they are).
    shops: tuple[str, ...] | None = None
    unowned: bool = True

    def __post_init__(self) -> None:
        if self.bucket not in BUCKETS:
            raise ValueError(f"bucket {self.bucket!r}: expected one of {', '.join(BUCKETS)}")
        if self.end_s <= self.start_s:
            raise ValueError("the range ends before it starts")


@dataclass(frozen=True)
class Panel:
    name: str
    group: str  # realtime | team | promotion | risk
    title: str
    about: str  # one sentence: what it answers and how it counts
    columns: tuple[tuple[str, str], ...]  # (name, meaning)
    template: str  # SQL with {ledger_sums}, {attributed}, {clicks}, … and the filter placeholders

    def sql(self, f: Filters) -> str:
        return render(self.template, f)


def quote(text: str) -> str:
    """A string literal for ClickHouse (backslash and quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _range(f: Filters) -> str:
    return f"ts >= toDateTime({int(f.start_s)}) AND ts < toDateTime({int(f.end_s)})"


def hours_window(f: Filters) -> tuple[int, int] | None:
    """The whole hours ``[a, b)`` inside the range that a panel may read from ``ledger_hours``: when
    it has no promoter or campaign filter (the sums are per level, kind, status and rule only), its
    buckets are hours or days, it reads every shop (an hour's sums carry no order), and the shop's
    timezone has always been a whole number of hours from UTC (a UTC hour then falls in one bucket)."""
    if (f.promoter or f.campaign or f.shops is not None or f.bucket == "minute"
            or not _whole_hours_from_utc(f.timezone)):
        return None
    a, b = -(-f.start_s // 3600) * 3600, f.end_s // 3600 * 3600
    return (a, b) if a < b else None


@lru_cache(maxsize=64)
def _whole_hours_from_utc(tz: str) -> bool:
    """Whether ``tz`` is a whole number of hours from UTC on every day of 1970-2100 (Asia/Shanghai
    is; Asia/Kolkata, and Australia/Lord_Howe in its winters, are not)."""
    zone = ZoneInfo(tz)
    day = datetime(1970, 1, 1, 12, tzinfo=timezone.utc)
    while day.year < 2100:
        offset = day.astimezone(zone).utcoffset()
        if offset is None or offset.total_seconds() % 3600:
            return False
        day += timedelta(days=1)
    return True


def _shop_scope(f: Filters) -> tuple[str, str, str]:
    """The conditions that narrow reads to ``f.shops``: on a table with ``order_id`` (the order is one
    of theirs), on the ledger (also its rows of no order, when ``unowned``), and on a table tied to no
    order ("1" or "0")."""
    if f.shops is None:
        return "1", "1", "1"
    mine = (f"order_id IN (SELECT order_id FROM orders_raw WHERE shop_id IN "
            f"({', '.join(quote(s) for s in f.shops) or quote('')}))") if f.shops else "0"
    ledger = f"({mine} OR order_id = '')" if f.unowned else mine
    return mine, ledger, "1" if f.unowned else "0"


def render(template: str, f: Filters) -> str:
    """Fill a template: ``{ledger_sums}`` is the amounts of the live ledger in the range (settlement
    rows included: ``ts, level, kind, status_after, rule_id, amount``, summed per hour where it
    can, see :func:`hours_window`), narrowed to the promoter's money and the campaign's orders;
    ``{raw}`` (``… WHERE``: append ``AND``s) the ledger rows of the range without FINAL, for
    existence and distinct counts;
    ``{clicks}``/``{bindings}`` the facts of the range, ``{attributed}`` the orders paid in the
    range that a promoter earned level 1 on, as they stand now (``order_standings``: ``order_id, ts,
    click_id, paid_amount, promoter1..3, commission, commission1..3``), narrowed to the promoter's own sales and
    the campaign; ``{campaign_orders}`` those orders with their click's campaign;
    ``{only_promoter}`` narrows ledger rows to the promoter's own money, ``{only_orders}`` to the
    orders whose click carries the campaign (whenever the click was); ``{shop_orders}`` narrows a
    table with ``order_id`` to the orders of ``f.shops``, ``{unowned}`` a table tied to no order
    (:func:`_shop_scope`). Lookups that only test membership (a click's campaign) stay unnarrowed:
    what they select from is already narrowed."""
    rng = _range(f)
    shop_orders, shop_ledger, unowned = _shop_scope(f)
    live = (f"(generation = (SELECT max(generation) FROM ledger_generations) "
            f"OR generation = {SETTLEMENT_GENERATION})")
    ledger = (f"(SELECT entry_id, event_id, ts, order_id, item_sku, customer_id, beneficiary_id, level, kind, "
              f"amount, rate, rule_id, currency, status_after FROM ledger_entries FINAL WHERE {live} AND {rng} AND {shop_ledger})")
    only_promoter = f"beneficiary_id = {quote(f.promoter)}" if f.promoter else "1"
    tagged = f"(SELECT click_id FROM clicks_raw FINAL WHERE campaign = {quote(f.campaign)})"
    standing_gen = "generation = (SELECT max(generation) FROM ledger_generations)"
    only_orders = (f"order_id IN (SELECT order_id FROM order_standings_raw WHERE {standing_gen} AND {rng} "
                   f"AND click_id IN {tagged})" if f.campaign else "1")
    # The ledger's amounts of the range (ts, level, kind, status_after, rule_id, amount): the whole
    # hours from ledger_hours, the hours cut by the range's ends from the ledger itself.
    window = hours_window(f)
    if window is None:
        ledger_sums = (f"(SELECT ts, level, kind, status_after, rule_id, amount FROM {ledger} "
                       f"WHERE {only_promoter} AND {only_orders})")
    else:
        a, b = window
        ledger_sums = (f"(SELECT hour AS ts, level, kind, status_after, rule_id, amount FROM ledger_hours_raw FINAL "
                       f"WHERE {live} AND hour >= toDateTime({a}) AND hour < toDateTime({b}) UNION ALL "
                       f"SELECT ts, level, kind, status_after, rule_id, amount FROM ledger_entries FINAL WHERE {live} AND "
                       f"((ts >= toDateTime({int(f.start_s)}) AND ts < toDateTime({a})) OR "
                       f"(ts >= toDateTime({b}) AND ts < toDateTime({int(f.end_s)}))))")
    # Existence and max need no FINAL (a row written twice is the same row): sums and counts do.
    raw = f"ledger_entries WHERE {live} AND {rng} AND {shop_ledger}"
    # what is held now on the orders scored and held in the range (a hold comes after the score's
    # range began); deduplicated by entry, which on this small set is cheaper than FINAL
    held_now = (f"(SELECT held_order AS order_id, sum(held_entry) AS held_amount FROM ("
                f"SELECT any(order_id) AS held_order, any(amount) AS held_entry FROM ledger_entries "
                f"WHERE {live} AND ts >= toDateTime({int(f.start_s)}) AND status_after = 'held' AND {shop_orders} AND order_id IN "
                f"(SELECT order_id FROM fraud_scores_raw WHERE held = 1 AND {rng}) GROUP BY generation, entry_id) "
                f"GROUP BY held_order)")
    narrow = ""
    if f.promoter:  # their own sales
        narrow += f" AND promoter1 = {quote(f.promoter)}"
    if f.campaign:
        narrow += f" AND click_id IN {tagged}"
    # One row per order (engine/standing.py): the order's winning payment, who holds each level and
    # its net commission, as the order processor last wrote them (the highest version).
    attributed = (f"(SELECT order_id, ts, customer_id, click_id, paid_amount, promoter1, promoter2, promoter3, "
                  f"commission, commission1, commission2, commission3 FROM order_standings_raw FINAL WHERE {standing_gen} "
                  f"AND {rng} AND promoter1 != '' AND {shop_orders}{narrow})")
    # the attributed orders with the campaign of their click (a click of the range that an order
    # of the range names; a row written twice is the same row, so the lookup needs no FINAL)
    campaign_orders = (f"(SELECT order_id, campaign, paid_amount, commission FROM (SELECT order_id, click_id, "
                       f"paid_amount, commission FROM {attributed}) AS a ANY LEFT JOIN (SELECT click_id, campaign "
                       f"FROM clicks_raw WHERE {rng} AND click_id IN (SELECT click_id FROM order_standings_raw WHERE "
                       f"{rng} AND click_id != '')) AS c USING click_id)")
    clicks = f"(SELECT * FROM clicks_raw FINAL WHERE {rng} AND {unowned}" + (
        f" AND campaign = {quote(f.campaign)}" if f.campaign else "") + (
        f" AND promoter_id = {quote(f.promoter)}" if f.promoter else "") + ")"
    return template.format(
        ledger_sums=ledger_sums, held_now=held_now, attributed=attributed, clicks=clicks, rng=rng,
        campaign_orders=campaign_orders, raw=raw,
        only_holder=f"promoter = {quote(f.promoter)}" if f.promoter else "1",
        bindings=f"(SELECT * FROM bindings_raw FINAL WHERE {rng} AND {unowned}" + (
            f" AND promoter_id = {quote(f.promoter)}" if f.promoter else "") + ")",
        only_payee=f"payee = {quote(f.promoter)}" if f.promoter else "1",
        bucket=f"{BUCKETS[f.bucket]}",
        tz=quote(f.timezone), limit=int(f.limit), start=int(f.start_s), end=int(f.end_s),
        promoter=quote(f.promoter), campaign=quote(f.campaign),
        only_promoter=only_promoter, only_orders=only_orders, shop_orders=shop_orders, unowned=unowned,
    )


# --- the panels ------------------------------------------------------------------------------

PANELS: tuple[Panel, ...] = (
    Panel(
        "kpis", "realtime", "Headline figures",
        "Attributed orders and GMV of the range (orders whose level 1 earned), and the commission of the range's "
        "ledger rows: accrued, clawed back, and the net per status.",
        (("orders", "attributed orders paid in the range"), ("gmv", "their paid amount"),
         ("accrued", "commission accrued (accrue rows)"), ("clawed_back", "commission reversed (reverse rows, ≤ 0)"),
         ("pending", "net moved into pending"), ("confirmed", "net moved into confirmed"),
         ("held", "net moved into held"), ("settled", "net moved into settled")),
        """
SELECT o.orders, o.gmv, l.accrued, l.clawed_back, l.pending, l.confirmed, l.held, l.settled
FROM (SELECT 1 AS k, count() AS orders, sum(paid_amount) AS gmv FROM {attributed}) AS o
ANY LEFT JOIN (
    SELECT 1 AS k, sumIf(amount, kind = 'accrue') AS accrued, sumIf(amount, kind = 'reverse') AS clawed_back,
           sumIf(amount, status_after = 'pending') AS pending, sumIf(amount, status_after = 'confirmed') AS confirmed,
           sumIf(amount, status_after = 'held') AS held, sumIf(amount, status_after = 'settled') AS settled
    FROM {ledger_sums}
) AS l USING k
"""),
    Panel(
        "gmv_over_time", "realtime", "Attributed GMV and orders",
        "Attributed orders and their GMV per time bucket (minute, hour or day of the order's payment, in the "
        "shop's timezone).",
        (("t", "start of the bucket (shop's timezone)"), ("orders", "attributed orders paid in it"), ("gmv", "their paid amount")),
        """
SELECT {bucket}(ts, {tz}) AS t, count() AS orders, sum(paid_amount) AS gmv
FROM {attributed} GROUP BY t ORDER BY t
"""),
    Panel(
        "commission_over_time", "realtime", "Commission by level and status",
        "Net commission per time bucket, level (0: settlement rows) and the status the amount moved into.",
        (("t", "start of the bucket (shop's timezone)"), ("level", "1–3, 0 for bonus/tax/settle rows"),
         ("status", "status_after of the rows"), ("amount", "net amount")),
        """
SELECT {bucket}(ts, {tz}) AS t, level, status_after AS status, sum(amount) AS amount
FROM {ledger_sums}
GROUP BY t, level, status ORDER BY t, level, status
"""),
    Panel(
        "refunds_over_time", "realtime", "Refunds clawed back",
        "Commission reversed per time bucket (refunds, cancellations, rejected reviews) and the orders it touched.",
        (("t", "start of the bucket (shop's timezone)"), ("orders", "orders with a reversal"), ("amount", "commission reversed (≤ 0)")),
        """
SELECT t, orders, amount FROM (
    SELECT {bucket}(ts, {tz}) AS t, sum(amount) AS amount FROM {ledger_sums} WHERE kind = 'reverse' GROUP BY t
) AS s ANY LEFT JOIN (
    SELECT {bucket}(ts, {tz}) AS t, uniqExact(order_id) AS orders FROM {raw}
    AND kind = 'reverse' AND {only_promoter} AND {only_orders} GROUP BY t
) AS o USING t
ORDER BY t
"""),
    Panel(
        "team_performance", "team", "Team performance (display only)",
        "Per promoter: own GMV (orders paid in the range where they are level 1), downline GMV (where they are "
        "level 2 or 3), the commission of the levels they hold on those orders as it stands now, direct recruits "
        "and recruits within three levels (all time). "
        "Display only: it never feeds money.",
        (("promoter", "promoter id"), ("own_gmv", "GMV of orders they earned level 1 on"),
         ("downline_gmv", "GMV of orders they earned level 2 or 3 on"), ("commission", "net commission of the levels they hold on those orders"),
         ("recruits", "promoters who joined under them"), ("team", "promoters within three levels below them")),
        """
SELECT promoter, own_gmv, downline_gmv, commission, recruits, team
FROM (
    SELECT promoter, sumIf(paid_amount, level = 1) AS own_gmv, sumIf(paid_amount, level > 1) AS downline_gmv,
           sum(earned) AS commission
    FROM (
        SELECT paid_amount,
               arrayJoin([(promoter1, 1, commission1), (promoter2, 2, commission2), (promoter3, 3, commission3)]) AS holder,
               tupleElement(holder, 1) AS promoter, tupleElement(holder, 2) AS level, tupleElement(holder, 3) AS earned
        FROM {attributed}
    ) WHERE promoter != '' AND {only_holder}
    GROUP BY promoter
) AS money ANY LEFT JOIN (
    SELECT ancestor AS promoter, countIf(depth = 1) AS recruits, count() AS team
    FROM (
        SELECT arrayJoin([(p, 1), (gp, 2), (ggp, 3)]) AS link, tupleElement(link, 1) AS ancestor,
               tupleElement(link, 2) AS depth
        FROM (
            SELECT c, p, gp, ggp FROM (
                SELECT c, p, gp FROM (
                    SELECT promoter_id AS c, argMax(parent_id, ts) AS p FROM promoters_raw FINAL
                    WHERE type = 'promoter.joined' AND {unowned} GROUP BY c
                ) AS t1 ANY LEFT JOIN (
                    SELECT promoter_id AS p, argMax(parent_id, ts) AS gp FROM promoters_raw FINAL
                    WHERE type = 'promoter.joined' AND {unowned} GROUP BY p
                ) AS t2 USING p
            ) AS t12 ANY LEFT JOIN (
                SELECT promoter_id AS gp, argMax(parent_id, ts) AS ggp FROM promoters_raw FINAL
                WHERE type = 'promoter.joined' AND {unowned} GROUP BY gp
            ) AS t3 USING gp
        )
    ) WHERE ancestor != '' GROUP BY ancestor
) AS tree USING promoter
ORDER BY toInt64((own_gmv + downline_gmv) * 100) DESC, promoter LIMIT {limit}
"""),
    Panel(
        "funnel_by_promoter", "promotion", "Click → bind → order, per promoter",
        "Clicks on a promoter's links in the range, customers bound to them in it, and their attributed orders "
        "and GMV (level 1).",
        (("promoter", "promoter id"), ("clicks", "clicks on their links"), ("binds", "customers bound to them"),
         ("orders", "attributed orders they earned level 1 on"), ("gmv", "those orders' paid amount")),
        """
SELECT promoter, sum(c) AS clicks, sum(b) AS binds, sum(o) AS orders, sum(g) AS gmv FROM (
    SELECT promoter_id AS promoter, toUInt64(1) AS c, toUInt64(0) AS b, toUInt64(0) AS o, toDecimal64(0, 2) AS g
    FROM {clicks}
    UNION ALL
    SELECT promoter_id, toUInt64(0), toUInt64(1), toUInt64(0), toDecimal64(0, 2) FROM {bindings}
    UNION ALL
    SELECT promoter1, toUInt64(0), toUInt64(0), toUInt64(1), paid_amount FROM {attributed}
) GROUP BY promoter
ORDER BY toInt64(gmv * 100) DESC, clicks DESC, promoter LIMIT {limit}
"""),
    Panel(
        "funnel_by_link", "promotion", "Click → bind → order, per link",
        "Per promotion link (promoter, sku, campaign of the click): clicks, binds made from those clicks, and "
        "attributed orders that name one of those clicks.",
        (("promoter", "promoter id"), ("sku", "product the link points to ('' for the shop)"),
         ("campaign", "campaign tag of the link"), ("clicks", "clicks"), ("binds", "binds that name one of them"),
         ("orders", "attributed orders that name one of them"), ("gmv", "their paid amount")),
        """
SELECT promoter, sku, campaign, count() AS clicks, sum(bound) AS binds, sum(ordered) AS orders, sum(paid) AS gmv
FROM (SELECT click_id, promoter_id AS promoter, sku, campaign FROM {clicks}) AS c
ANY LEFT JOIN (
    SELECT click_id, sum(b) AS bound, sum(o) AS ordered, sum(g) AS paid FROM (
        SELECT click_id, toUInt64(1) AS b, toUInt64(0) AS o, toDecimal64(0, 2) AS g
        FROM (SELECT DISTINCT click_id FROM {bindings} WHERE click_id != '')
        UNION ALL
        SELECT click_id, toUInt64(0), count(), sum(paid_amount) FROM {attributed} WHERE click_id != '' GROUP BY click_id
    ) GROUP BY click_id
) AS x USING click_id
GROUP BY promoter, sku, campaign ORDER BY toInt64(gmv * 100) DESC, clicks DESC, promoter, sku, campaign LIMIT {limit}
"""),
    Panel(
        "roi_by_campaign", "promotion", "Commission cost versus GMV, per campaign",
        "Per campaign tag: clicks, attributed orders whose click carries the tag, their GMV, the net "
        "commission of those orders as they stand now (all levels, whenever written) and commission ÷ GMV.",
        (("campaign", "campaign tag ('' for orders without a tagged click)"), ("clicks", "clicks with the tag"),
         ("orders", "attributed orders"), ("gmv", "their paid amount"), ("commission", "their net commission"),
         ("cost_ratio", "commission ÷ GMV (Decimal, 4 places; computed from the two sums)")),
        """
SELECT campaign, clicks, orders, gmv, commission
FROM (
    SELECT campaign, count() AS orders, sum(paid_amount) AS gmv, sum(commission) AS commission
    FROM {campaign_orders} GROUP BY campaign
) AS money ANY LEFT JOIN (
    SELECT campaign, count() AS clicks FROM {clicks} GROUP BY campaign
) AS k USING campaign
ORDER BY toInt64(gmv * 100) DESC, campaign LIMIT {limit}
"""),
    Panel(
        "roi_by_rule", "promotion", "Commission cost versus GMV, per rule",
        "Per commission rule (rule_id: the rule, '*campaign' when a campaign multiplier applied, '+capped' when "
        "the cap cut it): the GMV of the items it paid level 1 on, its net commission (all levels) and "
        "commission ÷ GMV.",
        (("rule_id", "rule id as in the ledger"), ("lines", "order lines it applied to"),
         ("gmv", "paid amount of those lines"), ("commission", "its net commission"),
         ("cost_ratio", "commission ÷ GMV (Decimal, 4 places; computed from the two sums)")),
        """
SELECT rule_id, lines, gmv, commission
FROM (
    SELECT rule_id, count() AS lines, sum(item_paid) AS gmv FROM (
        SELECT order_id, item_sku, any(rule_id) AS rule_id FROM {raw}
        AND level = 1 AND kind = 'accrue' AND {only_promoter} AND {only_orders} GROUP BY order_id, item_sku
    ) AS r ANY LEFT JOIN (
        SELECT order_id, sku AS item_sku, paid_amount AS item_paid FROM order_items_raw
        WHERE order_id IN (SELECT order_id FROM order_standings_raw WHERE {rng})
    ) AS i USING order_id, item_sku
    GROUP BY rule_id
) AS base ANY LEFT JOIN (
    SELECT rule_id, sum(amount) AS commission FROM {ledger_sums} WHERE level > 0 GROUP BY rule_id
) AS c USING rule_id
ORDER BY toInt64(gmv * 100) DESC, rule_id LIMIT {limit}
"""),
    Panel(
        "holds_by_reason", "risk", "Fraud holds by reason",
        "Per fraud reason code (README: the table of codes): orders held that carry it, and the commission "
        "held on them now.",
        (("reason", "reason code, e.g. F03"), ("orders", "held orders whose score carries it"),
         ("held", "commission held on them")),
        """
SELECT reason, count() AS orders, sum(held_amount) AS held FROM (
    SELECT order_id, arrayJoin(splitByChar(',', top_reasons)) AS reason FROM (
        SELECT order_id, argMax(reasons, score) AS top_reasons FROM fraud_scores_raw
        WHERE held = 1 AND {rng} AND {shop_orders} GROUP BY order_id
    )
) AS r ANY LEFT JOIN (
    SELECT order_id, held_amount FROM {held_now}
) AS h USING order_id
WHERE reason != '' GROUP BY reason ORDER BY orders DESC, reason
"""),
    Panel(
        "review_queue", "risk", "Review queue",
        "Held orders scored in the range that nobody has decided yet, most money first (as `tuike review list`).",
        (("order_id", "order"), ("score", "highest fraud score"), ("reasons", "its reason codes"),
         ("promoter", "level-1 promoter scored"), ("held", "commission held on it (rows since the range began)")),
        """
SELECT order_id, top_score AS score, top_reasons AS reasons, promoter, held_amount AS held FROM (
    SELECT order_id, max(score) AS top_score, argMax(reasons, score) AS top_reasons,
           argMax(promoter_id, score) AS promoter
    FROM fraud_scores_raw
    WHERE held = 1 AND {rng} AND {shop_orders}
      AND order_id NOT IN (SELECT order_id FROM order_events_raw WHERE type = 'review.decided' AND ts >= toDateTime({start}))
    GROUP BY order_id
) AS queue ANY LEFT JOIN (
    SELECT order_id, held_amount FROM {held_now}
) AS h USING order_id
ORDER BY toInt64(held * 100) DESC, toInt64(score * 1000000) DESC, order_id LIMIT {limit}
"""),
    Panel(
        "payouts_by_period", "risk", "Payable and withheld tax per period",
        "Per settled period (tuike settle): payees paid and carried, gross income, tax withheld, net paid and "
        "what was carried forward.",
        (("period", "YYYY-MM"), ("paid", "payees paid"), ("carried_payees", "payees carried forward"),
         ("income", "gross income paid (commission + bonus)"), ("tax", "tax withheld"), ("net", "net paid out"),
         ("carried_amount", "balances carried into the next period")),
        """
SELECT period, countIf(status = 'paid') AS paid, countIf(status = 'carried') AS carried_payees,
       sumIf(income, status = 'paid') AS income, sum(tax) AS tax, sum(net) AS net, sum(carried) AS carried_amount
FROM settlements_raw FINAL
WHERE {only_payee} AND {unowned}
GROUP BY period ORDER BY period DESC LIMIT {limit}
"""),
)

BY_NAME = {p.name: p for p in PANELS}

# Where each order stands (the order_standings table, engine/standing.py), computed from the
# ledger and the orders table (the payment that counts is the earliest of those that earned): for
# a ledger written before the table existed (sinks/schema.py: schema_statements), and for the tests
# that hold the engine's rows to the same definition. Version 0: any row the engine writes later
# replaces it.
STANDINGS_FROM_LEDGER = f"""
SELECT generation, order_id, ts, toUInt32(0) AS version, customer_id, click_id, paid_amount,
       promoter1, promoter2, promoter3, commission, commission1, commission2, commission3
FROM (
    SELECT generation, order_id,
           argMaxIf(beneficiary_id, (net, beneficiary_id), level = 1 AND moves > 0) AS promoter1,
           argMaxIf(beneficiary_id, (net, beneficiary_id), level = 2 AND moves > 0) AS promoter2,
           argMaxIf(beneficiary_id, (net, beneficiary_id), level = 3 AND moves > 0) AS promoter3,
           sum(total) AS commission, sumIf(total, level = 1) AS commission1,
           sumIf(total, level = 2) AS commission2, sumIf(total, level = 3) AS commission3
    FROM (
        SELECT generation, order_id, level, beneficiary_id, sumIf(amount, kind IN ('accrue', 'reverse')) AS net,
               countIf(kind IN ('accrue', 'reverse')) AS moves, sum(amount) AS total
        FROM {{db}}.ledger_entries FINAL WHERE generation != {SETTLEMENT_GENERATION} AND level IN (1, 2, 3)
          AND order_id != ''
        GROUP BY generation, order_id, level, beneficiary_id
    ) GROUP BY generation, order_id
) AS l ANY INNER JOIN (
    SELECT order_id, tupleElement(first, 2) AS ts, tupleElement(first, 3) AS customer_id,
           tupleElement(first, 4) AS click_id, tupleElement(first, 5) AS paid_amount
    FROM (SELECT order_id, argMin((event_id, ts, customer_id, click_id, paid_amount), (ts, event_id)) AS first
          FROM {{db}}.orders_raw FINAL
          WHERE event_id IN (SELECT event_id FROM {{db}}.ledger_entries WHERE kind = 'accrue' AND level IN (1, 2, 3))
          GROUP BY order_id)
) AS o USING order_id
"""
STANDING_COLUMNS = ("generation", "order_id", "ts", "version", "customer_id", "click_id", "paid_amount",
                    "promoter1", "promoter2", "promoter3", "commission", "commission1", "commission2", "commission3")


# The hourly sums of the ledger (ledger_hours), recomputed from the ledger for the hours ``{where}``
# selects: one FINAL read, grouped per (generation, hour, level, kind, status, rule), with the
# number of entries of the whole hour as the version (sinks/schema.py: hours_refresh). The groups
# travel through an array as integer cents: 18.16 crashes on an array of tuples holding a Decimal.
HOURS_FROM_LEDGER = """
SELECT generation, hour, tupleElement(g, 1) AS level, tupleElement(g, 2) AS kind, tupleElement(g, 3) AS status_after,
       tupleElement(g, 4) AS rule_id, toDecimal128(tupleElement(g, 5), 2) / 100 AS amount,
       tupleElement(g, 6) AS entries, version
FROM (
    SELECT generation, hour, groupArray((level, kind, status_after, rule_id, cents, entries)) AS groups,
           toUInt32(sum(entries)) AS version
    FROM (
        SELECT generation, toStartOfHour(ts) AS hour, level, kind, status_after, rule_id,
               toInt64(sum(amount) * 100) AS cents, toUInt32(count()) AS entries
        FROM {db}.ledger_entries FINAL WHERE {where}
        GROUP BY generation, hour, level, kind, status_after, rule_id
    ) GROUP BY generation, hour
) ARRAY JOIN groups AS g
"""
HOUR_COLUMNS = ("generation", "hour", "level", "kind", "status_after", "rule_id", "amount", "entries", "version")


# Each promoter's own sales (the items of the orders they earned level 1 on): what the
# recommendations (tuike/insights/recommend.py) learn from, for `tuike recommend` and the promoter page.
PROMOTER_SALES = (
    "SELECT l.beneficiary_id, i.sku, sum(i.qty) FROM (SELECT order_id, argMax(beneficiary_id, (net, beneficiary_id)) "
    "AS beneficiary_id FROM (SELECT order_id, beneficiary_id, sum(amount) AS net FROM commission_ledger "
    "WHERE level = 1 GROUP BY order_id, beneficiary_id) GROUP BY order_id) AS l ALL INNER JOIN "
    "(SELECT order_id, sku, qty FROM order_items) AS i USING order_id GROUP BY l.beneficiary_id, i.sku")

# The promoter page (/p/{promoter}): name -> what it shows, per column
PROMOTER_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "balances": ("their money by status, all time", ("status", "amount")),
    "lines": ("each order line they earned on, with the rule and rate that paid it (latest 500)",
              ("order_id", "item_sku", "level", "rule_id", "rate", "first_ts", "accrued", "reversed", "pending",
               "confirmed", "held", "net")),
    "settlements": ("their settlements (tuike settle)", ("period", "status", "balance", "bonus", "income", "tax", "net",
                                                         "carried")),
    "links": ("the links their clicks came through", ("sku", "campaign", "clicks")),
}


def promoter_queries(promoter: str) -> dict[str, str]:
    """Everything of one promoter's page, and nothing of anyone else's: every query is narrowed
    to ``beneficiary_id`` / ``payee`` / ``promoter_id`` = that promoter."""
    p = quote(promoter)
    ledger = (f"(SELECT * FROM ledger_entries FINAL WHERE generation = (SELECT max(generation) FROM ledger_generations) "
              f"OR generation = {SETTLEMENT_GENERATION})")
    return {
        "balances": f"SELECT status_after AS status, sum(amount) AS amount FROM {ledger} WHERE beneficiary_id = {p} "
                    "GROUP BY status ORDER BY status",
        "lines": ("SELECT order_id, item_sku, level, any(rule_id) AS rule_id, max(rate) AS rate, min(ts) AS first_ts, "
                  "sumIf(amount, kind = 'accrue') AS accrued, sumIf(amount, kind = 'reverse') AS reversed, "
                  "sumIf(amount, status_after = 'pending') AS pending, sumIf(amount, status_after = 'confirmed') AS confirmed, "
                  "sumIf(amount, status_after = 'held') AS held, sum(amount) AS net "
                  f"FROM {ledger} WHERE beneficiary_id = {p} AND order_id != '' "
                  "GROUP BY order_id, item_sku, level ORDER BY first_ts DESC, order_id, item_sku LIMIT 500"),
        "settlements": ("SELECT period, status, balance, bonus, income, tax, net, carried FROM settlements_raw FINAL "
                        f"WHERE payee = {p} ORDER BY period DESC"),
        "links": (f"SELECT sku, campaign, count() AS clicks FROM clicks_raw FINAL WHERE promoter_id = {p} "
                  "GROUP BY sku, campaign ORDER BY clicks DESC, sku, campaign LIMIT 20"),
    }


def panel_sql(name: str, f: Filters) -> str:
    return BY_NAME[name].sql(f)


def _doc() -> str:
    lines = ["# Analytical queries", "",
             "Generated from `schemas/analytics.py` by `python -m schemas.analytics` (a test checks it is current).",
             "Every query runs on ClickHouse 18.16 and chDB; the dashboard (`/dashboard`) shows each as a panel and",
             "`make bench-dashboard` times them on a ledger of 10M rows.",
             "Filters: a time range (`start`, `end`), a `bucket` (minute, hour, day) for time series, and optionally",
             "one `campaign` (the click's campaign tag) and one `promoter`.", ""]
    for group, title in (("realtime", "Real time"), ("team", "Team performance (团队业绩)"),
                         ("promotion", "Promotion effect (推广效果, ROI)"), ("risk", "Risk and money")):
        lines += [f"## {title}", ""]
        for p in PANELS:
            if p.group != group:
                continue
            lines += [f"### `{p.name}` — {p.title}", "", p.about, "", "| column | meaning |", "|---|---|"]
            lines += [f"| `{c}` | {m} |" for c, m in p.columns]
            lines.append("")
    lines += ["## The promoter page (`/p/{promoter}`)", "",
              "Each query is narrowed to one promoter (`beneficiary_id`, `payee` or `promoter_id`): the page shows",
              "that promoter's money and nothing of anyone else's.", "", "| query | what | columns |", "|---|---|---|"]
    lines += [f"| `{n}` | {what} | {', '.join(f'`{c}`' for c in cols)} |" for n, (what, cols) in PROMOTER_COLUMNS.items()]
    return "\n".join(lines) + "\n"


DOC = Path(__file__).resolve().parents[1] / "docs" / "analytics.md"


if __name__ == "__main__":
    DOC.write_text(_doc(), encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
