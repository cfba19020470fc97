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
    WithJsonSchema,
    model_validator,
)

# [0-9], not \d: \d also matches other scripts' digits, which Decimal() would accept.
MONEY_PATTERN = r"^[0-9]{1,13}(\.[0-9]{1,2})?$"  # up to 9,999,999,999,999.99: fits the ledger with room
# RFC 3339 date-time (not the wider ISO 8601 that datetime.fromisoformat takes, such as week
# dates or 20261111T100000); the offset group is optional here only to give a clearer message.
TS_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
_MONEY = re.compile(MONEY_PATTERN)
_TS = re.compile(TS_PATTERN.removesuffix("$") + "?$")


def _parse_money(value: object) -> Decimal:
    """Money is a decimal string in major units; a float would already have lost cents."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f'money must be a decimal string such as "199.00", got {type(value).__name__} {value!r}'
        )
    if not _MONEY.fullmatch(value):
        raise ValueError(
            f'money must be a non-negative decimal string with at most 2 decimals, got {value!r}'
        )
    return Decimal(value)


def _parse_ts(value: object) -> datetime:
    """RFC 3339 with an explicit offset: event time must not depend on a server's zone."""
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be an RFC 3339 string, got {type(value).__name__} {value!r}")
    shape = _TS.fullmatch(value)
    if shape is not None and shape.group(2) is None:
        raise ValueError(f"timestamp has no UTC offset: {value!r} (write e.g. 2026-11-11T10:00:00+08:00)")
    try:
        parsed = datetime.fromisoformat(value.upper()) if shape else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"timestamp is not RFC 3339: {value!r} (write e.g. 2026-11-11T10:00:00+08:00)")
    return parsed.astimezone(timezone.utc)


def _parse_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"ids are strings, got {type(value).__name__} {value!r}")
    if not value or len(value) > 200:
        raise ValueError(f"id must be 1 to 200 characters, got {value!r}")
    return value


# The JSON Schema hints say what a producer must send (strings); validation is unchanged.
_MONEY_SCHEMA = {
    "type": "string",
    "pattern": MONEY_PATTERN,
    "description": 'money: a decimal string in major units with at most 2 decimals, never a float',
    "examples": ["199.00"],
}
_TS_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "pattern": TS_PATTERN,
    "description": "RFC 3339 timestamp with a UTC offset (event time)",
    "examples": ["2026-11-11T10:00:00+08:00"],
}
_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 200}

Money = Annotated[Decimal, BeforeValidator(_parse_money), WithJsonSchema(_MONEY_SCHEMA)]
Timestamp = Annotated[datetime, BeforeValidator(_parse_ts), WithJsonSchema(_TS_SCHEMA)]
Id = Annotated[str, BeforeValidator(_parse_id), WithJsonSchema(_ID_SCHEMA)]
OptId = Annotated[
    Union[str, None],
    BeforeValidator(lambda v: v if v is None else _parse_id(v)),
    WithJsonSchema({"anyOf": [_ID_SCHEMA, {"type": "null"}]}),
]
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


class PromoterAgreed(Event):
    """A promoter signed (电子签约) a version of the promoter agreement; its text is identified by
    its SHA-256, and the evidence log keeps the record (tuike/backoffice/evidence.py)."""
    type: Literal["promoter.agreed"]
    promoter_id: Id
    agreement_version: Id
    text_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    payout_account: OptText = None  # where their settlements are paid (fund-flow alerts compare them)


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


MAX_LINE = Decimal("9999999999999.99")  # price × qty of one line: the ledger's Decimal(18,2) with room for rates


class Item(_Model):
    sku: Id
    category: str = Field(min_length=1)
    price: Money
    qty: int = Field(gt=0, le=1_000_000_000, strict=True)

    @model_validator(mode="after")
    def _line_fits(self) -> "Item":
        if self.price * self.qty > MAX_LINE:
            raise ValueError(f"price × qty = {self.price * self.qty} is more than one line may pay ({MAX_LINE})")
        return self

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
    # JSON Schema form of _items_or_amount: exactly one of items / amount is given (non-null).
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["items"], "properties": {"items": {"type": "array"}, "amount": {"type": "null"}}},
        {"required": ["amount"], "properties": {"amount": {"type": "string"}, "items": {"type": "null"}}},
    ]})

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


class SettledLine(_Model):
    sku: Id
    beneficiary_id: Id
    level: Literal[1, 2, 3]


class OrderSettled(Event):
    """What a closed settlement paid of an order: written by ``tuike settle`` (never by a shop),
    dated the last instant of the period. Paid money is settled: a hold dated later (a ban, a
    fraud score) holds only what is still unpaid (engine/lifecycle.py)."""
    type: Literal["order.settled"]
    order_id: Id
    period: Annotated[str, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    lines: Annotated[list[SettledLine], Field(min_length=1)]


EVENT_MODELS: dict[str, type[Event]] = {
    m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (
        PromoterJoined,
        PromoterAgreed,
        PromoterBanned,
        Click,
        CustomerBound,
        OrderPaid,
        OrderCompleted,
        OrderRefunded,
        OrderCancelled,
        ReviewDecided,
        OrderSettled,
    )
}

AnyEvent = Union[
    PromoterJoined, PromoterAgreed, PromoterBanned, Click, CustomerBound, OrderPaid,
    OrderCompleted, OrderRefunded, OrderCancelled, ReviewDecided, OrderSettled,
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
        problem = "required field is missing" if kind is None else f"unknown event type {kind!r}"
        raise InvalidEvent(f"type: {problem} (known: {known})")
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        raise InvalidEvent(f"{kind}: {describe_errors(exc)}") from None
