"""Live views over the ledger, served by ``tuike serve`` (实时数据看板, 团队业绩, 推广效果).

- ``/dashboard`` for shop owners and analysts: every panel of :mod:`schemas.analytics`, refreshed
  every 2 s (or twice as long as the panels took, when longer), filtered by period, bucket, campaign
  and promoter, and narrowed to the shop of the token (:func:`shop_filters`). ``/dashboard?token=…``
  takes the shop's secret or a signed, expiring link (:mod:`tuike.dashboard.access`) and exchanges
  it for a session cookie (HttpOnly, SameSite=Strict, Secure over TLS); the JSON API also takes
  ``Authorization: Bearer <token>``. Every view, query and export is in the audit log
  (:mod:`tuike.dashboard.audit`); every response has the security headers of
  :mod:`tuike.dashboard.headers`.
- ``/p/{promoter}?exp=…&sig=…`` for one promoter, reached by a signed link (``tuike link page``):
  their money by status, each order line with the rule and rate that paid it, their
  settlements and their promotion links with QR codes. The signature is HMAC-SHA256 with the
  links secret over the promoter and the expiry: a changed promoter, expiry or signature is 403.
- ``/dashboard/api/export/{table}`` streams a table as Parquet or CSV (tuike/backoffice/export.py):
  the shop's rows, personal columns pseudonymised unless ``raw=1`` (:mod:`tuike.dashboard.exports`).

Charts are drawn by plotly.js, served from the ``plotly`` package installed with tuike (no CDN:
the pages work with no internet). Money crosses the wire as decimal strings, never floats.
Queries run on the ledger's own thread (the embedded pipeline's, so reads and writes of chDB
never overlap), and a page sees an event as soon as the pipeline has written it.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib.resources
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from engine.pseudonyms import Pseudonyms
from schemas.analytics import PANELS, Filters, promoter_queries, quote
from topologies.protection import privacy_settings
from sinks import LedgerError
from tuike.dashboard.access import Claims, Keyring, Refused, shop_secrets
from tuike.dashboard.audit import AuditLog, AuditUnavailable, Entry
from tuike.dashboard.exports import ExportRefused, ExportScope, rewrite
from tuike.dashboard.headers import REPORT_PATH, SecurityHeaders
from tuike.insights.panels import json_value, panel_data

from gateway.app import create_app
from gateway.handoff import Handoff
from gateway.links import Link, make_code
from gateway.settings import GatewaySettings

log = logging.getLogger("tuike.dashboard")
Query = Callable[..., Awaitable[Any]]  # (SQL, settings) -> QueryResult, read-only, on the ledger's thread

COOKIE = "tk_dash"
STATIC = importlib.resources.files("tuike.dashboard") / "static"
PERIOD = re.compile(r"^(all|(19[7-9]\d|20\d\d)-(0[1-9]|1[0-2])|(\d{1,4})(h|d))$")
FAR_END = 4102444800  # 2100-01-01: "all" ends there
PAGE_SIG_BYTES = 16
SHARED_SECONDS = 1  # panels computed for one request serve every other request with the same filters this long
# A panel's query is stopped after this long (ClickHouse max_execution_time) and the panel shows
# why: embedded, the queries run on the pipeline's thread, so a slow one would hold up intake.
PANEL_SECONDS = 10



class LedgerThread:
    """The ledger, used from one thread only: the embedded pipeline's own (so a read never runs
    while the pipeline writes chDB), or a thread of its own for a server ledger (a
    clickhouse-driver client is not thread-safe)."""

    def __init__(self, ledger: Any, thread: ThreadPoolExecutor | None = None):
        self.ledger = ledger
        self.thread = thread or ThreadPoolExecutor(1, thread_name_prefix="ledger-reads")

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    async def query(self, sql: str, settings: Mapping[str, int] | None = None) -> Any:
        """A read, under the same read-only guard as ``tuike query`` (sinks/readonly.py): the filters
        are a visitor's input inside the SQL."""
        return await self.call(self.ledger.read, sql, settings)


class FilterError(ValueError):
    """A filter the dashboard cannot use; the message names it (422)."""


