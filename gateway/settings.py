"""The gateway's part of ``tuike.yaml``: per-shop secrets (contract §6), promotion links, limits.

```yaml
shops:
  demo-shop:
    shopify_secret: env:SHOPIFY_SECRET      # any secret may be env:NAME or file:PATH (schemas/secrets.py)
    woocommerce_secret: …
    youzan_client_id: …
    youzan_client_secret: …
    wechatpay_apiv3_key: …
    wechatpay_platform_cert: |               # one or more PEM certificates (rotation), chosen by Wechatpay-Serial
      -----BEGIN CERTIFICATE-----
    wechatpay_public_key: file:/etc/tuike/pub_key.pem   # 微信支付公钥 mode: the key …
    wechatpay_public_key_id: PUB_KEY_ID_0112…           # … and its id (gateway/wechatpay_keys.py)
    events_secret: …                        # POST /events
    dashboard_token: env:TUIKE_DASHBOARD_TOKEN  # GET /dashboard?token=… (the shop's dashboard)
links:
  secret: env:TUIKE_LINK_SECRET              # signs promotion codes (required for /r/{code} and tuike link)
  base_url: https://t.example.com            # where GET /r/{code} is served
  landing_url: https://shop.example.com/     # where a click is sent, with ?tk=<code>~<click id>
gateway:
  max_body_bytes: 1048576                    # a larger body is refused with 413
  trusted_proxies: [10.0.0.0/8, 127.0.0.1]   # whose X-Forwarded-For / X-Real-IP is believed (gateway/client_ip.py)
  rate_limit: {per_second: 10, burst: 100, clients: 100000}  # unauthenticated requests per client IP; false: off
  refusal_samples: {per_reason: 20, seconds: 60}  # anonymous refusals kept in dead_letters per kind and interval
```

Secrets are kept here and never logged or printed (``repr`` hides them).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping

from engine.config import ConfigError, Problem

from gateway.client_ip import Network
from schemas.secrets import SecretError, is_reference, resolve_secret
from gateway.wechatpay_keys import WechatKeyError, platform_keys

SHOP_KEYS = ("shopify_secret", "woocommerce_secret", "youzan_client_id", "youzan_client_secret",
             "wechatpay_apiv3_key", "wechatpay_platform_cert", "wechatpay_public_key", "wechatpay_public_key_id",
             "events_secret", "dashboard_token", "dashboard_tokens")
SHOP_SECRETS = ("shopify_secret", "woocommerce_secret", "youzan_client_secret", "wechatpay_apiv3_key",
                "events_secret", "dashboard_token")  # the rest (ids, certificates, public keys) are public
LINK_KEYS = ("secret", "base_url", "landing_url")
GATEWAY_KEYS = ("max_body_bytes", "trusted_proxies", "rate_limit", "refusal_samples")
RATE_LIMIT_KEYS = ("per_second", "burst", "clients")
SAMPLE_KEYS = ("per_reason", "seconds")


@dataclass(frozen=True)
class Shop:
    shopify_secret: str | None = field(default=None, repr=False)
    woocommerce_secret: str | None = field(default=None, repr=False)
    youzan_client_id: str | None = None
    youzan_client_secret: str | None = field(default=None, repr=False)
    wechatpay_apiv3_key: str | None = field(default=None, repr=False)
    wechatpay_platform_cert: str | None = field(default=None, repr=False)
    wechatpay_public_key: str | None = field(default=None, repr=False)
    wechatpay_public_key_id: str | None = None
    events_secret: str | None = field(default=None, repr=False)
    dashboard_token: str | None = field(default=None, repr=False)  # GET /dashboard?token=…
    dashboard_tokens: tuple[str | None, ...] | None = field(default=None, repr=False)  # rotation: signing one first
    # derived: the WeChat Pay verification keys by serial (certificate serial or PUB_KEY_ID_…)
    wechatpay_keys: Mapping[str, object] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class RateLimit:
    """A token bucket per client IP for unauthenticated requests (gateway/ratelimit.py)."""
    per_second: float = 10.0  # tokens added per second
    burst: int = 100  # bucket size: requests a quiet client may make at once
    clients: int = 100_000  # buckets remembered (least recently used forgotten): bounded memory


@dataclass(frozen=True)
class RefusalSamples:
    """Anonymous refusals kept in dead_letters: the first ``per_reason`` of each kind per ``seconds``."""
    per_reason: int = 20
    seconds: float = 60.0


@dataclass(frozen=True)
class GatewaySettings:
    shops: dict[str, Shop] = field(default_factory=dict)
    link_secret: str | None = field(default=None, repr=False)
    base_url: str = "http://127.0.0.1:8000"
    landing_url: str = "http://127.0.0.1:8000/"
    max_body_bytes: int = 1024 * 1024
    trusted_proxies: tuple[Network, ...] = ()
    rate_limit: RateLimit | None = RateLimit()  # None: off
    refusal_samples: RefusalSamples = RefusalSamples()


def _value(value: object, path: str, problems: list[Problem], resolve: bool = True) -> str | None:
    if not isinstance(value, str) or not value:
        problems.append(Problem(path, "expected a non-empty string (or env:NAME, file:PATH)"))
        return None
    if not resolve:
        return value
    try:
        return resolve_secret(value)
    except SecretError as exc:
        problems.append(Problem(path, str(exc)))
        return None


def _section(raw: dict, name: str, keys: tuple[str, ...], problems: list[Problem], within: str = "") -> dict:
    section, path = raw.get(name) or {}, f"{within}{name}"
    if not isinstance(section, dict):
        problems.append(Problem(path, "expected a mapping"))
        return {}
    for key in section:
        if key not in keys:
            problems.append(Problem(f"{path}.{key}", f"unknown key; known keys: {', '.join(keys)}"))
    return section


def _number(section: dict, name: str, key: str, problems: list[Problem], *, whole: bool) -> float | int | None:
    value = section.get(key)
    if value is None:
        return None
    kinds = (int,) if whole else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or value <= 0:
        problems.append(Problem(f"{name}.{key}", f"expected a {'whole ' if whole else ''}number above 0, got {value!r}"))
        return None
    return value


def _wechatpay_keys(shop_id: str, kw: dict, resolved: bool, problems: list[Problem]) -> None:
    """Load the shop's WeChat Pay keys now, so a bad PEM is a configuration problem, not a 5xx.
    Skipped when a value is not at hand: still ``env:``/``file:`` (a shape-only check) or refused."""
    names = ("wechatpay_platform_cert", "wechatpay_public_key", "wechatpay_public_key_id")
    if any(n in kw and (kw[n] is None or (not resolved and is_reference(kw[n]))) for n in names):
        return
    try:
        kw["wechatpay_keys"] = platform_keys(*(kw.get(n) for n in names))
    except WechatKeyError as exc:
        problems.append(Problem(f"shops.{shop_id}.{exc.field}", str(exc)))


def _trusted_proxies(value: object, problems: list[Problem]) -> tuple[Network, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem("gateway.trusted_proxies", "expected a list of addresses or networks, "
                                "such as [10.0.0.0/8, 127.0.0.1, \"::1\"]"))
        return ()
    networks = []
    for i, text in enumerate(value):
        try:
            networks.append(ipaddress.ip_network(text.strip()))
        except ValueError as exc:
            problems.append(Problem(f"gateway.trusted_proxies[{i}]", f"expected an IP address or network: {exc}"))
    return tuple(networks)


def _gateway(raw: dict, kw: dict, problems: list[Problem]) -> None:
    gateway = _section(raw, "gateway", GATEWAY_KEYS, problems)
    if "max_body_bytes" in gateway:
        size = gateway["max_body_bytes"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1024:
            problems.append(Problem("gateway.max_body_bytes", f"expected a whole number of bytes ≥ 1024, got {size!r}"))
        else:
            kw["max_body_bytes"] = size
    if "trusted_proxies" in gateway:
        kw["trusted_proxies"] = _trusted_proxies(gateway["trusted_proxies"], problems)
    if gateway.get("rate_limit") is False:
        kw["rate_limit"] = None
    elif "rate_limit" in gateway:
        limit = _section(gateway, "rate_limit", RATE_LIMIT_KEYS, problems, "gateway.")
        found = {k: _number(limit, "gateway.rate_limit", k, problems, whole=k != "per_second") for k in RATE_LIMIT_KEYS}
        kw["rate_limit"] = RateLimit(**{k: v for k, v in found.items() if v is not None})
    if "refusal_samples" in gateway:
        samples = _section(gateway, "refusal_samples", SAMPLE_KEYS, problems, "gateway.")
        found = {k: _number(samples, "gateway.refusal_samples", k, problems, whole=k == "per_reason")
                 for k in SAMPLE_KEYS}
        kw["refusal_samples"] = RefusalSamples(**{k: v for k, v in found.items() if v is not None})


def gateway_settings(raw: dict | None, *, resolve_secrets: bool = True) -> GatewaySettings:
    """The ``shops``, ``links`` and ``gateway`` sections, validated; :class:`ConfigError` names every
    problem. ``resolve_secrets=False`` checks the shape only (``tuike config check`` on a machine
    without the secrets): ``env:NAME`` and ``file:PATH`` values stay as written."""
    raw = raw or {}
    problems: list[Problem] = []
    shops: dict[str, Shop] = {}
    section = raw.get("shops") or {}
    if not isinstance(section, dict):
        problems.append(Problem("shops", "expected a mapping of shop id to its secrets"))
        section = {}
    for shop_id, entries in section.items():
        if not isinstance(entries, dict):
            problems.append(Problem(f"shops.{shop_id}", "expected a mapping such as {shopify_secret: env:SHOPIFY_SECRET}"))
            continue
        kw = {}
        for key, value in entries.items():
            if key not in SHOP_KEYS:
                problems.append(Problem(f"shops.{shop_id}.{key}", f"unknown key; known keys: {', '.join(SHOP_KEYS)}"))
            elif key == "dashboard_tokens":  # the dashboard's secrets in rotation, the signing one first
                path = f"shops.{shop_id}.{key}"
                if not isinstance(value, list) or not value:
                    problems.append(Problem(path, "expected a list of secrets, the one that signs first"))
                else:
                    kw[key] = tuple(_value(v, f"{path}[{i}]", problems, resolve_secrets) for i, v in enumerate(value))
            else:
                kw[key] = _value(value, f"shops.{shop_id}.{key}", problems, resolve_secrets)
        _wechatpay_keys(str(shop_id), kw, resolve_secrets, problems)
        shops[str(shop_id)] = Shop(**kw)
    links = _section(raw, "links", LINK_KEYS, problems)
    kw = {"shops": shops}
    if "secret" in links:
        kw["link_secret"] = _value(links["secret"], "links.secret", problems, resolve_secrets)
    for key in ("base_url", "landing_url"):
        if key in links:
            value = _value(links[key], f"links.{key}", problems, resolve_secrets)
            if value is not None and not value.startswith(("http://", "https://")):
                problems.append(Problem(f"links.{key}", f"expected an http(s) URL, got {value!r}"))
            elif value is not None:
                kw[key] = value
    _gateway(raw, kw, problems)
    if problems:
        raise ConfigError(problems)
    return GatewaySettings(**kw)


def secret_values(raw: dict | None) -> list[tuple[str, object]]:
    """(dotted path, value as written) of every secret in the configuration: what ``tuike config
    check`` looks at to warn about files others can read."""
    raw = raw or {}
    found: list[tuple[str, object]] = []
    shops = raw.get("shops")
    for shop_id, entries in (shops.items() if isinstance(shops, dict) else ()):
        for key in SHOP_SECRETS:
            if isinstance(entries, dict) and key in entries:
                found.append((f"shops.{shop_id}.{key}", entries[key]))
    links = raw.get("links")
    if isinstance(links, dict) and "secret" in links:
        found.append(("links.secret", links["secret"]))
    return found
