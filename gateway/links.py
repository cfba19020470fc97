"""Promotion links (推广链接): short codes that say who shares what, signed so that nobody can
forge or alter one, and checked without a database.

A code is ``<fields>.<tag>``: ``fields`` = base64url of ``v1|promoter|sku|campaign`` (UTF-8,
empty parts allowed), ``tag`` = base64url of the first 9 bytes (72 bits) of
HMAC-SHA256(links secret, ``tuike-link`` + fields). A changed character changes the fields or
breaks the tag; :func:`verify` answers None for both, and ``GET /r/{code}`` then 404s.

The redirect appends ``tk=<code>~<click id>`` to the landing page: the shop keeps it with the
order (Shopify ``landing_site``, a WooCommerce meta field, WeChat Pay ``attach``), and the
gateway's resolver reads the promoter from the code and the click from after the ``~``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import segno

from gateway.canonical import Attribution

VERSION = "v1"
TAG_BYTES = 9
CLICK_ID = re.compile(r"^c[0-9a-f]{20}$")  # what GET /r/{code} issues; anything else after "~" is ignored


@dataclass(frozen=True)
class Link:
    promoter_id: str
    sku: str | None = None
    campaign: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(secret: str, fields: str) -> str:
    return _b64(hmac.new(secret.encode(), b"tuike-link" + fields.encode(), hashlib.sha256).digest()[:TAG_BYTES])


def make_code(link: Link, secret: str) -> str:
    for name, value in (("promoter", link.promoter_id), ("sku", link.sku), ("campaign", link.campaign)):
        if value is not None and ("|" in value or "~" in value):
            raise ValueError(f"{name} {value!r}: '|' and '~' cannot be part of a link")
    if not link.promoter_id:
        raise ValueError("a link needs a promoter")
    fields = _b64("|".join([VERSION, link.promoter_id, link.sku or "", link.campaign or ""]).encode())
    return f"{fields}.{_tag(secret, fields)}"


def verify(code: str, secret: str) -> Link | None:
    """The link a code stands for, or None when it was not made with ``secret`` or was altered."""
    fields, dot, tag = code.partition(".")
    if not dot or not fields or not tag or len(code) > 512:
        return None
    if not hmac.compare_digest(tag.encode(), _tag(secret, fields).encode()):
        return None
    try:
        parts = _unb64(fields).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        return None
    if len(parts) != 4 or parts[0] != VERSION or not parts[1]:
        return None
    return Link(parts[1], parts[2] or None, parts[3] or None)


def reference(code: str, click_id: str) -> str:
    """What the redirect hands the shop: the code and the click it came through."""
    return f"{code}~{click_id}"


def resolver(secret: str):
    """A :data:`~gateway.canonical.Resolver` for references made by :func:`reference` (or a bare code)."""
    def resolve(ref: str) -> Attribution | None:
        code, _, click = ref.partition("~")
        link = verify(code, secret)
        return Attribution(link.promoter_id, click if CLICK_ID.match(click) else None) if link else None
    return resolve


def landing(url: str, ref: str, param: str = "tk") -> str:
    """``url`` with ``param=ref`` added to its query."""
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode({param: ref})
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


def share_kit(code: str, base_url: str, title: str = "") -> dict:
    """社交平台一键分享: the short URL, a QR code PNG of it, and a text to paste with it."""
    url = f"{base_url.rstrip('/')}/r/{code}"
    png = io.BytesIO()
    segno.make(url, error="m").save(png, kind="png", scale=8, border=2)
    text = f"{title} {url}".strip() if title else f"我在用这个，推荐给你：{url}"
    return {"url": url, "qr_png": png.getvalue(), "text": text}