def filters_of(params: dict[str, str], tz: str, now: float) -> Filters:
    """``period``: ``all`` (default), a month ``YYYY-MM`` in the shop's timezone, or the last
    ``N h``/``N d`` before now; ``bucket``: minute, hour or day (default by period length)."""
    period = (params.get("period") or "all").strip()
    m = PERIOD.match(period)
    if not m:
        raise FilterError(f"period {period!r}: expected all, YYYY-MM (1970–2099), or a number of hours or days "
                          "such as 24h, 7d")
    if period == "all":
        start, end, bucket = 0, FAR_END, "day"
    elif m.group(4):
        n, unit = int(m.group(4)), m.group(5)
        span = n * (3600 if unit == "h" else 86400)
        now_s = int(now) - int(now) % SHARED_SECONDS  # the same filters for every tab within a beat
        start, end = max(0, now_s - span), now_s + SHARED_SECONDS
        bucket = "minute" if span <= 6 * 3600 else "hour" if span <= 8 * 86400 else "day"
    else:
        year, month = int(period[:4]), int(period[5:7])
        first = datetime(year, month, 1, tzinfo=ZoneInfo(tz))
        after = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=ZoneInfo(tz))
        start, end, bucket = int(first.timestamp()), int(after.timestamp()), "day"
    bucket = params.get("bucket") or bucket
    for name in ("campaign", "promoter"):
        if "\x00" in (params.get(name) or ""):  # no id holds one, and the read-only guard refuses it in SQL
            raise FilterError(f"{name}: a NUL character is not part of any id")
    try:
        return Filters(start, end, bucket, (params.get("campaign") or "").strip(), (params.get("promoter") or "").strip(),
                       timezone=tz)
    except ValueError as exc:
        raise FilterError(str(exc)) from None


# --- signed promoter pages ----------------------------------------------------------------------

def page_signature(secret: str, promoter: str, exp: int) -> str:
    mac = hmac.new(secret.encode(), b"tuike-page|" + promoter.encode() + b"|" + str(exp).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:PAGE_SIG_BYTES]).rstrip(b"=").decode()


def promoter_page_url(base_url: str, secret: str, promoter: str, exp: int) -> str:
    from urllib.parse import quote as q

    return f"{base_url.rstrip('/')}/p/{q(promoter, safe='')}?exp={exp}&sig={page_signature(secret, promoter, exp)}"


def page_refusal(secret: str | None, promoter: str, exp: str, sig: str, now: float) -> str | None:
    """Why a promoter page link is refused (None: it is good)."""
    if not secret:
        return "promoter pages need links.secret in tuike.yaml"
    if not (exp.isascii() and exp.isdigit() and len(exp) <= 12) or not sig:
        return "this promoter link is incomplete (exp and sig are needed)"
    if not hmac.compare_digest(page_signature(secret, promoter, int(exp)), sig):
        return "this promoter link was altered or is not signed by this shop"
    if int(exp) < now:
        return "this promoter link has expired: ask the shop for a new one"
    return None


def _rows(result: Any) -> dict:
    return {"columns": list(result.columns), "rows": [[json_value(v) for v in r] for r in result.rows]}


@dataclass
class DashboardContext:
    settings: GatewaySettings
    ledger: LedgerThread | None  # None: tuike serve reads no ledger (Kafka hand-off without --clickhouse)
    timezone: str
    clock: Callable[[], float] = time.time
    raw_config: Mapping[str, Any] | None = None  # tuike.yaml as read: dashboard_tokens, privacy


def serving_app(settings: GatewaySettings, handoff: Handoff, *, ledger: LedgerThread | None,
                shop_timezone: str, clock: Callable[[], float] = time.time,
                raw_config: Mapping[str, Any] | None = None) -> FastAPI:
    """What ``tuike serve`` runs: the HTTP edge (gateway/app.py) with the dashboards on top."""
    app = create_app(settings, handoff, clock=clock)
    add_dashboard(app, DashboardContext(settings, ledger, shop_timezone, clock, raw_config))
    return app


def privacy_key(raw: Mapping[str, Any] | None) -> Pseudonyms | None:
    """The pseudonyms of ``privacy:`` (topologies/protection.py), or None when privacy is off (exports
    then drop the personal columns)."""
    settings = privacy_settings(dict(raw or {}))
    return Pseudonyms(settings.pseudonym_key) if settings else None


def shop_filters(f: Filters, shop: str, single_shop: bool) -> Filters:
    """``f`` narrowed to ``shop``: its orders, and with one shop configured also the rows of no shop
    (``shop_id`` ''; clicks, binds, the recruiting tree, settlements) — with several, nothing says
    whose those are, so no shop's token sees them."""
    return replace(f, shops=(shop, "") if single_shop else (shop,), unowned=single_shop)


