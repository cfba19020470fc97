"""Personal data protected on the way in: pseudonyms for the engine, sealed raw values for people.

Both runners call :meth:`Protection.protect` on every admitted event before the engine and the
fact tables see it (``tuike run``, ``tuike serve``, the streaming workers), so the state, its
changelogs and journals, the routed and sink topics, the ledger and the facts hold pseudonyms
(engine/pseudonyms.py) and the raw IP, device id, user agent and payout account only sealed with
the person's data key (sinks/vault.py). Dead letters are sealed whole. ``privacy:`` in
``tuike.yaml``::

    privacy:
      pseudonym_key: env:TUIKE_PSEUDONYM_KEY     # HMAC key of the pseudonyms; changing it needs `tuike replay`
      master_keys: [env:TUIKE_MASTER_KEY]        # the first wraps new data keys; older ones still unwrap

Keys are secrets: ``env:NAME`` or ``file:PATH`` (schemas/secrets.py), at least 32 characters.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import orjson

from engine.config import ConfigError, Problem
from engine.pseudonyms import SEALED, Pseudonyms, personal_fields
from schemas.analytics import quote
from schemas.dead_letter import DeadLetter
from schemas.events import Event
from schemas.secrets import SecretError, resolve_secret
from sinks.vault import KeyVault, MasterKey, SqlLedger, seal, sealed_key_id, unseal

KEYS = ("pseudonym_key", "master_keys")
OWNERS = ("customer_id", "visitor_id")  # whose values a click's or an order's are; a promoter's own events: theirs
REFRESH_S = 30.0  # how often a long-running process re-reads who has been forgotten


@dataclass(frozen=True)
class PrivacySettings:
    pseudonym_key: bytes
    master_keys: tuple[MasterKey, ...]


def privacy_settings(raw: dict | None, *, resolve: bool = True) -> PrivacySettings | None:
    """The ``privacy:`` section, or None when it is absent (protection off). With ``resolve`` off
    (``tuike config check``) the secrets' references are checked but not read."""
    section = (raw or {}).get("privacy")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError([Problem("privacy", "expected a mapping such as {pseudonym_key: env:TUIKE_PSEUDONYM_KEY, "
                                              "master_keys: [env:TUIKE_MASTER_KEY]}")])
    problems = [Problem(f"privacy.{k}", f"unknown key; known keys: {', '.join(KEYS)}") for k in section if k not in KEYS]
    masters = section.get("master_keys")
    if not isinstance(masters, list) or not masters:
        problems.append(Problem("privacy.master_keys", "expected a list of at least one secret (env:NAME or file:PATH)"))
        masters = []
    secrets = [("privacy.pseudonym_key", section.get("pseudonym_key"))] + [
        (f"privacy.master_keys[{i}]", m) for i, m in enumerate(masters)]
    values: list[str] = []
    for path, value in secrets:
        if not isinstance(value, str) or not value:
            problems.append(Problem(path, "expected a secret: env:NAME, file:PATH or the key itself"))
            continue
        try:
            value = resolve_secret(value) if resolve else "x" * 32
        except SecretError as exc:
            problems.append(Problem(path, str(exc)))
            continue
        if len(value) < 32:
            problems.append(Problem(path, "a key must be at least 32 characters (e.g. `openssl rand -hex 32`)"))
        values.append(value)
    if problems:
        raise ConfigError(problems)
    return PrivacySettings(values[0].encode(), tuple(MasterKey.from_secret(v) for v in values[1:]))


class PseudonymsChanged(ValueError):
    """The state (or a generation) was built with other pseudonyms, or none: one person would
    become two. The message says how to rebuild."""


def privacy_mark(protection: Protection | None) -> str:
    """Names the pseudonyms a configuration makes (``off`` without privacy), revealing no key."""
    return protection.fingerprint if protection else "off"


def refuse_other_pseudonyms(built: str, mark: str, where: str, rebuild: str) -> None:
    if built != mark:
        def name(m: str) -> str:
            return "privacy off" if m == "off" else f"the pseudonym key {m}"
        raise PseudonymsChanged(f"{where} was built with {name(built)}, and the configuration now asks for "
                                f"{name(mark)}: one person would become two. {rebuild}")


