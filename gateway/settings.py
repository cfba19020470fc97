"""The gateway's part of ``tuike.yaml``: per-shop secrets (contract §6), promotion links, limits.

```yaml
shops:
  demo-shop:
    shopify_secret: env:SHOPIFY_SECRET      # any value may be env:NAME (read from the environment)
    woocommerce_secret: …
    youzan_client_id: …
    youzan_client_secret: …
    wechatpay_apiv3_key: …
    wechatpay_platform_cert: |               # PEM
      -----BEGIN CERTIFICATE-----
    events_secret: …                        # POST /events
    dashboard_token: env:TUIKE_DASHBOARD_TOKEN  # GET /dashboard?token=… (the shop's dashboard)
links:
  secret: env:TUIKE_LINK_SECRET              # signs promotion codes (required for /r/{code} and tuike link)
  base_url: https://t.example.com            # where GET /r/{code} is served
  landing_url: https://shop.example.com/     # where a click is sent, with ?tk=<code>~<click id>
gateway:
  max_body_bytes: 1048576                    # a larger body is refused with 413
```

Secrets are kept here and never logged or printed (``repr`` hides them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from engine.config import ConfigError, Problem

SHOP_KEYS = ("shopify_secret", "woocommerce_secret", "youzan_client_id", "youzan_client_secret",
             "wechatpay_apiv3_key", "wechatpay_platform_cert", "events_secret", "dashboard_token")
LINK_KEYS = ("secret", "base_url", "landing_url")
GATEWAY_KEYS = ("max_body_bytes",)


@dataclass(frozen=True)
class Shop:
    shopify_secret: str | None = field(default=None, repr=False)
    woocommerce_secret: str | None = field(default=None, repr=False)
    youzan_client_id: str | None = None
    youzan_client_secret: str | None = field(default=None, repr=False)
    wechatpay_apiv3_key: str | None = field(default=None, repr=False)
    wechatpay_platform_cert: str | None = field(default=None, repr=False)
    events_secret: str | None = field(default=None, repr=False)
    dashboard_token: str | None = field(default=None, repr=False)  # GET /dashboard?token=…


@dataclass(frozen=True)
class GatewaySettings:
    shops: dict[str, Shop] = field(default_factory=dict)
    link_secret: str | None = field(default=None, repr=False)
    base_url: str = "http://127.0.0.1:8000"
    landing_url: str = "http://127.0.0.1:8000/"
    max_body_bytes: int = 1024 * 1024


def _value(value: object, path: str, problems: list[Problem], resolve_env: bool = True) -> str | None:
    if isinstance(value, str) and value.startswith("env:") and resolve_env:
        name = value[4:]
        found = os.environ.get(name)
        if not found:
            problems.append(Problem(path, f"env:{name}: the environment variable {name} is not set"))
        return found
    if not isinstance(value, str) or not value:
        problems.append(Problem(path, "expected a non-empty string (or env:NAME)"))
        return None
    return value


def _section(raw: dict, name: str, keys: tuple[str, ...], problems: list[Problem]) -> dict:
    section = raw.get(name) or {}
    if not isinstance(section, dict):
        problems.append(Problem(name, "expected a mapping"))
        return {}
    for key in section:
        if key not in keys:
            problems.append(Problem(f"{name}.{key}", f"unknown key; known keys: {', '.join(keys)}"))
    return section


def gateway_settings(raw: dict | None, *, resolve_env: bool = True) -> GatewaySettings:
    """The ``shops``, ``links`` and ``gateway`` sections, validated; :class:`ConfigError` names every
    problem. ``resolve_env=False`` checks the shape only (``tuike config check`` on a machine
    without the secrets): ``env:NAME`` values stay as written."""
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
            else:
                kw[key] = _value(value, f"shops.{shop_id}.{key}", problems, resolve_env)
        shops[str(shop_id)] = Shop(**kw)
    links = _section(raw, "links", LINK_KEYS, problems)
    kw = {"shops": shops}
    if "secret" in links:
        kw["link_secret"] = _value(links["secret"], "links.secret", problems, resolve_env)
    for key in ("base_url", "landing_url"):
        if key in links:
            value = _value(links[key], f"links.{key}", problems, resolve_env)
            if value is not None and not value.startswith(("http://", "https://")):
                problems.append(Problem(f"links.{key}", f"expected an http(s) URL, got {value!r}"))
            elif value is not None:
                kw[key] = value
    gateway = _section(raw, "gateway", GATEWAY_KEYS, problems)
    if "max_body_bytes" in gateway:
        size = gateway["max_body_bytes"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1024:
            problems.append(Problem("gateway.max_body_bytes", f"expected a whole number of bytes ≥ 1024, got {size!r}"))
        else:
            kw["max_body_bytes"] = size
    if problems:
        raise ConfigError(problems)
    return GatewaySettings(**kw)