def client_ip(request: Request) -> str:
    """The client as the server saw it (behind a trusted proxy, what the gateway resolved)."""
    return request.client.host if request.client else ""


def add_dashboard(app: FastAPI, ctx: DashboardContext) -> None:
    recommendations = Recommendations()
    computed: dict[Filters, tuple[float, asyncio.Future]] = {}
    keyring = Keyring(shop_secrets(ctx.settings.shops))
    pseudonyms = privacy_key(ctx.raw_config)
    single_shop = len(ctx.settings.shops) == 1
    audit = AuditLog(ctx.ledger.ledger, ctx.ledger.call, ctx.clock) if ctx.ledger else None
    app.add_middleware(SecurityHeaders)

    async def shared_panels(f: Filters) -> dict:
        """One computation of the panels per filters and beat, whatever the number of open tabs:
        the queries run on the ledger's thread, which (embedded) is also the pipeline's."""
        now = time.monotonic()
        for key in [k for k, (t, _) in computed.items() if now - t >= SHARED_SECONDS]:
            del computed[key]
        if f not in computed:
            computed[f] = (now, asyncio.ensure_future(_run_panels(ctx.ledger.query, f)))
        return await asyncio.shield(computed[f][1])

    async def shop_panels(f: Filters, shop: str) -> dict:
        """The panels of ``shop``. With one shop configured and no order of another shop in the
        ledger, its scope is the whole ledger: the panels then read it unnarrowed (and may use the
        hourly sums); checked again after, so an order of another shop arriving meanwhile is never
        shown."""
        scoped = shop_filters(f, shop, single_shop)
        if not single_shop or await _foreign_orders(ctx.ledger, shop):
            return await shared_panels(scoped)
        results = await shared_panels(f)
        return results if not await _foreign_orders(ctx.ledger, shop) else await shared_panels(scoped)

    def claims_of(request: Request) -> Claims:
        """The shop the request proves: ``Authorization: Bearer`` (any token form), else the session cookie."""
        auth = request.headers.get("authorization") or ""
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE) or ""
        if not given:
            raise Refused("open the dashboard link (/dashboard?token=…) first, or send Authorization: Bearer <token>")
        return keyring.prove(given, ctx.clock())

    def refusal(status: int, reason: str, html: bool = False) -> Response:
        if html:
            return HTMLResponse(_message_page("tuike dashboard", reason), status_code=status)
        return JSONResponse({"error": reason}, status_code=status)

    def no_ledger() -> Response:
        return refusal(503, "this tuike serve reads no ledger: start it with the embedded pipeline, or give "
                            "--clickhouse with --to kafka")

    async def audited(request: Request, claims: Claims, action: str, target: str, detail: dict,
                      repeat_key: tuple | None = None) -> Response | None:
        """Write the audit row; a refusal (503) if it cannot be written, else None."""
        if audit is None:
            return None
        entry = Entry(int(ctx.clock()), claims.shop, claims.token_id, action, target, detail, client_ip(request))
        try:
            await audit.record(entry, repeat_key)
        except AuditUnavailable as exc:
            return refusal(503, str(exc), html=action == "view")
        return None

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        token = request.query_params.get("token")
        try:
            claims = keyring.prove(token, ctx.clock()) if token is not None else claims_of(request)
        except Refused as exc:
            return refusal(401, str(exc), html=True)
        if token is not None:  # exchanged once: the token leaves the address bar
            session, max_age = keyring.session_for(claims, ctx.clock())
            response = RedirectResponse("/dashboard", status_code=303)
            response.set_cookie(COOKIE, session, httponly=True, samesite="strict", max_age=max_age,
                                secure=request.url.scheme == "https", path="/")
            return response
        problem = await audited(request, claims, "view", "dashboard", {})
        return problem or HTMLResponse((STATIC / "dashboard.html").read_text(encoding="utf-8"))

    @app.post(REPORT_PATH, include_in_schema=False)
    async def csp_report(request: Request) -> Response:
        """What the browser blocked under the Content-Security-Policy: logged, never stored (anyone may post)."""
        body = (await request.body())[:4096]
        log.warning("dashboard Content-Security-Policy violation: %s", body.decode("utf-8", "replace"))
        return Response(status_code=204)

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name == "plotly.min.js":
            path = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
            return FileResponse(str(path), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})
        if name not in ("dashboard.js", "promoter.js", "tuike.css"):
            return refusal(404, f"no static file {name!r}")
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return Response((STATIC / name).read_text(encoding="utf-8"), media_type=media)

    @app.get("/dashboard/api/panels")
    async def panels(request: Request) -> Response:
        """Every panel of schemas/analytics.py for the filters (period, bucket, campaign, promoter)."""
        try:
            claims = claims_of(request)
        except Refused as exc:
            return refusal(401, str(exc))
        if ctx.ledger is None:
            return no_ledger()
        try:
            f = filters_of(dict(request.query_params), ctx.timezone, ctx.clock())
        except FilterError as exc:
            return refusal(422, str(exc))
        asked = {k: request.query_params.get(k) or "" for k in ("period", "bucket", "campaign", "promoter")}
        problem = await audited(request, claims, "query", "panels", asked,
                                repeat_key=(claims.token_id, claims.shop, client_ip(request), tuple(asked.items())))
        if problem:
            return problem
        started = time.perf_counter()
        results = await shop_panels(f, claims.shop)
        return JSONResponse({"shop": claims.shop, "filters": {"start": f.start_s, "end": f.end_s, "bucket": f.bucket,
                                                              "campaign": f.campaign, "promoter": f.promoter},
                             "panels": results, "ms": round((time.perf_counter() - started) * 1000)})

    @app.get("/dashboard/api/export/{table}")
    async def export(table: str, request: Request) -> Response:
        """A table as Parquet (default) or CSV, ``?format=csv&period=YYYY-MM`` (as ``tuike export``): the
        shop's rows, personal columns pseudonymised; ``raw=1`` keeps them as stored (audited as such)."""
        try:
            claims = claims_of(request)
        except Refused as exc:
            return refusal(401, str(exc))
        if ctx.ledger is None:
            return no_ledger()
        fmt = request.query_params.get("format") or "parquet"
        period = request.query_params.get("period") or None
        raw = request.query_params.get("raw") == "1"
        scope = ExportScope((claims.shop, "") if single_shop else (claims.shop,), single_shop, pseudonyms, raw)
        try:
            _check_export(table, fmt, period, ctx.timezone)
        except ValueError as exc:
            return refusal(422, str(exc))
        problem = await audited(request, claims, "export-raw" if raw else "export", table,
                                {"format": fmt, "period": period or "", "raw": raw})
        if problem:
            return problem
        try:
            path, removed = await ctx.ledger.call(_export_file, ctx.ledger.ledger, table, fmt, period, ctx.timezone,
                                                  scope)
        except ExportRefused as exc:
            return refusal(403, str(exc))
        except ValueError as exc:
            return refusal(422, str(exc))
        media = "application/vnd.apache.parquet" if fmt == "parquet" else "text/csv; charset=utf-8"
        return FileResponse(path, media_type=media, filename=f"{table}{'-' + period if period else ''}.{fmt}",
                            background=BackgroundTask(os.unlink, path),
                            headers={"X-Tuike-Export": _export_note(scope, removed)})

    @app.get("/p/{promoter}", include_in_schema=False)
    async def promoter_page(promoter: str, request: Request) -> Response:
        problem = page_refusal(ctx.settings.link_secret, promoter, request.query_params.get("exp", ""),
                               request.query_params.get("sig", ""), ctx.clock())
        if problem:
            return refusal(403, problem, html=True)
        return HTMLResponse((STATIC / "promoter.html").read_text(encoding="utf-8"))

    @app.get("/p/{promoter}/data")
    async def promoter_data(promoter: str, request: Request) -> Response:
        """One promoter's money, order lines, settlements and links (the signed link's exp and sig)."""
        problem = page_refusal(ctx.settings.link_secret, promoter, request.query_params.get("exp", ""),
                               request.query_params.get("sig", ""), ctx.clock())
        if problem:
            return refusal(403, problem)
        if ctx.ledger is None:
            return no_ledger()
        out = {name: _rows(await ctx.ledger.query(sql)) for name, sql in promoter_queries(promoter).items()}
        out["promoter"] = promoter
        out["recommended"] = await ctx.ledger.call(recommendations.top, ctx.ledger.ledger, promoter, ctx.clock())
        out["links"] = _links(ctx.settings, promoter, out["links"]["rows"])
        return JSONResponse(out)


