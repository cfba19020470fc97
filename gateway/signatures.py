"""Who sent a webhook: the signature schemes of the platforms tuike accepts (contract §6).

Pure functions over the raw request bytes (a signature covers the body exactly as sent: never
re-serialize JSON before checking). Comparisons are constant-time. Each verifier returns None
when the request is authentic, else a short reason that names the header and never the secret.

| platform | header / field | scheme |
|---|---|---|
| Shopify | ``X-Shopify-Hmac-Sha256`` | base64(HMAC-SHA256(secret, body)) |
| WooCommerce | ``X-WC-Webhook-Signature`` | the same, with the secret HTML-entity-decoded first (``wp_specialchars_decode(..., ENT_QUOTES)``) |
| tuike ``POST /events`` | ``X-Tuike-Signature`` | the same as Shopify |
| 有赞 | body field ``sign`` | md5(client_id + msg + client_secret), lowercase hex; ``msg`` as received (URL-encoded) |
| WeChat Pay APIv3 | ``Wechatpay-Signature`` | RSA-SHA256 (PKCS#1 v1.5) over ``timestamp\\nnonce\\nbody\\n`` with the platform certificate or WeChat Pay public key ``Wechatpay-Serial`` names; the resource is AEAD_AES_256_GCM under the APIv3 key |
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.wechatpay_keys import key_for

WECHATPAY_MAX_SKEW = 300  # seconds between Wechatpay-Timestamp and now (WeChat Pay's own advice: 5 minutes)


def hmac_sha256_b64(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def _check_b64_hmac(header: str, given: str | None, secret: str, body: bytes) -> str | None:
    if not given:
        return f"missing {header}"
    if not hmac.compare_digest(given.strip().encode(), hmac_sha256_b64(secret, body).encode()):
        return f"{header} does not match the body"
    return None


def verify_shopify(body: bytes, signature: str | None, secret: str) -> str | None:
    return _check_b64_hmac("X-Shopify-Hmac-Sha256", signature, secret, body)


def verify_events(body: bytes, signature: str | None, secret: str) -> str | None:
    return _check_b64_hmac("X-Tuike-Signature", signature, secret, body)


_WP_ENTITY = re.compile(r"&(?:#(?P<dec>[0-9]+)|#[xX](?P<hex>[0-9a-fA-F]+)|(?P<name>quot|lt|gt|amp));")
_WP_CODES = {34, 38, 39, 60, 62}  # " & ' < >
_WP_NAMES = {"quot": '"', "lt": "<", "gt": ">", "amp": "&"}


def wp_specialchars_decode(text: str) -> str:
    """WordPress's ``wp_specialchars_decode($text, ENT_QUOTES)``: only the five special characters,
    named or numeric (``&#039;``, ``&#x27;``), nothing else — unlike ``html.unescape``, which
    would turn ``&copy;`` into © and sign with another key than WooCommerce does."""
    def one(m: re.Match) -> str:
        if m["name"]:
            return _WP_NAMES[m["name"]]
        code = int(m["dec"]) if m["dec"] else int(m["hex"], 16)
        return chr(code) if code in _WP_CODES else m.group(0)

    return _WP_ENTITY.sub(one, text)


def verify_woocommerce(body: bytes, signature: str | None, secret: str) -> str | None:
    return _check_b64_hmac("X-WC-Webhook-Signature", signature, wp_specialchars_decode(secret), body)


def youzan_sign(client_id: str, msg: str, client_secret: str) -> str:
    return hashlib.md5(f"{client_id}{msg}{client_secret}".encode()).hexdigest()


def verify_youzan(push: dict, client_id: str, client_secret: str) -> str | None:
    """A 有赞 push: its ``client_id`` must be the shop's, its ``sign`` md5(client_id + msg + secret)."""
    sign, msg = push.get("sign"), push.get("msg")
    if not isinstance(sign, str) or not isinstance(msg, str):
        return "youzan push without sign or msg"
    if push.get("client_id") != client_id:
        return "youzan push for another client_id"
    if not hmac.compare_digest(sign.lower().encode(), youzan_sign(client_id, msg, client_secret).encode()):
        return "youzan sign does not match client_id + msg"
    return None


def verify_wechatpay(body: bytes, timestamp: str | None, nonce: str | None, signature: str | None,
                     serial: str | None, keys: Mapping[str, rsa.RSAPublicKey], now: float) -> str | None:
    """The platform's RSA-SHA256 signature over ``timestamp\\nnonce\\nbody\\n`` with the key
    ``Wechatpay-Serial`` names (gateway/wechatpay_keys.py), checked by the wechatpayv3 SDK's
    ``rsa_verify``, and a timestamp within ``WECHATPAY_MAX_SKEW`` of ``now`` (a replayed old
    notification is refused)."""
    from wechatpayv3.utils import rsa_verify  # here: the SDK pulls in requests (~0.3 s)

    if not (timestamp and nonce and signature):
        return "missing Wechatpay-Timestamp, Wechatpay-Nonce or Wechatpay-Signature"
    if not timestamp.isdigit() or len(timestamp) > 12:
        return "Wechatpay-Timestamp is not a number of seconds"
    sent = int(timestamp)
    if abs(now - sent) > WECHATPAY_MAX_SKEW:
        return f"Wechatpay-Timestamp is {abs(now - sent):.0f} s away from now (at most {WECHATPAY_MAX_SKEW} s)"
    try:
        base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return "Wechatpay-Signature is not base64"
    key = key_for(keys, serial)
    if isinstance(key, str):
        return key
    try:
        text = body.decode("utf-8")  # the SDK signs text; WeChat Pay sends UTF-8 JSON
    except UnicodeDecodeError:
        return "Wechatpay-Signature does not match the body (the body is not UTF-8)"
    if not rsa_verify(timestamp, nonce, text, signature, key):
        return "Wechatpay-Signature does not match the body"
    return None


def decrypt_wechatpay_resource(resource: dict, apiv3_key: str) -> bytes | str:
    """The plaintext of an AEAD_AES_256_GCM resource, or a reason it cannot be read."""
    try:
        ciphertext = base64.b64decode(resource["ciphertext"], validate=True)
        nonce = resource["nonce"].encode()
        associated = (resource.get("associated_data") or "").encode()
    except (KeyError, AttributeError, TypeError, binascii.Error, ValueError):
        return "resource needs base64 ciphertext, nonce and associated_data"
    try:
        return AESGCM(apiv3_key.encode()).decrypt(nonce, ciphertext, associated)
    except (InvalidTag, ValueError):
        return "resource does not decrypt with the APIv3 key (wrong key, or the resource was altered)"
