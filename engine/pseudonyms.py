"""Which event fields are personal data (PIPL), and their keyed pseudonyms.

With ``privacy:`` on, every entry point replaces a person's identifiers by HMAC-SHA256
pseudonyms before the engine sees the event, so the state, its changelogs and journals, the
ledger and the fact tables hold no identifier a reader could look up without the key. The
pseudonyms are deterministic, so every join the engine makes (a binding, a chain, a device's
history, an IP's /24) is made exactly as on the raw values, and the money is the same.

- Person ids (customers, visitors, promoters, parents) share one namespace: the engine compares
  a customer with a promoter (a promoter binding themselves, buying through their own link).
- A device id and an IP are pseudonymised in their own namespaces. An IP keeps the shape
  :func:`engine.fraud.ip_prefix` reads: the pseudonym of its /24 (IPv6 /48) then the
  pseudonym of the address, so the prefix velocity signals group the same addresses.
- A payout account is pseudonymised in its own namespace (fund-flow alerts compare accounts).
- A user agent becomes the one thing the engine reads from it: automation or not.

The raw values people need to see (IP, device, user agent, payout account) are sealed with the
person's own data key (topologies/protection.py) and the raw ids are not kept at all: the shop
has them, and :meth:`Pseudonyms.person` finds a person's rows from their id.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from engine.fraud import automation_agent, ip_prefix

PERSON_FIELDS = ("customer_id", "visitor_id", "promoter_id", "parent_id")
DEVICE_FIELDS = ("device_id",)
IP_FIELDS = ("ip",)
AGENT_FIELDS = ("user_agent",)
ACCOUNT_FIELDS = ("payout_account",)  # fund-flow alerts compare them
SEALED = DEVICE_FIELDS + IP_FIELDS + AGENT_FIELDS + ACCOUNT_FIELDS  # raw values people need to see
AUTOMATION, BROWSER = "sealed-bot", "sealed-browser"  # what automation_agent() answers for them
_PREFIXES = ("p-", "d-", "a-", "ip-", "v6-", "sealed-")


@lru_cache(maxsize=1 << 17)  # the same devices, IPs and customers come again and again
def _digest(key: bytes, namespace: str, value: str) -> str:
    mac = hmac.new(key, f"{namespace}\x00{value}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:15]).decode().lower()  # 120 bits: 24 characters


@dataclass(frozen=True)
class Pseudonyms:
    """Keyed pseudonyms: the same key gives the same pseudonym for the same value, everywhere."""

    key: bytes

    def person(self, value: str) -> str:
        return "p-" + _digest(self.key, "person", value)

    def device(self, value: str) -> str:
        return "d-" + _digest(self.key, "device", value)

    def account(self, value: str) -> str:
        return "a-" + _digest(self.key, "account", value)

    def ip(self, value: str) -> str:
        """``<net>.0.0.<address>`` (IPv6 ``<net>:0:0:<address>``): its ip_prefix is the net's."""
        net = _digest(self.key, "net", ip_prefix(value))[:16]
        address = _digest(self.key, "ip", value)[:16]
        return f"v6-{net}:0:0:{address}" if ":" in value else f"ip-{net}.0.0.{address}"

    @staticmethod
    def agent(value: str) -> str:
        return AUTOMATION if automation_agent(value) else BROWSER

    def of(self, field: str, value: str) -> str:
        """The pseudonym of one personal field's value."""
        if field in PERSON_FIELDS:
            return self.person(value)
        if field in DEVICE_FIELDS:
            return self.device(value)
        if field in IP_FIELDS:
            return self.ip(value)
        if field in AGENT_FIELDS:
            return self.agent(value)
        if field in ACCOUNT_FIELDS:
            return self.account(value)
        raise KeyError(f"{field} is not a personal field")


def is_pseudonym(value: str) -> bool:
    """Whether a stored value is already one of :class:`Pseudonyms`' (what the ledger holds with privacy on)."""
    return value.startswith(_PREFIXES) and len(value) >= 14


def personal_fields(obj: Any) -> list[str]:
    """The personal fields an event (or a fact row) has, set or not."""
    names = obj.keys() if isinstance(obj, dict) else type(obj).model_fields
    return [f for f in (*PERSON_FIELDS, *SEALED) if f in names]
