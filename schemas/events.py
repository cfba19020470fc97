"""Typed models of the events of contract §1.1, and their validation.

Every model is frozen: the engine treats events as facts. Validation errors are turned into
one line that names the field and the problem (see :func:`describe_errors`), because that
line is what a shop engineer reads in ``dead_letters``.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

_MONEY = re.compile(r"^\d{1,15}(\.\d{1,2})?$")


def _parse_money(value: object) -> Decimal:
    """Money is a decimal string in major units; a float would already have lost cents."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f'money must be a decimal string such as "199.00", got {type(value).__name__} {value!r}'
        )
    if not _MONEY.match(value):
        raise ValueError(
            f'money must be a non-negative decimal string with at most 2 decimals, got {value!r}'
        )
    return Decimal(value)


def _parse_ts(value: object) -> datetime:
    """RFC 3339 with an explicit offset: event time must not depend on a server's zone."""
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be an RFC 3339 string, got {type(value).__name__} {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"timestamp is not RFC 3339: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp has no UTC offset: {value!r} (write e.g. 2026-11-11T10:00:00+08:00)")
    return parsed.astimezone(timezone.utc)


def _parse_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"ids are strings, got {type(value).__name__} {value!r}")
    if not value or len(value) > 200:
        raise ValueError(f"id must be 1 to 200 characters, got {value!r}")
    return value


Money = Annotated[Decimal, BeforeValidator(_parse_money)]
Timestamp = Annotated[datetime, BeforeValidator(_parse_ts)]
Id = Annotated[str, BeforeValidator(_parse_id)]
OptId = Annotated[Union[str, None], BeforeValidator(lambda v: v if v is None else _parse_id(v))]
OptText = Union[str, None]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)


class Event(_Model):
    """Fields every event has."""

    type: str
    event_id: Id
    ts: Timestamp

    @property
    def ts_ms(self) -> int:
        """Event time as epoch milliseconds: the engine's only notion of time."""
        return int(self.ts.timestamp() * 1000)


class PromoterJoined(Event):
    type: Literal["promoter.joined"]
    promoter_id: Id
    parent_id: OptId = None
    device_id: OptText = None
    ip: OptText = None


class PromoterBanned(Event):
    type: Literal["promoter.banned"]
    promoter_id: Id
    reason: OptText = None


class Click(Event):
    type: Literal["click"]
    click_id: Id
    promoter_id: Id
    visitor_id: OptId = None
    customer_id: OptId = None
    device_id: OptText = None
    ip: OptText = None
    user_agent: OptText = None
    sku: OptText = None
    campaign: OptText = None
    parent_click_id: OptId = None


class CustomerBound(Event):
    type: Literal["customer.bound"]
    customer_id: Id
    promoter_id: Id
    via: Union[Literal["link", "qr", "coupon", "manual"], None] = None
    click_id: OptId = None


class Item(_Model):
    sku: Id
    category: str = Field(min_length=1)
    price: Money
    qty: int = Field(gt=0, strict=True)

    @property
    def paid(self) -> Decimal:
        return self.price * self.qty


class OrderPaid(Event):
    type: Literal["order.paid"]
    order_id: Id
    customer_id: Id
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    items: list[Item] = Field(min_length=1)
    promoter_id: OptId = None
    click_id: OptId = None
    device_id: OptText = None
    ip: OptText = None
    shop_id: OptText = None

    @model_validator(mode="after")
    def _unique_skus(self) -> "OrderPaid":
        seen: dict[str, int] = {}
        for i, item in enumerate(self.items):
            if item.sku in seen:
                raise ValueError(
                    f"items[{i}].sku {item.sku!r} repeats items[{seen[item.sku]}]: "
                    "send one line per sku with its total qty"
                )
            seen[item.sku] = i
        return self


class OrderCompleted(Event):
    type: Literal["order.completed"]
    order_id: Id


class RefundItem(_Model):
    sku: Id
    amount: Money


class OrderRefunded(Event):
    type: Literal["order.refunded"]
    order_id: Id
    refund_id: Id
    items: Union[list[RefundItem], None] = Field(default=None, min_length=1)
    amount: Union[Money, None] = None

    @model_validator(mode="after")
    def _items_or_amount(self) -> "OrderRefunded":
        if (self.items is None) == (self.amount is None):
            raise ValueError("give either items (per-item amounts) or amount (order level), not both or neither")
        return self


class OrderCancelled(Event):
    type: Literal["order.cancelled"]
    order_id: Id
    reason: OptText = None


class ReviewDecided(Event):
    type: Literal["review.decided"]
    order_id: Id
    decision: Literal["release", "reject"]
    reviewer: OptText = None
    note: OptText = None


EVENT_MODELS: dict[str, type[Event]] = {
    m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (
        PromoterJoined,
        PromoterBanned,
        Click,
        CustomerBound,
        OrderPaid,
        OrderCompleted,
        OrderRefunded,
        OrderCancelled,
        ReviewDecided,
    )
}

AnyEvent = Union[
    PromoterJoined, PromoterBanned, Click, CustomerBound, OrderPaid,
    OrderCompleted, OrderRefunded, OrderCancelled, ReviewDecided,
]


class InvalidEvent(ValueError):
    """An input that is not a valid event; the message names the field and the problem."""


def describe_errors(exc: ValidationError) -> str:
    """One readable line per problem: ``items[0].price: money must be …``."""
    parts = []
    for err in exc.errors():
        loc = ""
        for p in err["loc"]:
            loc += f"[{p}]" if isinstance(p, int) else (f".{p}" if loc else str(p))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required field is missing"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


_ADAPTERS = {name: TypeAdapter(model) for name, model in EVENT_MODELS.items()}


def validate_event(obj: object) -> Event:
    """Turn a decoded JSON object into its typed event, or raise :class:`InvalidEvent`."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"an event is a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    adapter = _ADAPTERS.get(kind) if isinstance(kind, str) else None
    if adapter is None:
        known = ", ".join(sorted(EVENT_MODELS))
        raise InvalidEvent(f"type: unknown event type {kind!r} (known: {known})")
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        raise InvalidEvent(f"{kind}: {describe_errors(exc)}") from None
