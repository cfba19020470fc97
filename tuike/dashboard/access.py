"""Who is looking at the dashboard: shop secrets, signed expiring links and session cookies.

A shop's dashboard secrets are ``shops.<id>.dashboard_token`` (the contract's form) and
``shops.<id>.dashboard_tokens`` (a list, for rotation: the first signs new links and sessions,
the others are still accepted until removed). Three things prove a shop:

- the secret itself (``/dashboard?token=<secret>``, as before; or ``Authorization: Bearer``);
- a signed link, ``l1.<shop>.<exp>.<kid>.<sig>``: HMAC-SHA256 with one of the shop's secrets over
  the shop and the expiry, so a link can be handed out without handing out the secret, and dies
  at ``exp``;
- a session, ``s1.<shop>.<exp>.<kid>.<via>.<sig>``: what ``/dashboard?token=…`` exchanges either of
  the above for (an HttpOnly cookie, so the token leaves the address bar), valid
  :data:`SESSION_SECONDS` at most and never past the link's expiry.

``kid`` is a short keyed id of the secret that signed (never the secret): it tells a link or
session signed by a rotated-out secret from a forged one, and is the token id in the audit log.
Removing a secret from the configuration ends every link and session it signed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Mapping


SESSION_SECONDS = 12 * 3600
KID_CHARS = 8
SIG_BYTES = 16
LINK, SESSION = "l1", "s1"


class Refused(Exception):
    """A token that proves no shop; the message says what to do (401)."""


@dataclass(frozen=True)
class Claims:
    """A proven shop: which secret proved it (``kid``), how (``via``: secret or link), until when."""

    shop: str
    exp: int
    kid: str
    via: str

    @property
    def token_id(self) -> str:
        return f"{self.via}:{self.kid}"


def key_id(secret: str) -> str:
    mac = hmac.new(secret.encode(), b"tuike-dashboard-kid", hashlib.sha256).digest()
    return _b64(mac)[:KID_CHARS]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def _sign(secret: str, *parts: str) -> str:
    return _b64(hmac.new(secret.encode(), "|".join(parts).encode(), hashlib.sha256).digest()[:SIG_BYTES])


def mint_link(shop: str, secret: str, exp: int) -> str:
    """A dashboard link token for ``shop`` that works until ``exp`` (epoch seconds)."""
    kid = key_id(secret)
    return ".".join((LINK, _b64(shop.encode()), str(exp), kid, _sign(secret, LINK, shop, str(exp), kid)))


def dashboard_url(base_url: str, shop: str, secret: str, exp: int) -> str:
    return f"{base_url.rstrip('/')}/dashboard?token={mint_link(shop, secret, exp)}"


def mint_session(claims: Claims, secret: str) -> str:
    parts = (SESSION, claims.shop, str(claims.exp), claims.kid, claims.via)
    return ".".join((SESSION, _b64(claims.shop.encode()), str(claims.exp), claims.kid, claims.via,
                     _sign(secret, *parts)))


def shop_secrets(shops: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each shop's dashboard secrets, the one that signs first: ``dashboard_tokens`` (rotation),
    then ``dashboard_token``."""
    out: dict[str, list[str]] = {}
    for shop_id, shop in shops.items():
        secrets = [s for s in [*(shop.dashboard_tokens or ()), shop.dashboard_token] if s]
        if secrets:
            out[shop_id] = list(dict.fromkeys(secrets))
    return out


class Keyring:
    """Proves shops from tokens, against the secrets configured now."""

    def __init__(self, secrets: dict[str, list[str]]):
        self.secrets = secrets
        self.by_kid = {(shop, key_id(s)): s for shop, ss in secrets.items() for s in ss}

    def prove(self, token: str, now: float) -> Claims:
        """The shop a token (secret, link or session) proves; :class:`Refused` says why not."""
        if not self.secrets:
            raise Refused("no shop has a dashboard secret (tuike.yaml: shops.<id>.dashboard_token)")
        if token.startswith((LINK + ".", SESSION + ".")):
            return self._signed(token, now)
        for shop, secrets in self.secrets.items():
            for secret in secrets:
                if hmac.compare_digest(token.encode(), secret.encode()):
                    return Claims(shop, int(now) + SESSION_SECONDS, key_id(secret), "secret")
        raise Refused("wrong dashboard token (or a secret that was rotated out): ask the shop's administrator "
                      "for a current dashboard link")

    def _signed(self, token: str, now: float) -> Claims:
        parts = token.split(".")
        kind = parts[0]
        want = 5 if kind == LINK else 6
        if len(parts) != want or not parts[2].isdigit() or len(parts[2]) > 12:
            raise Refused("this dashboard token is malformed: open the dashboard link again")
        try:
            shop = _unb64(parts[1])
        except (ValueError, UnicodeDecodeError):
            raise Refused("this dashboard token is malformed: open the dashboard link again") from None
        exp, kid = int(parts[2]), parts[3]
        via = "link" if kind == LINK else parts[4]
        secret = self.by_kid.get((shop, kid))
        if secret is None:
            raise Refused(f"this dashboard {'link' if kind == LINK else 'session'} was signed by a secret that is no "
                          "longer configured (rotated out): ask the shop's administrator for a new dashboard link")
        signed = (kind, shop, parts[2], kid) + (() if kind == LINK else (via,))
        if via not in ("secret", "link") or not hmac.compare_digest(_sign(secret, *signed), parts[-1]):
            raise Refused("this dashboard token was altered or not signed by this shop: open the dashboard link again")
        if exp <= now:
            raise Refused(f"this dashboard {'link' if kind == LINK else 'session'} has expired: "
                          + ("ask the shop's administrator for a new one" if kind == LINK
                             else "open the dashboard link again"))
        return Claims(shop, exp, kid, via)

    def session_for(self, claims: Claims, now: float) -> tuple[str, int]:
        """A session cookie value for proven ``claims`` and its max-age (never past the link's expiry)."""
        exp = min(claims.exp, int(now) + SESSION_SECONDS)
        session = Claims(claims.shop, exp, claims.kid, claims.via)
        return mint_session(session, self.by_kid[(claims.shop, claims.kid)]), max(1, exp - int(now))
