"""What reading the ledger needs: the :class:`QueryResult` a query returns, and turning query
values back into Python ones (Decimal at the column's scale, aware UTC datetimes, dates).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]  # ClickHouse type names, e.g. "Decimal(38, 2)", "DateTime('UTC')"
    rows: list[tuple]


_DECIMAL_SCALE = re.compile(r"^Decimal(?:\(\s*\d+\s*,\s*(\d+)\s*\)|(?:32|64|128|256)\(\s*(\d+)\s*\))$")


def unwrap_type(type_name: str) -> str:
    """Nullable(X) / LowCardinality(X) -> X."""
    t = type_name.strip()
    while True:
        for wrapper in ("Nullable(", "LowCardinality("):
            if t.startswith(wrapper) and t.endswith(")"):
                t = t[len(wrapper):-1].strip()
                break
        else:
            return t


def decimal_scale(type_name: str) -> int | None:
    m = _DECIMAL_SCALE.match(unwrap_type(type_name))
    if not m:
        return None
    return int(m.group(1) or m.group(2))


def to_utc(value: datetime, naive_zone: Any = timezone.utc) -> datetime:
    """Aware UTC datetime; a naive one is read in ``naive_zone`` (the server's time zone)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=naive_zone)
    return value.astimezone(timezone.utc)


def decimal_converter(scale: int) -> Callable[[Any], Any]:
    quantum = Decimal(1).scaleb(-scale)

    def conv(v: Any) -> Any:
        if v is None:
            return None
        return Decimal(v if isinstance(v, (str, Decimal, int)) else str(v)).quantize(quantum)

    return conv


def epoch_to_utc(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        v = Decimal(v) if "." in v else int(v)
    if isinstance(v, Decimal):
        whole = int(v)
        micros = int(((v - whole) * 1_000_000).to_integral_value())
        return datetime.fromtimestamp(whole, timezone.utc) + timedelta(microseconds=micros)
    return datetime.fromtimestamp(v, timezone.utc)


def iso_date(v: Any) -> Any:
    return None if v is None else (v if isinstance(v, date) else date.fromisoformat(v))
