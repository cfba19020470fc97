"""``tuike serve``: the HTTP edge of contract §6 (FastAPI; the OpenAPI description at /openapi.json).

Every request is read raw (a signature covers the bytes as sent), bounded by
``gateway.max_body_bytes`` (413 above it), authenticated per shop, mapped to canonical events
(gateway/shopify.py, woocommerce.py, youzan.py, wechatpay.py) and handed on
(gateway/handoff.py); the answer comes only after the hand-on is durable. Every refusal — bad
signature (401), unknown shop (404), unreadable body (400), invalid payload (422), too large
(413) — is kept in ``dead_letters`` with its reason; a topic tuike does not map is answered 202
and kept there too, so nothing a platform sent is lost. Secrets are never logged or echoed.

What anyone can send without a secret is bounded: the client's address is read through trusted
proxies only (gateway/client_ip.py); unauthenticated requests — clicks, and requests refused
before a valid signature — take a token of the client's bucket (gateway/ratelimit.py, 429 when
empty); and such refusals are sampled into ``dead_letters`` (gateway/refusals.py). A request
whose signature verified sets ``request.state.authenticated`` and is never limited nor sampled.
"""
from __future__ import annotations

import base64
import itertools
import logging
import os
import re
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from schemas.dead_letter import DeadLetter
from schemas.events import OrderSettled
from schemas.records import decode_record
from schemas.routes import Admitted, admit
from topologies.health import Readiness
from topologies.metrics import exposition

from gateway import shopify, wechatpay, woocommerce, youzan
from gateway.canonical import PayloadError
from gateway.client_ip import ClientAddressMiddleware, TrustedProxies
from gateway.fingerprint import fingerprint
from gateway.handoff import Delivery, Handoff
from gateway.health import HttpMetrics, handoff_check
from gateway.links import CLICK_ID, Link, landing, make_code, reference, resolver, share_kit, verify
from gateway.ratelimit import TokenBuckets
from gateway.refusals import RefusalSampler
from gateway.settings import GatewaySettings, Shop
from gateway.signatures import (decrypt_wechatpay_resource, verify_events, verify_shopify, verify_wechatpay,
                         verify_woocommerce, verify_youzan)

log = logging.getLogger("tuike.gateway")
VISITOR_COOKIE = "tk_vid"
VISITOR = re.compile(r"^v[0-9a-f]{20}$")
SEEN_WEBHOOKS = 100_000  # Shopify webhook ids remembered for de-duplication
KEEP_RAW = 64 * 1024  # bytes of a refused body kept in dead_letters (all of it up to this size)
KEEP_RAW_UNAUTHENTICATED = 2 * 1024  # a 401/404 body may come from anyone: keep its start only
PLATFORMS = ("shopify", "woocommerce", "youzan", "wechatpay")
ID_FIELDS = ("order_id", "customer_id", "promoter_id", "click_id", "parent_id")
WOOCOMMERCE_PING = re.compile(rb"^webhook_id=\d+$")  # sent unsigned when a webhook is created


@dataclass
class Outcome:
    """What a handler decided: the answer, the events to hand on, a note to keep in dead_letters,
    and what to remember once the hand-on is durable."""
    status: int
    payload: dict
    events: list[dict] = field(default_factory=list)
    note: str | None = None
    dead: list[DeadLetter] = field(default_factory=list)  # refusals of parts of the body (lines of /events)
    done: Callable[[], None] | None = None


class Refused(Exception):
    """A request tuike does not accept: the status, the reason (names the problem, never a secret)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _raw(body: bytes) -> str:
    return body[:KEEP_RAW].decode("utf-8", "replace")


def _json(body: bytes) -> dict:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"body is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Refused(400, "body is not a JSON object")
    return obj


def foreign_id(event: dict, shop_id: str) -> str | None:
    """Why a shop may not send this event: an id in another shop's namespace (``shopify:<shop>:…``,
    as the webhook mappings write them). A shop's events_secret covers its own ids only."""
    for field_name in ID_FIELDS:
        value = event.get(field_name)
        parts = value.split(":", 2) if isinstance(value, str) else []
        if len(parts) == 3 and parts[0] in PLATFORMS and parts[1] != shop_id:
            return f"{event.get('type')}: {field_name}: {value!r} belongs to shop {parts[1]!r}, not to {shop_id!r}"
    return None


