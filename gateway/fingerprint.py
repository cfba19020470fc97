"""Device fingerprint: a stable hash of what a browser sends with every request.

``fp-`` + the first 20 hex digits of SHA-256 over these features, each normalized (lower case,
surrounding space removed) and written ``name=value`` on its own line, in this order:

| feature | from |
|---|---|
| ``ua`` | ``User-Agent`` |
| ``accept`` | ``Accept`` |
| ``lang`` | ``Accept-Language`` |
| ``enc`` | ``Accept-Encoding`` |
| ``ch-ua``, ``ch-platform``, ``ch-mobile`` | the client hints ``Sec-CH-UA``, ``Sec-CH-UA-Platform``, ``Sec-CH-UA-Mobile`` |
| ``net`` | the IP prefix: /24 of an IPv4 address, /48 of an IPv6 one |

Stable: the same browser on the same network gives the same id on every click, whatever the
port or the order of headers; a new network (another /24) gives another id, as a new device
would. It identifies a device for fraud signals (device farms, self-purchase), not a person,
and keeps no raw header value.
"""
from __future__ import annotations

import hashlib
import ipaddress
from typing import Mapping

FEATURES = (("ua", "user-agent"), ("accept", "accept"), ("lang", "accept-language"), ("enc", "accept-encoding"),
            ("ch-ua", "sec-ch-ua"), ("ch-platform", "sec-ch-ua-platform"), ("ch-mobile", "sec-ch-ua-mobile"))


def ip_prefix(ip: str | None) -> str:
    """The network an address belongs to: ``203.0.113.0/24``, ``2001:db8:1::/48``; '' when unknown."""
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return ""
    if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:a.b.c.d on a dual-stack socket
        address = address.ipv4_mapped
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def fingerprint(headers: Mapping[str, str], ip: str | None) -> str:
    """``headers``: any mapping whose keys are header names (case-insensitive lookups are done here)."""
    lower = {k.lower(): v for k, v in headers.items()}
    lines = [f"{name}={(lower.get(header) or '').strip().lower()}" for name, header in FEATURES]
    lines.append(f"net={ip_prefix(ip)}")
    return "fp-" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:20]
