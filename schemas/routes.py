"""Where each event type goes, and the one admit path: a raw record in, an event or a dead letter out.

Every entry point calls :func:`admit` — ``tuike run`` and ``tuike serve`` (embedded), the Faust
stages, the gateway's ``/events``, and ``tuike produce`` for a line it cannot publish — so a
record is refused with the same reason and the same dead-letter key everywhere, and a file run
embedded or streamed leaves the same ``dead_letters`` rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from schemas.dead_letter import DeadLetter
from schemas.events import Event
from schemas.records import Record, parse_record


class Route(NamedTuple):
    topic: str  # the input topic without its prefix (contract §1.3)
    key_field: str  # the field the topic is keyed by; also the key of the event's dead letter


# contract §1.3: the one route table
ROUTES: dict[str, Route] = {
    "promoter.joined": Route("promoters", "promoter_id"),
    "promoter.banned": Route("promoters", "promoter_id"),
    "promoter.agreed": Route("promoters", "promoter_id"),
    "click": Route("clicks", "click_id"),
    "customer.bound": Route("binds", "customer_id"),
    "order.paid": Route("orders", "order_id"),
    "order.completed": Route("orders", "order_id"),
    "order.refunded": Route("orders", "order_id"),
    "order.cancelled": Route("orders", "order_id"),
    "review.decided": Route("orders", "order_id"),
    "order.settled": Route("orders", "order_id"),  # written by `tuike settle`
}
INPUTS = ("promoters", "clicks", "binds", "orders")  # the input topics of contract §1.3, in that order
ID_FIELDS = ("order_id", "customer_id", "promoter_id", "click_id")  # a dead letter's key when its type is unknown


@dataclass(frozen=True, slots=True)
class Admitted:
    event: Event
    topic: str  # its input topic, without the prefix
    key: str  # its key there


def admit(rec: Record, transport_key: str = "") -> Admitted | DeadLetter:
    """The typed event and where it goes, or the dead letter that says why not. ``transport_key``
    is the key a record arrived with (a Kafka message's): see :func:`dead_letter_key`."""
    parsed = parse_record(rec)
    if isinstance(parsed, str):
        return DeadLetter.of(rec.source, rec.position, rec.raw, parsed, dead_letter_key(rec.obj, transport_key))
    route = ROUTES[parsed.type]
    return Admitted(parsed, route.topic, getattr(parsed, route.key_field))


def topic_and_key(obj: dict | None) -> tuple[str, str] | None:
    """Where a decoded record would be published, without validating it (``tuike produce`` leaves
    that to the workers); None when it names no known type or no string key: :func:`admit` says why."""
    kind = obj.get("type") if obj is not None else None
    route = ROUTES.get(kind) if isinstance(kind, str) else None
    if route is None:
        return None
    key = obj.get(route.key_field)  # type: ignore[union-attr]
    return (route.topic, key) if isinstance(key, str) and key else None


def dead_letter_key(obj: dict | None, transport_key: str = "") -> str:
    """The original key (contract §1.3): the routed key field of a known type; else the key the
    record arrived with; else the first id field the record has; '' when there is none."""
    kind = obj.get("type") if obj else None
    route = ROUTES.get(kind) if isinstance(kind, str) else None
    routed = obj.get(route.key_field) if route else None  # type: ignore[union-attr]
    if isinstance(routed, str):
        return routed
    if transport_key or not obj:
        return transport_key
    return next((obj[name] for name in ID_FIELDS if isinstance(obj.get(name), str)), "")


def reason_class(reason: str) -> str:
    """A short class of a rejection reason for summaries: 'order.paid: items[0].price'."""
    head, _, rest = reason.partition(": ")
    field_name = rest.split(":", 1)[0] if rest else ""
    return f"{head}: {field_name}" if field_name and len(field_name) < 40 else head
