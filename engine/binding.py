"""Binding policies (锁粉) and attribution of an order to its level-1 promoter.

Everything here is a pure function of a customer's facts — bind requests, clicks and paid
orders, each with its event time — plus promoter chains. Nothing depends on arrival order:
an order is attributed with the binding valid at the order's ``ts``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.chain import ChainView, is_upline, walk_up
from engine.config import Config

DAY_MS = 86_400_000


@dataclass
class Decision:
    """Why a bind request does or does not take effect."""

    ok: bool
    reason: str = ""


def bind_refusal(customer_id: str, promoter_id: str, ts_ms: int, view: ChainView) -> Decision:
    """Refuse binds that would pay a promoter for their own purchase (contract §2).

    A bind to a promoter whose ``promoter.joined`` has not arrived is parked (``reason`` says
    so) rather than refused; a recheck applies it when the join arrives.
    """
    if customer_id == promoter_id:
        return Decision(False, f"self-bind: customer {customer_id} is the promoter")
    walk = walk_up(promoter_id, ts_ms, view)
    if walk.unknown == promoter_id:
        return Decision(False, f"parked: promoter {promoter_id} has not joined yet")
    if is_upline(customer_id, walk):
        return Decision(False, f"downline bind: promoter {promoter_id} is in customer {customer_id}'s own downline")
    return Decision(True)


def _lapsed(bind: list, ts_ms: int, valid_days: int) -> bool:
    return valid_days > 0 and ts_ms >= bind[0] + valid_days * DAY_MS


Acceptable = Callable[[list], bool]  # is this bind (or click) row one that may take effect?


def binding_at(binds: list[list], first_order_ms: int | None, ts_ms: int, config: Config, acceptable: Acceptable) -> str | None:
    """The promoter a customer is bound to at ``ts_ms`` under the configured mode, or None.

    ``binds`` are ``[ts_ms, event_id, promoter_id]`` sorted by (ts, event_id);
    ``first_order_ms`` is the customer's earliest paid order (for ``new_customer_only``).
    """
    current: list | None = None
    for bind in binds:
        if bind[0] > ts_ms:
            break
        if config.binding_mode == "new_customer_only" and first_order_ms is not None and first_order_ms < bind[0]:
            continue  # no longer a new customer
        if not acceptable(bind):
            continue
        if current is None or _lapsed(current, bind[0], config.valid_days) or config.binding_mode == "override":
            current = bind
    if current is None or _lapsed(current, ts_ms, config.valid_days):
        return None
    return current[2]


def last_click_at(clicks: list[list], ts_ms: int, config: Config, acceptable: Acceptable) -> str | None:
    """The promoter of the latest acceptable click less than ``click_window_days`` before ``ts_ms``.

    ``clicks`` are ``[ts_ms, event_id, promoter_id]`` sorted. A click on one's own link (or a
    downline's) is refused like a self-bind.
    """
    since = ts_ms - config.click_window_days * DAY_MS
    for click in reversed(clicks):
        if click[0] > ts_ms:
            continue
        if click[0] <= since:  # a click exactly click_window_days old is out, as a binding lapses at valid_days
            break
        if acceptable(click):
            return click[2]
    return None
