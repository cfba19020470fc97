"""Helpers that turn platform payloads into canonical events (contract §1): ids, money, time,
and the attribution reference a platform order carries.

Ids are deterministic and namespaced by platform and shop (``shopify:<shop>:<order id>``), so two
shops or two platforms never share an order or customer id, and an event derived twice from
the same platform fact (a redelivery, ``order.updated`` after ``order.created``) has the same
``event_id``: the engine counts it once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Callable
from urllib.parse import parse_qs, urlsplit

# Query parameters / attribute names that carry a promotion reference (a link code, or a
# promoter id for shops that print their own links). ``tk`` is what `GET /r/{code}` appends.
REF_KEYS = ("tk", "tuike", "ref")
CHINA = timezone(timedelta(hours=8))
MAX_AMOUNT = Decimal(10) ** 12  # no platform order line is worth a trillion


@dataclass(frozen=True)
class Attribution:
    promoter_id: str
    click_id: str | None = None


Resolver = Callable[[str], Attribution | None]  # a reference -> who it credits (None: not ours)


class PayloadError(ValueError):
    """The payload lacks what the mapping needs; the message names the field."""


def ns(platform: str, shop_id: str, *parts: object) -> str:
    return ":".join([platform, shop_id, *(str(p) for p in parts)])


def money(value: object, field: str) -> str:
    """A decimal string with 2 places from a platform amount (string or number), half up."""
    try:
        amount = Decimal(str(value))
        ok = amount.is_finite() and abs(amount) < MAX_AMOUNT
        text = str(amount.quantize(Decimal("0.01"), ROUND_HALF_UP)) if ok else None
    except (InvalidOperation, ValueError):
        text = None
    if text is None:
        raise PayloadError(f"{field}: {value!r} is not an amount (a decimal below 10^12)")
    return text


def cents(value: object, field: str) -> str:
    """WeChat Pay amounts are integer fen."""
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= MAX_AMOUNT * 100:
        raise PayloadError(f"{field}: {value!r} is not a whole number of fen")
    return str((Decimal(value) / 100).quantize(Decimal("0.01")))


def rfc3339(value: object, field: str, *, naive_zone: timezone = timezone.utc) -> str:
    """An RFC 3339 time; a time without offset is read in ``naive_zone`` (WooCommerce's ``*_gmt``
    fields are UTC without an offset; 有赞 writes China time without one)."""
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{field}: expected a time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"{field}: {value!r} is not a time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_zone)
    return parsed.isoformat()


def merged_items(lines: list[tuple[str, str, int, Decimal]]) -> list[dict]:
    """Canonical items from (sku, category, qty, amount paid) lines: one item per sku (the
    contract's orders list each sku once; a platform may list a variant twice, e.g. with two
    engravings), at the unit price paid, rounded half up to the cent."""
    merged: dict[str, list] = {}
    for sku, category, qty, paid in lines:
        have = merged.setdefault(sku, [category, 0, Decimal("0")])
        have[1] += qty
        have[2] += paid
    return [{"sku": sku, "category": category, "price": money(paid / qty, "price"), "qty": qty}
            for sku, (category, qty, paid) in merged.items()]


def ref_in_url(url: object) -> str | None:
    """The promotion reference in a landing URL's query (``?tk=…``), if any."""
    if not isinstance(url, str) or "?" not in url:
        return None
    query = parse_qs(urlsplit(url if "://" in url else "http://x" + (url if url.startswith("/") else "/" + url)).query)
    for key in REF_KEYS:
        if query.get(key):
            return query[key][0]
    return None


def ref_in_pairs(pairs: object, key_field: str, value_field: str) -> str | None:
    """The reference in a list of name/value attributes (Shopify note_attributes, WooCommerce meta_data)."""
    if not isinstance(pairs, list):
        return None
    for pair in pairs:
        if isinstance(pair, dict) and str(pair.get(key_field, "")).lstrip("_").lower() in REF_KEYS:
            value = pair.get(value_field)
            if isinstance(value, str) and value:
                return value
    return None


def credit(event: dict, refs: list[str | None], resolve: Resolver) -> dict:
    """Set ``promoter_id`` (and ``click_id``) from the first reference the resolver recognises."""
    for ref in refs:
        if ref:
            found = resolve(ref)
            if found is not None:
                event["promoter_id"] = found.promoter_id
                if found.click_id:
                    event["click_id"] = found.click_id
                break
    return event
