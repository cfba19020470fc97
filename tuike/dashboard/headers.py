"""Security headers on every dashboard and promoter-page response (``/dashboard…``, ``/p/…``).

A plain ASGI middleware, so the gateway's own routes (webhooks, ``/events``, links) pay one path
check and nothing else. The pages load only their own files (plotly.js is served from the
``plotly`` package, never a CDN) and have no inline script, so the policy is ``'self'`` only;
violations are reported to :data:`REPORT_PATH`, which logs them. HSTS is sent over TLS only (a
plain-http answer cannot set it, and browsers ignore it there).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

REPORT_PATH = "/dashboard/csp-report"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; "
       f"report-uri {REPORT_PATH}")
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # a ?token= or a signed promoter link never leaves in a Referer
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
NO_STORE = (b"cache-control", b"no-store")  # figures and exports are not kept in shared caches
PREFIXES = ("/dashboard", "/p/")

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        extra = list(HEADERS) + ([HSTS] if scope.get("scheme") == "https" else [])

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                headers = [h for h in extra if h[0] not in names]
                if b"cache-control" not in names:
                    headers.append(NO_STORE)
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, with_headers)