def check_generation(ledger: SqlLedger, generation: int, protection: Protection | None) -> None:
    """A streaming generation keeps the pseudonyms it started with (table ``privacy_marks``)."""
    mark = privacy_mark(protection)
    rows = ledger.query(f"SELECT mark FROM privacy_marks FINAL WHERE generation = {int(generation)}").rows
    if not rows:
        ledger.query(f"INSERT INTO privacy_marks (generation, mark, at) SELECT {int(generation)}, {quote(mark)}, now()")
        return
    refuse_other_pseudonyms(rows[0][0], mark, f"generation {generation}",
                            "Put the old privacy settings back, or rebuild with `tuike replay` and a new ledger "
                            "database (README: personal data)")


def protection_for(raw: dict | None, ledger: SqlLedger) -> Protection | None:
    """The protection a configuration asks for, over ``ledger``'s key vault; None when it is off."""
    settings = privacy_settings(raw)
    return Protection(settings, ledger) if settings else None


def _owner(event: Event, pseudonymous: dict[str, str]) -> str:
    """Whose data key seals an event's raw values: the customer's (or visitor's) for what they did,
    the promoter's for their own events, else the device's."""
    for f in OWNERS:
        if f in pseudonymous:
            return pseudonymous[f]
    if event.type.startswith("promoter.") and "promoter_id" in pseudonymous:
        return pseudonymous["promoter_id"]
    return pseudonymous.get("device_id", "anonymous")


def _people_named(raw: str) -> list[str]:
    """The person ids a refused record names (customer, visitor, promoter), if it is a JSON object."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(obj, dict):
        return []
    return [obj[f] for f in ("customer_id", "visitor_id", "promoter_id") if isinstance(obj.get(f), str) and obj[f]]


class Protection:
    """Pseudonymises events and seals raw values; :meth:`flush` writes the new data keys, and must
    run before anything they sealed is made durable."""

    def __init__(self, settings: PrivacySettings, ledger: SqlLedger):
        self.pseudonyms = Pseudonyms(settings.pseudonym_key)
        self.fingerprint = self.pseudonyms.person("tuike pseudonym key check")  # names the key, reveals nothing
        self.vault = KeyVault(ledger, list(settings.master_keys))
        self._refreshed = time.monotonic()

    def protect(self, event: Event) -> tuple[Event, str]:
        """The event as the engine sees it, and its raw personal values sealed ('' when none)."""
        updates: dict[str, str] = {}
        raw: dict[str, str] = {}
        for f in personal_fields(event):
            value = getattr(event, f)
            if value:
                updates[f] = self.pseudonyms.of(f, value)
                if f in SEALED:
                    raw[f] = value
        if not updates:
            return event, ""
        owner = _owner(event, updates)
        sealed = "" if not raw or self.vault.is_forgotten(owner) else seal(self.vault.key_for(owner), orjson.dumps(raw))
        return event.model_copy(update=updates), sealed

    def seal_dead_letter(self, dead: DeadLetter) -> DeadLetter:
        """A dead letter whose raw input is sealed (it may hold anything: an address, a phone), and
        whose key is a pseudonym when it is a person's id."""
        if not dead.raw or dead.raw.startswith("tk1."):
            return dead
        people = _people_named(dead.raw)
        owner = (self.pseudonyms.person(people[0]) if people
                 else "dead-letters:" + time.strftime("%Y-%m", time.gmtime()))  # else the month's key
        key = self.pseudonyms.person(dead.key) if dead.key in people else dead.key  # keyed by a customer id
        raw = "" if self.vault.is_forgotten(owner) else seal(self.vault.key_for(owner), dead.raw.encode())
        return replace(dead, raw=raw, key=key)

    def reveal(self, sealed: str) -> bytes:
        """What was sealed, if its key still exists (:class:`~sinks.vault.VaultError` if not)."""
        return unseal(self.vault.key(sealed_key_id(sealed)), sealed)

    def person(self, person_id: str) -> str:
        return self.pseudonyms.person(person_id)

    def flush(self) -> None:
        self.vault.flush()
        if time.monotonic() - self._refreshed > REFRESH_S:
            self.vault.refresh()
            self._refreshed = time.monotonic()

    def discard(self) -> None:
        self.vault.discard()

