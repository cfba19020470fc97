"""The fraud review queue: held orders nobody has decided yet, worst first.

One query, in the SQL subset that runs on ClickHouse 18.16 and chDB alike: an order's latest
``fraud_scores`` row is its highest score (signals only grow), the money it holds is the net
of its ledger rows whose amount sits in ``held``, and a ``review.decided`` event takes it off
the queue (contract §1.1).
"""
from __future__ import annotations

REVIEW_QUEUE = """
SELECT order_id, top_score AS score, top_reasons AS reasons, promoter, customer, last_signal, held_amount
FROM (
    SELECT order_id, max(score) AS top_score, argMax(reasons, score) AS top_reasons,
           argMax(promoter_id, score) AS promoter, any(customer_id) AS customer, max(ts) AS last_signal
    FROM fraud_scores
    WHERE held = 1
      AND order_id NOT IN (SELECT order_id FROM order_events WHERE type = 'review.decided')
    GROUP BY order_id
) AS queue ANY LEFT JOIN (
    SELECT order_id, sum(amount) AS held_amount
    FROM commission_ledger
    WHERE status_after = 'held'
    GROUP BY order_id
) AS held USING order_id
ORDER BY toInt64(held_amount * 100) DESC, toInt64(top_score * 1000000) DESC, order_id
LIMIT {limit}
"""


def review_queue_sql(limit: int) -> str:
    return REVIEW_QUEUE.format(limit=int(limit))