async def _run_panels(query: Query, f: Filters) -> dict[str, dict]:
    """All panels, one query after the other on the ledger's thread; a panel whose query fails or
    takes longer than :data:`PANEL_SECONDS` comes back empty with the reason (``error``)."""
    out = {}
    for p in PANELS:
        try:
            result = await query(p.sql(f), {"max_execution_time": PANEL_SECONDS})
        except LedgerError as exc:
            out[p.name] = {"name": p.name, "columns": [c for c, _ in p.columns], "rows": [],
                           "error": f"{p.title}: {exc} (at most {PANEL_SECONDS} s a panel: choose a shorter "
                                    "period or one promoter)"}
            continue
        out[p.name] = panel_data(p, result, f.timezone).as_json()
    return out


def _check_export(table: str, fmt: str, period: str | None, tz: str) -> None:
    """Refuse an export that cannot be made before it is audited (unknown table, format or period)."""
    from tuike.backoffice.export import check_export, parse_period

    check_export(table, parse_period(period, tz) if period else None, fmt)


def _export_file(ledger: Any, table: str, fmt: str, period: str | None, tz: str,
                 scope: ExportScope) -> tuple[str, list[str]]:
    """A table export (tuike/backoffice/export.py) as the shop may see it (tuike/dashboard/exports.py),
    in a temporary file for the HTTP edge to send and delete (a 10M-row ledger does not fit in a
    response built in memory), and the columns it leaves out."""
    import tempfile

    from tuike.backoffice.export import export_table, parse_period

    cut = parse_period(period, tz) if period else None
    fd, whole = tempfile.mkstemp(prefix="tuike-export-", suffix=".parquet")
    try:
        with os.fdopen(fd, "wb") as out:
            export_table(ledger, table, "parquet", cut, out)
        return rewrite(ledger, whole, fmt, scope)
    finally:
        os.unlink(whole)


