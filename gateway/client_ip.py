"""Who the client is behind trusted proxies: ``X-Forwarded-For`` / ``X-Real-IP``, believed only
from the proxies ``gateway.trusted_proxies`` names.

Behind a load balancer every connection comes from the balancer; the address of the browser is
in the header the balancer adds. Anyone can send that header too, so it is read only when the
connection comes from a trusted proxy, and then from the right: each proxy appends the address it
saw, so the right-most address that is *not* a trusted proxy is the first one a trusted proxy
vouches for — the client. Addresses further left were written by the client itself (spoofable).
Without ``X-Forwarded-For`` a trusted proxy's ``X-Real-IP`` is the client. A malformed hop ends
the walk at the last trusted address. Clicks record this address (the fraud IP signals read it),
and the per-IP rate limit keys on it.

:class:`ClientAddressMiddleware` puts it in the ASGI scope's ``client``, so ``request.client.host``
is the real client for every route (the dashboards too).
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> IP | None:
    """An address as proxies write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``,
    ``[2001:db8::1]:443``; IPv4-mapped IPv6 (``::ffff:1.2.3.4``, a dual-stack socket) as IPv4."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


class TrustedProxies:
    def __init__(self, networks: Iterable[Network]):
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, ip: IP) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)

    def client(self, peer: str | None, forwarded_for: list[str], real_ip: str | None) -> str | None:
        """The client's address given the connection's peer and the headers' values."""
        peer_ip = parse_ip(peer) if peer else None
        if peer_ip is None:
            return peer  # not an IP (a unix socket, a test client): nothing to believe
        if peer_ip not in self:
            return str(peer_ip)
        hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
        if not hops and real_ip:
            hops = [real_ip]
        current = peer_ip
        for hop in reversed(hops):
            ip = parse_ip(hop)
            if ip is None:
                break
            current = ip
            if ip not in self:
                break
        return str(current)


class ClientAddressMiddleware:
    """ASGI middleware: the scope's ``client`` becomes the address :meth:`TrustedProxies.client`
    finds (the port is the proxy's, so it is set to 0, as uvicorn's proxy middleware does)."""

    def __init__(self, app, trusted: TrustedProxies):
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            forwarded, real = [], None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded.append(value.decode("latin-1"))
                elif name == b"x-real-ip":
                    real = value.decode("latin-1")
            peer = scope["client"][0]
            client = self.trusted.client(peer, forwarded, real)
            if client != peer:
                scope = {**scope, "client": (client, 0)}
        await self.app(scope, receive, send)
