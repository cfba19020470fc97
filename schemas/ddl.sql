-- tuike ledger schema (contract §4). `{db}` is replaced by the ledger's database; statements
-- are separated by ";\n". Runs unchanged on ClickHouse 18.16 and on chDB 4.4 (engine 26.9), so
-- it keeps to their common subset: no LowCardinality, DateTime64, TTL, CODEC, Map, Bool,
-- Nullable or JSON functions. Every statement is idempotent (IF NOT EXISTS).
--
-- How writing the same rows twice counts once, on both engines:
-- every table is a ReplacingMergeTree base table whose ORDER BY key is a deterministic id
-- (entry_id, event_id, dead_letter_id; (order_id, sku) for order items; the ledger's key leads
-- with ts, which its entry_id determines, so a time range reads only its own granules), and the name analysts
-- query is a VIEW that reads the base table with FINAL. FINAL collapses rows with the same key
-- at read time, before background merges have run, so count() and sum() through the view are
-- the same after one write or many. ReplacingMergeTree only collapses rows inside one
-- partition: a table is partitioned by toYYYYMM(ts) only where the key determines ts (the same
-- entry or event always has the same ts); order_items is not partitioned, since its key
-- (order_id, sku) does not carry the event.
-- Queries that care about exactness read the views, never the *_raw / ledger_entries tables.

CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.ledger_entries (
    entry_id String,
    event_id String,
    ts DateTime('UTC'),
    order_id String,
    item_sku String,
    customer_id String,
    beneficiary_id String,
    level UInt8,
    kind String,
    amount Decimal(18, 2),
    rate Decimal(18, 6),
    rule_id String,
    currency String,
    status_after String,
    generation UInt32
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (generation, ts, entry_id);

-- The ledger summed per hour (UTC) of each generation, level, kind, status and rule, for the
-- dashboards' totals over long ranges (a year of a 10M-row ledger is ~400k rows here). Each write
-- of ledger rows recomputes the hours it touched from the ledger (FINAL, one read), so a row
-- written twice still counts once; version = the entries of that hour the recomputation saw,
-- which only grows, so ReplacingMergeTree(version) keeps the newest sums whichever writer
-- finished last (sinks/schema.py: hours_refresh).
CREATE TABLE IF NOT EXISTS {db}.ledger_hours_raw (
    generation UInt32,
    hour DateTime('UTC'),
    level UInt8,
    kind String,
    status_after String,
    rule_id String,
    amount Decimal(18, 2),
    entries UInt32,
    version UInt32
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (generation, hour, level, kind, status_after, rule_id);

-- Which one-time fills of derived tables from the ledger are done (sinks/schema.py:
-- schema_statements): a fill that failed half-way runs again at the next open. A MergeTree, not a
-- Log table: workers opening a new database at once insert concurrently, which 18.16's TinyLog
-- does not survive.
CREATE TABLE IF NOT EXISTS {db}.schema_upgrades (
    name String,
    done_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
PARTITION BY tuple()
ORDER BY name;

-- Generations (topologies/generation.py): a streaming replay re-derives the whole ledger as
-- generation N+1 beside generation N, and records N+1 here once it has caught up. Analysts see
-- the newest generation recorded (0, the embedded pipeline's and the first streaming one's,
-- while the table is empty), so a replay never shows half a ledger nor two ledgers summed.
CREATE TABLE IF NOT EXISTS {db}.ledger_generations (
    generation UInt32,
    live_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
PARTITION BY tuple()
ORDER BY generation;

-- Settlement rows (`tuike settle`: bonus, tax, settle) are not derived from events, so a replay
-- does not re-derive them: they are written in generation 4294967295, which every view shows.
CREATE VIEW IF NOT EXISTS {db}.commission_ledger AS
SELECT entry_id, event_id, ts, order_id, item_sku, customer_id, beneficiary_id, level, kind,
       amount, rate, rule_id, currency, status_after
FROM {db}.ledger_entries FINAL
WHERE generation = (SELECT max(generation) FROM {db}.ledger_generations) OR generation = 4294967295;

-- A dead letter written again (a re-run of the same file) keeps the time it was first received:
-- the version column is larger for an earlier received_at, and ReplacingMergeTree(ver) keeps
-- the row with the largest version.
CREATE TABLE IF NOT EXISTS {db}.dead_letters_raw (
    dead_letter_id String,
    source String,
    position String,
    key String,
    raw String,
    reason String,
    received_at DateTime('UTC'),
    first_received_ver UInt32 MATERIALIZED 4294967295 - toUInt32(received_at)
) ENGINE = ReplacingMergeTree(first_received_ver)
PARTITION BY tuple()
ORDER BY dead_letter_id;

CREATE VIEW IF NOT EXISTS {db}.dead_letters AS
SELECT dead_letter_id, source, position, key, raw, reason, received_at
FROM {db}.dead_letters_raw FINAL;

-- With `privacy:` on (README: personal data), the person ids, device ids, IPs and payout
-- accounts of the fact tables and the ledger are keyed pseudonyms, and `sealed` holds the raw
-- values people need to see, AES-GCM-encrypted with the person's data key from person_keys.

-- Facts: what the events said, one row per event (order items: one per order and sku), for
-- reconciliation and analysis next to the ledger. Optional fields are '' when absent.

CREATE TABLE IF NOT EXISTS {db}.orders_raw (
    event_id String,
    order_id String,
    ts DateTime('UTC'),
    customer_id String,
    currency String,
    shop_id String,
    promoter_id String,
    click_id String,
    device_id String,
    ip String,
    item_count UInt32,
    paid_amount Decimal(18, 2),
    sealed String DEFAULT ''
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY event_id;

CREATE VIEW IF NOT EXISTS {db}.orders AS
SELECT event_id, order_id, ts, customer_id, currency, shop_id, promoter_id, click_id, device_id,
       ip, item_count, paid_amount, sealed
FROM {db}.orders_raw FINAL;

CREATE TABLE IF NOT EXISTS {db}.order_items_raw (
    order_id String,
    sku String,
    category String,
    price Decimal(18, 2),
    qty UInt32,
    paid_amount Decimal(18, 2),
    ts DateTime('UTC')
) ENGINE = ReplacingMergeTree()
PARTITION BY tuple()
ORDER BY (order_id, sku);

CREATE VIEW IF NOT EXISTS {db}.order_items AS
SELECT order_id, sku, category, price, qty, paid_amount, ts
FROM {db}.order_items_raw FINAL;

-- order.completed / order.refunded / order.cancelled / review.decided. amount is the refund
-- total (0 for the others); detail is the decision (review), the reason (cancel) or the
-- per-item refund amounts "sku=amount;…" (refund by items).
CREATE TABLE IF NOT EXISTS {db}.order_events_raw (
    event_id String,
    type String,
    order_id String,
    ts DateTime('UTC'),
    refund_id String,
    amount Decimal(18, 2),
    detail String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY event_id;

CREATE VIEW IF NOT EXISTS {db}.order_events AS
SELECT event_id, type, order_id, ts, refund_id, amount, detail
FROM {db}.order_events_raw FINAL;

CREATE TABLE IF NOT EXISTS {db}.clicks_raw (
    event_id String,
    click_id String,
    ts DateTime('UTC'),
    promoter_id String,
    visitor_id String,
    customer_id String,
    device_id String,
    ip String,
    user_agent String,
    sku String,
    campaign String,
    parent_click_id String,
    sealed String DEFAULT ''
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY event_id;

CREATE VIEW IF NOT EXISTS {db}.clicks AS
SELECT event_id, click_id, ts, promoter_id, visitor_id, customer_id, device_id, ip, user_agent,
       sku, campaign, parent_click_id, sealed
FROM {db}.clicks_raw FINAL;

CREATE TABLE IF NOT EXISTS {db}.bindings_raw (
    event_id String,
    ts DateTime('UTC'),
    customer_id String,
    promoter_id String,
    via String,
    click_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY event_id;

CREATE VIEW IF NOT EXISTS {db}.bindings AS
SELECT event_id, ts, customer_id, promoter_id, via, click_id
FROM {db}.bindings_raw FINAL;

CREATE TABLE IF NOT EXISTS {db}.promoters_raw (
    event_id String,
    type String,
    ts DateTime('UTC'),
    promoter_id String,
    parent_id String,
    device_id String,
    ip String,
    reason String,
    sealed String DEFAULT ''
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY event_id;

CREATE VIEW IF NOT EXISTS {db}.promoters AS
SELECT event_id, type, ts, promoter_id, parent_id, device_id, ip, reason, sealed
FROM {db}.promoters_raw FINAL;

-- One row per order and set of fraud signals (engine/suspicion.py): the score they give, the
-- reason codes (README: fraud signals), the features behind them as JSON, and whether the order
-- is held. An order's signals only grow, so its latest row is the one with the highest score.
-- Not partitioned: the same (order, reasons) may be dated differently by two runs.
CREATE TABLE IF NOT EXISTS {db}.fraud_scores_raw (
    score_id String,
    order_id String,
    ts DateTime('UTC'),
    customer_id String,
    promoter_id String,
    score Decimal(18, 6),
    reasons String,
    features String,
    held UInt8
) ENGINE = ReplacingMergeTree()
ORDER BY score_id;

CREATE VIEW IF NOT EXISTS {db}.fraud_scores AS
SELECT score_id, order_id, ts, customer_id, promoter_id, score, reasons, features, held
FROM {db}.fraud_scores_raw FINAL;

-- Where each order stands now (engine/standing.py), written by the order processor whenever the
-- order's money moves: the winning payment's time, customer, click and amount, the promoter
-- holding each level (largest net of accrue and reverse rows) and the net commission of levels
-- 1-3, each and together. The dashboards read one row per order here instead of grouping the ledger by order. The
-- highest version is the latest; keyed by (generation, order, payment time), so the row and its
-- copies share a partition, and a replaced payment's time is overwritten by an empty row.
CREATE TABLE IF NOT EXISTS {db}.order_standings_raw (
    generation UInt32,
    order_id String,
    ts DateTime('UTC'),
    version UInt32,
    customer_id String,
    click_id String,
    paid_amount Decimal(18, 2),
    promoter1 String,
    promoter2 String,
    promoter3 String,
    commission Decimal(18, 2),
    commission1 Decimal(18, 2),
    commission2 Decimal(18, 2),
    commission3 Decimal(18, 2)
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (generation, order_id, ts);

CREATE VIEW IF NOT EXISTS {db}.order_standings AS
SELECT order_id, ts, version, customer_id, click_id, paid_amount, promoter1, promoter2, promoter3, commission,
       commission1, commission2, commission3
FROM {db}.order_standings_raw FINAL
WHERE generation = (SELECT max(generation) FROM {db}.ledger_generations)
  AND (promoter1 != '' OR promoter2 != '' OR promoter3 != '');

-- One row per (period, payee) settled by `tuike settle` (tuike/settle.py): the balance carried
-- in, the tier bonus, the income, the tax computation (method, table version, rate, quick
-- deduction), the net paid (or carried) and the SHA-256 of the payee's statement file.
CREATE TABLE IF NOT EXISTS {db}.settlements_raw (
    period String,
    payee String,
    payer String,
    balance Decimal(18, 2),
    gmv Decimal(18, 2),
    tier String,
    bonus_rate Decimal(18, 6),
    bonus Decimal(18, 2),
    income Decimal(18, 2),
    taxable Decimal(18, 2),
    rate Decimal(18, 6),
    quick_deduction Decimal(18, 2),
    tax Decimal(18, 2),
    net Decimal(18, 2),
    carried Decimal(18, 2),
    status String,
    method String,
    table_version String,
    statement_sha256 String,
    settled_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY (period, payee);

CREATE VIEW IF NOT EXISTS {db}.settlements AS
SELECT period, payee, payer, balance, gmv, tier, bonus_rate, bonus, income, taxable, rate, quick_deduction, tax, net,
       carried, status, method, table_version, statement_sha256, settled_at
FROM {db}.settlements_raw FINAL;

-- Share cascades (engine/propagation.py): each click placed in its cascade (root, parent, depth),
-- and each cascade's statistics as its root holds them; the highest version is the latest.
CREATE TABLE IF NOT EXISTS {db}.cascade_nodes_raw (
    click_id String,
    root_id String,
    parent_click_id String,
    depth UInt32,
    ts DateTime('UTC'),
    promoter_id String,
    campaign String,
    sku String
) ENGINE = ReplacingMergeTree()
ORDER BY click_id;

CREATE VIEW IF NOT EXISTS {db}.cascade_nodes AS
SELECT click_id, root_id, parent_click_id, depth, ts, promoter_id, campaign, sku
FROM {db}.cascade_nodes_raw FINAL;

CREATE TABLE IF NOT EXISTS {db}.cascade_stats_raw (
    root_id String,
    version UInt32,
    reach UInt32,
    depth UInt32,
    breadth UInt32,
    conversions UInt32,
    gmv Decimal(18, 2),
    first_ts DateTime('UTC'),
    last_ts DateTime('UTC'),
    promoter_id String,
    campaign String
) ENGINE = ReplacingMergeTree(version)
ORDER BY root_id;

CREATE VIEW IF NOT EXISTS {db}.cascade_stats AS
SELECT root_id, version, reach, depth, breadth, conversions, gmv, first_ts, last_ts, promoter_id, campaign
FROM {db}.cascade_stats_raw FINAL;

-- Viral forecasts (`tuike forecast --all`, tuike/shares.py): each live cascade's final size and
-- K-factor with an 80% interval, as forecast at made_at from its first window_hours; the
-- cascade_forecasts view shows the latest forecast per (cascade, window).
CREATE TABLE IF NOT EXISTS {db}.cascade_forecasts_raw (
    root_id String,
    window_hours Decimal(18, 6),
    made_at DateTime('UTC'),
    size_now UInt32,
    early_size UInt32,
    trained_on UInt32,
    size Decimal(18, 6),
    low Decimal(18, 6),
    high Decimal(18, 6),
    k_factor Decimal(18, 6),
    k_low Decimal(18, 6),
    k_high Decimal(18, 6),
    method String
) ENGINE = ReplacingMergeTree(made_at)
ORDER BY (root_id, window_hours);

CREATE VIEW IF NOT EXISTS {db}.cascade_forecasts AS
SELECT root_id, window_hours, made_at, size_now, early_size, trained_on, size, low, high, k_factor, k_low, k_high, method
FROM {db}.cascade_forecasts_raw FINAL;

-- The order lines each settlement paid (tuike/settle.py), recorded with the settlements and told
-- to the engine as `order.settled` events: paid money is settled, a later hold leaves it alone.
CREATE TABLE IF NOT EXISTS {db}.settled_lines_raw (
    period String,
    order_id String,
    sku String,
    beneficiary_id String,
    level UInt8,
    amount Decimal(18, 2)
) ENGINE = ReplacingMergeTree()
ORDER BY (period, order_id, sku, beneficiary_id, level);

CREATE VIEW IF NOT EXISTS {db}.settled_lines AS
SELECT period, order_id, sku, beneficiary_id, level, amount
FROM {db}.settled_lines_raw FINAL;

-- Fund-flow alerts raised at settlement (tuike/alerts.py), one per (period, kind, subject).
CREATE TABLE IF NOT EXISTS {db}.alerts_raw (
    alert_id String,
    period String,
    kind String,
    subject String,
    detail String,
    amount Decimal(18, 2),
    ts DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY alert_id;

CREATE VIEW IF NOT EXISTS {db}.alerts AS
SELECT alert_id, period, kind, subject, detail, amount, ts
FROM {db}.alerts_raw FINAL;

-- promoter.agreed events (电子签约): which agreement version a promoter signed, the SHA-256 of
-- its text and where they are paid; `tuike settle` logs each in the evidence log.
CREATE TABLE IF NOT EXISTS {db}.agreements_raw (
    event_id String,
    ts DateTime('UTC'),
    promoter_id String,
    agreement_version String,
    text_sha256 String,
    payout_account String,
    sealed String DEFAULT ''
) ENGINE = ReplacingMergeTree()
ORDER BY event_id;

CREATE VIEW IF NOT EXISTS {db}.agreements AS
SELECT event_id, ts, promoter_id, agreement_version, text_sha256, payout_account, sealed
FROM {db}.agreements_raw FINAL;

-- One data key per person (and per month of dead letters), wrapped by a master key of
-- `privacy.master_keys`. Every sealed value names its key_id. `tuike forget` deletes a person's
-- keys, so what was sealed with them can never be read again, wherever a copy of it lies.
-- `version` is when (epoch seconds) the key was last wrapped: `tuike keys rotate` wraps them anew.
CREATE TABLE IF NOT EXISTS {db}.person_keys (
    owner String,
    key_id String,
    wrapped String,
    master_id String,
    version UInt32
) ENGINE = ReplacingMergeTree(version)
ORDER BY (owner, key_id);

-- People who asked to be forgotten (PIPL Art. 47): nothing of theirs is sealed again.
CREATE TABLE IF NOT EXISTS {db}.forgotten_people (
    owner String,
    forgotten_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY owner;

-- The pseudonyms each streaming generation was built with (a key's fingerprint, or `off`): a
-- worker refuses another (topologies/protection.py), since one person would become two.
CREATE TABLE IF NOT EXISTS {db}.privacy_marks (
    generation UInt32,
    mark String,
    at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY generation;