def _export_note(scope: ExportScope, removed: list[str]) -> str:
    """What the X-Tuike-Export header says about the file's personal data."""
    how = "raw" if scope.raw else "pseudonymised" if scope.pseudonyms else "personal columns dropped (privacy is off)"
    return how + (f"; left out: {', '.join(removed)}" if removed else "")


async def _foreign_orders(ledger: LedgerThread, shop: str) -> bool:
    """Whether the ledger holds an order of a shop other than ``shop`` (or of no shop)."""
    result = await ledger.query(f"SELECT count() FROM orders_raw WHERE shop_id NOT IN ({quote(shop)}, '')")
    return int(result.rows[0][0]) > 0


class Recommendations:
    """Products a promoter should push next (推广素材推荐, tuike/insights/recommend.py), for their page: the
    model learns from every promoter's sales and is fitted again at most every ``every`` seconds."""

    def __init__(self, every: float = 600):
        self.every, self.model, self.sales, self.fitted = every, None, {}, float("-inf")

    def top(self, ledger: Any, promoter: str, now: float, n: int = 5) -> list[dict]:
        from tuike.insights.recommend import fit, recommend
        from schemas.analytics import PROMOTER_SALES

        if self.model is None or now - self.fitted >= self.every:
            rows = [(p, sku, int(q)) for p, sku, q in ledger.query(PROMOTER_SALES).rows]
            self.model, self.fitted = fit(rows), now
            self.sales = {}
            for p, sku, q in rows:
                self.sales.setdefault(p, {})[sku] = self.sales.get(p, {}).get(sku, 0) + q
        return [{"sku": str(sku), "score": round(score, 4)}
                for sku, score in recommend(self.model, self.sales.get(promoter, {}), n)]


def _links(settings: GatewaySettings, promoter: str, rows: list[list]) -> list[dict]:
    """The promoter's shop link and the links their clicks came through, each with its code,
    URL and QR code (GET /links/{code}/qr.png)."""
    if not settings.link_secret:
        return []
    seen, out = set(), []
    for sku, campaign, clicks in [["", "", None]] + rows:
        key = (sku or None, campaign or None)
        if key in seen:
            continue
        seen.add(key)
        try:
            code = make_code(Link(promoter, *key), settings.link_secret)
        except ValueError:
            continue
        base = settings.base_url.rstrip("/")
        out.append({"sku": sku, "campaign": campaign, "clicks": clicks or 0, "url": f"{base}/r/{code}",
                    "qr": f"/links/{code}/qr.png"})
    return out


def _message_page(title: str, message: str) -> str:
    import html

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<link rel='stylesheet' href='/dashboard/static/tuike.css'></head>"
            f"<body><main class='message'><h1>{html.escape(title)}</h1><p id='error'>{html.escape(message)}</p>"
            "</main></body></html>")