def _checked(events: list[dict], source: str) -> list[dict]:
    """The contract's validation on mapped events: a mapping bug or odd payload is a 422, not a crash."""
    for i, event in enumerate(events):
        admitted = admit(decode_record(source, i, orjson.dumps(event)))  # type: ignore[arg-type]
        if isinstance(admitted, DeadLetter):
            raise Refused(422, f"the payload maps to an invalid {event.get('type')}: {admitted.reason}")
    return events


def create_app(settings: GatewaySettings, handoff: Handoff, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """The HTTP edge: webhooks, canonical events and promotion links (``tuike serve`` adds the
    dashboards on top, tuike/dashboard)."""
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await handoff.close()  # the embedded state is closed cleanly, the producer flushed

    app = FastAPI(title="tuike gateway", version="1", lifespan=lifespan,
                  description="Shop webhooks, canonical events and promotion links into the tuike commission engine.")
    trusted = TrustedProxies(settings.trusted_proxies)
    if trusted:
        app.add_middleware(ClientAddressMiddleware, trusted=trusted)
    app.add_middleware(HttpMetrics)  # outermost: counts what the client was answered
    readiness = app.state.readiness = Readiness({"handoff": handoff_check(handoff)})  # tuike serve adds its ledger
    buckets = TokenBuckets(settings.rate_limit, clock) if settings.rate_limit else None
    sampler = RefusalSampler(settings.refusal_samples, clock)
    seen: OrderedDict[str, None] = OrderedDict()
    # request ids: a random prefix per app and a counter — unique, and no os.urandom syscall per
    # request (a syscall drops the GIL, and the pipeline thread may hold it for a switch interval)
    id_prefix, id_counter = os.urandom(8).hex(), itertools.count()
    resolve = resolver(settings.link_secret) if settings.link_secret else (lambda ref: None)

    async def read_body(request: Request) -> bytes:
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise Refused(413, f"body of {int(declared):,} bytes is over the limit of {limit:,} (gateway.max_body_bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body is over the limit of {limit:,} bytes (gateway.max_body_bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    def shop_of(shop_id: str, what: str) -> Shop:
        shop = settings.shops.get(shop_id)
        if shop is None:
            raise Refused(404, f"unknown shop {shop_id!r} (tuike.yaml: shops)")
        if getattr(shop, what) is None:
            raise Refused(404, f"shop {shop_id!r} has no {what} (tuike.yaml: shops.{shop_id}.{what})")
        return shop

    def authenticate(shop_id: str, secret: str, check, header: str, body: bytes, request: Request) -> None:
        """An HMAC-signed body (Shopify, WooCommerce, /events): 404 for an unknown shop, 401 for a bad signature."""
        problem = check(body, request.headers.get(header), getattr(shop_of(shop_id, secret), secret))
        if problem:
            raise Refused(401, problem)
        request.state.authenticated = True

    def throttled(request: Request) -> Response | None:
        """429 when the client has used its unauthenticated requests (gateway.rate_limit)."""
        ip = request.client.host if request.client else "unknown"
        wait = buckets.take(ip) if buckets else 0
        if not wait:
            return None
        return JSONResponse({"error": f"too many unauthenticated requests from {ip}: retry after {wait} s "
                                      "(gateway.rate_limit)"}, status_code=429, headers={"Retry-After": str(wait)})

    async def refuse(source: str, rid: str, request: Request, status: int, reason: str, raw: str) -> Response:
        """Answer a refusal and keep it in dead_letters; before authentication, rate-limited and sampled."""
        if not getattr(request.state, "authenticated", False):
            limited = throttled(request)
            if limited is not None:
                return limited
            keep = sampler.keep(f"{source} {status}")
        else:
            keep = True
        if keep:
            await handoff.hand_on(Delivery(source, rid, dead=[DeadLetter.of(source, rid, raw, reason)]))
        return JSONResponse({"error": reason, "request": rid}, status_code=status)

    async def answer(source: str, request: Request, handle) -> Response:
        """Run ``handle(body) -> Outcome``; hand its events on; refusals to dead_letters."""
        rid = f"{id_prefix}{next(id_counter):016x}"
        body = b""
        try:
            body = await read_body(request)
            outcome = await handle(body, rid)
        except Refused as r:
            raw = _raw(body[:KEEP_RAW_UNAUTHENTICATED] if r.status in (401, 404) else body)
            return await refuse(source, rid, request, r.status, r.reason, raw)
        except (PayloadError, TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
            # PayloadError names the field; the others are shapes a mapping did not foresee (a null
            # where a string was expected): still the sender's payload, never a 500
            reason = f"payload: {exc}" if isinstance(exc, PayloadError) else \
                f"payload has an unexpected shape ({type(exc).__name__}: {exc})"
            if not isinstance(exc, PayloadError):
                log.warning("%s %s: %s", source, rid, reason)
            return await refuse(source, rid, request, 422, reason, _raw(body))
        dead = [DeadLetter.of(source, rid, _raw(body), outcome.note)] if outcome.note else []
        await handoff.hand_on(Delivery(source, rid, outcome.events, dead + outcome.dead))
        if outcome.done:
            outcome.done()
        return JSONResponse({**outcome.payload, "events": len(outcome.events), "request": rid},
                            status_code=outcome.status)

    def mapped(events: list[dict] | None, source: str, what: str, recorded_status: int = 202, **extra: object) -> Outcome:
        if events is None:  # WeChat Pay and 有赞 retry anything but 200: they get 200 for "recorded"
            return Outcome(recorded_status, {"recorded": f"{what} is not mapped by tuike; kept in dead_letters", **extra},
                           note=f"not mapped: {what}")
        return Outcome(200, {"accepted": True, **extra}, _checked(events, source))

    @app.get("/readyz")
    async def readyz() -> Response:
        """Readiness: the hand-on works (Kafka answers, or the embedded pipeline keeps up) and the
        ledger answers; 503 names what is not ready."""
        status, body = await readiness.answer()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def scrape() -> Response:
        await readiness.problems()  # the tuike_ready gauges
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the event loop answers (the figures are for people; readiness is /readyz)."""
        backlog = getattr(handoff, "backlog", None)  # embedded: acknowledged, not yet in the ledger
        refusals = {"kept": sampler.kept, "dropped": sampler.dropped,  # anonymous refusals (gateway/refusals.py)
                    "rate_limited": buckets.refused if buckets else 0}
        return ({"status": "ok", "mode": handoff.mode, "process": os.getpid()}  # which of several serving processes
                | ({"backlog": backlog} if backlog is not None else {}) | {"refusals": refusals})

    @app.post("/webhooks/shopify/{shop_id}")
    async def shopify_webhook(shop_id: str, request: Request) -> Response:
        async def handle(body: bytes, rid: str):
            authenticate(shop_id, "shopify_secret", verify_shopify, "x-shopify-hmac-sha256", body, request)
            webhook = request.headers.get("x-shopify-webhook-id")
            if webhook and f"{shop_id}/{webhook}" in seen:
                return Outcome(200, {"duplicate": True})
            topic = request.headers.get("x-shopify-topic") or ""
            outcome = mapped(shopify.events(topic, _json(body), shop_id, resolve), "gateway:shopify", f"topic {topic!r}")

            def remember() -> None:  # only once handed on: a failed hand-on must let Shopify's retry through
                seen[f"{shop_id}/{webhook}"] = None
                while len(seen) > SEEN_WEBHOOKS:
                    seen.popitem(last=False)
            outcome.done = remember if webhook else None
            return outcome
        return await answer("gateway:shopify", request, handle)

    @app.post("/webhooks/woocommerce/{shop_id}")
    async def woocommerce_webhook(shop_id: str, request: Request) -> Response:
        async def handle(body: bytes, rid: str):
            if WOOCOMMERCE_PING.match(body) and "x-wc-webhook-signature" not in request.headers:
                return Outcome(200, {"ping": True})  # WooCommerce refuses to save a webhook whose ping fails
            authenticate(shop_id, "woocommerce_secret", verify_woocommerce, "x-wc-webhook-signature", body, request)
            topic = request.headers.get("x-wc-webhook-topic") or ""
            return mapped(woocommerce.events(topic, _json(body), shop_id, resolve), "gateway:woocommerce",
                          f"topic {topic!r}")
        return await answer("gateway:woocommerce", request, handle)

    @app.post("/webhooks/youzan/{shop_id}")
    async def youzan_webhook(shop_id: str, request: Request) -> Response:
        async def handle(body: bytes, rid: str):
            shop = shop_of(shop_id, "youzan_client_secret")
            push = _json(body)
            problem = verify_youzan(push, shop.youzan_client_id or "", shop.youzan_client_secret)
            if problem:
                raise Refused(401, problem)
            request.state.authenticated = True
            return mapped(youzan.events(push, shop_id, resolve), "gateway:youzan", f"type {push.get('type')!r}",
                          recorded_status=200, code=0, msg="success")
        return await answer("gateway:youzan", request, handle)

    @app.post("/webhooks/wechatpay/{shop_id}")
    async def wechatpay_webhook(shop_id: str, request: Request) -> Response:
        async def handle(body: bytes, rid: str):
            shop = shop_of(shop_id, "wechatpay_apiv3_key")
            if not shop.wechatpay_keys:
                raise Refused(404, f"shop {shop_id!r} has no wechatpay_platform_cert or wechatpay_public_key "
                                   f"(tuike.yaml: shops.{shop_id})")
            h = request.headers
            problem = verify_wechatpay(body, h.get("wechatpay-timestamp"), h.get("wechatpay-nonce"),
                                       h.get("wechatpay-signature"), h.get("wechatpay-serial"), shop.wechatpay_keys,
                                       clock())
            if problem:
                raise Refused(401, problem)
            request.state.authenticated = True
            notice = _json(body)
            plain = decrypt_wechatpay_resource(notice.get("resource") or {}, shop.wechatpay_apiv3_key)
            if isinstance(plain, str):
                raise Refused(400, plain)
            return mapped(wechatpay.events(str(notice.get("event_type")), _json(plain), shop_id, resolve),
                          "gateway:wechatpay", f"event_type {notice.get('event_type')!r}", recorded_status=200,
                          code="SUCCESS")
        return await answer("gateway:wechatpay", request, handle)

    @app.post("/events")
    async def events(request: Request) -> Response:
        """Canonical events (contract §1): one JSON object or JSON Lines; ``X-Tuike-Signature``
        with the events_secret of the shop named by ``X-Tuike-Shop`` (or of the only shop that
        has one). Valid events are handed on even when other lines are refused (422 names them);
        event ids make a resend of the whole body safe."""
        async def handle(body: bytes, rid: str):
            holders = [s for s, shop in settings.shops.items() if shop.events_secret]
            shop_id = request.headers.get("x-tuike-shop") or (holders[0] if len(holders) == 1 else "")
            authenticate(shop_id, "events_secret", verify_events, "x-tuike-signature", body, request)
            good, problems, dead = [], [], []
            try:  # one JSON object, however it is laid out; else JSON Lines
                lines = [body] if isinstance(orjson.loads(body), dict) else body.splitlines()
            except orjson.JSONDecodeError:
                lines = body.splitlines()
            for n, line in enumerate(lines, 1):
                rec = decode_record("gateway:events", f"{rid}:{n}", line)
                if rec is None:
                    continue
                admitted = admit(rec)
                if isinstance(admitted, Admitted):
                    refusal = ("type: order.settled is written by tuike settle, never sent by a shop"
                               if isinstance(admitted.event, OrderSettled) else foreign_id(rec.obj, shop_id))
                    if refusal:
                        admitted = DeadLetter.of(rec.source, rec.position, rec.raw, refusal, admitted.key)
                if isinstance(admitted, DeadLetter):
                    problems.append(f"line {n}: {admitted.reason}")
                    dead.append(admitted)
                else:
                    good.append(rec.obj)
            if not good and not problems:
                raise Refused(400, "no event in the body")
            if problems:
                return Outcome(422, {"accepted": len(good), "problems": problems[:50]}, good, dead=dead)
            return Outcome(200, {"accepted": len(good)}, good)
        return await answer("gateway:events", request, handle)

    @app.get("/r/{code}")
    async def click(code: str, request: Request) -> Response:
        link = verify(code, settings.link_secret) if settings.link_secret else None
        if link is None:
            return await refuse("gateway:links", uuid.uuid4().hex, request, 404,
                                "unknown or altered promotion link code", code[:512])
        limited = throttled(request)  # a click is anonymous: each is a record and a fraud signal
        if limited is not None:
            return limited
        visitor = request.cookies.get(VISITOR_COOKIE) or ""
        if not VISITOR.match(visitor):  # a cookie we did not set (or tampered with): a new visitor
            visitor = f"v{uuid.uuid4().hex[:20]}"
        click_id = f"c{uuid.uuid4().hex[:20]}"
        parent = request.query_params.get("from") or ""
        ip = request.client.host if request.client else None
        event = {"type": "click", "event_id": click_id, "ts": datetime.fromtimestamp(clock(), timezone.utc).isoformat(),
                 "click_id": click_id, "promoter_id": link.promoter_id, "visitor_id": visitor,
                 "device_id": fingerprint(dict(request.headers), ip)}
        if ip:
            event["ip"] = ip
        optional = {"user_agent": request.headers.get("user-agent"), "sku": link.sku, "campaign": link.campaign,
                    "parent_click_id": parent if CLICK_ID.match(parent) else None}
        event.update({k: v for k, v in optional.items() if v})
        await handoff.hand_on(Delivery("gateway:links", click_id, [event]))
        response = RedirectResponse(landing(settings.landing_url, reference(code, click_id)), status_code=302)
        if request.cookies.get(VISITOR_COOKIE) != visitor:
            response.set_cookie(VISITOR_COOKIE, visitor, max_age=365 * 86400, httponly=True, samesite="lax")
        return response

    @app.post("/links")
    async def create_link(request: Request) -> Response:
        """A promotion link for ``{"promoter_id", "sku"?, "campaign"?, "title"?}``, signed with
        ``X-Tuike-Signature`` (HMAC-SHA256 of the body with the links secret)."""
        async def handle(body: bytes, rid: str):
            if not settings.link_secret:
                raise Refused(404, "links.secret is not configured")
            problem = verify_events(body, request.headers.get("x-tuike-signature"), settings.link_secret)
            if problem:
                raise Refused(401, problem)
            request.state.authenticated = True
            spec = _json(body)
            fields = {k: spec.get(k) for k in ("promoter_id", "sku", "campaign")}
            if not all(v is None or isinstance(v, str) for v in fields.values()) or not fields["promoter_id"]:
                raise Refused(422, "expected string promoter_id, and optional strings sku and campaign")
            try:
                code = make_code(Link(**fields), settings.link_secret)
            except ValueError as exc:
                raise Refused(422, str(exc)) from None
            kit = share_kit(code, settings.base_url, str(spec.get("title") or ""))
            return Outcome(200, {"code": code, "url": kit["url"], "share_text": kit["text"],
                                 "qr_png": f"{settings.base_url.rstrip('/')}/links/{code}/qr.png",
                                 "qr_png_base64": base64.b64encode(kit["qr_png"]).decode()})
        return await answer("gateway:links", request, handle)

    @app.get("/links/{code}/qr.png")
    async def qr(code: str, request: Request) -> Response:
        limited = throttled(request)  # drawing a QR code costs milliseconds of CPU: anyone may ask
        if limited is not None:
            return limited
        if not settings.link_secret or verify(code, settings.link_secret) is None:
            return JSONResponse({"error": "unknown or altered promotion link code"}, status_code=404)
        return Response(share_kit(code, settings.base_url)["qr_png"], media_type="image/png")

    return app
