"""Running the analytical queries (schemas/analytics.py) against a ledger, for the dashboard,
the promoter page and the benchmark: rows as JSON-ready values (money as decimal strings, never
floats; times as ISO 8601 UTC) and the derived cost ratios, computed in Decimal."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable
from zoneinfo import ZoneInfo

from schemas.analytics import BY_NAME, Filters, Panel

RATIO = Decimal("0.0001")
Query = Callable[[str], Any]  # SQL -> a QueryResult (columns, types, rows)


@dataclass
class PanelData:
    name: str
    columns: list[str]
    rows: list[list]

    def as_json(self) -> dict:
        return {"name": self.name, "columns": self.columns, "rows": self.rows}


def json_value(v: Any, tz: str | None = None) -> Any:
    """Money as a decimal string; a time as ISO 8601 UTC, or, with ``tz``, as the wall-clock time
    there (``2026-11-11 00:00:00``: what a chart axis in the shop's timezone shows)."""
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, datetime):
        if tz:
            return v.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")
        return v.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, (tuple, list)):
        return [json_value(x, tz) for x in v]
    return v


def cost_ratio(commission: Decimal, gmv: Decimal) -> Decimal:
    return (commission / gmv).quantize(RATIO) if gmv else Decimal("0.0000")


def panel_data(panel: Panel, result: Any, tz: str | None = None) -> PanelData:
    """A panel's query result as JSON-ready rows, with the cost ratios it documents."""
    columns = list(result.columns)
    rows = [list(r) for r in result.rows]
    if "cost_ratio" in (c for c, _ in panel.columns):
        ci, gi = columns.index("commission"), columns.index("gmv")
        for r in rows:
            r.append(cost_ratio(Decimal(r[ci] or 0), Decimal(r[gi] or 0)))
        columns.append("cost_ratio")
    return PanelData(panel.name, columns, [[json_value(v, tz) for v in r] for r in rows])


def run_panel(query: Query, name: str, f: Filters) -> PanelData:
    panel = BY_NAME[name]
    return panel_data(panel, query(panel.sql(f)), f.timezone)
