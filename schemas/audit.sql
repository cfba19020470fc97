-- Who looked at what on the dashboard (tuike/dashboard/audit.py): one row per page view, panel
-- query (an auto-refresh repeating the same filters within a minute is the same query) and
-- export. `token_id` is `secret:<kid>`, `link:<kid>` (a keyed id of the secret, never a token);
-- `detail` is the filters or export parameters as JSON; `client_ip` as the server saw it. Kept
-- six months at least (网络安全法 §21). MergeTree: every row counts, nothing is replaced.

CREATE TABLE IF NOT EXISTS {db}.dashboard_audit (
    at DateTime('UTC'),
    shop_id String,
    token_id String,
    action String,
    target String,
    detail String,
    client_ip String,
    status UInt16
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (at, shop_id);
